"""Where environments are kept, behind the seam changes/seam.py defines: the workspace's files
(store.files, the embedded default) or a team's PostgreSQL 15 database (pg_env, postgres, pgserver)."""

from ..lazy import exports

_WHERE = {
    "FileEnvironmentStore": "files",
    "NotAuthoritative": "pg_log",
    "PgEnvironmentStore": "pg_env",
    "connect": "postgres",
    "describe_url": "postgres",
    "upgrade": "postgres",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
