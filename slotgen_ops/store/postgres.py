"""PostgreSQL: where a team keeps its environments (SPEC section 10). Connection, schema, migrations.

The schema is created and migrated by the tool (`slotgen state upgrade`), one
numbered migration at a time, each in its own transaction, the version kept
in `slotgen_meta`. A database whose schema is newer than this tool is refused
(an older tool must not write rows it does not understand).

The log is append-only in the database itself, not only in this code:
- a trigger refuses every UPDATE and DELETE of a log row, and TRUNCATE;
- the role the tool's operators connect as (`slotgen_writer`, granted to
  their login roles) may only SELECT and INSERT log rows.

Connection settings come from the URL and the standard `PG*` variables
(libpq reads them); a password is never printed or recorded: every message
names the server as `user@host:port/db`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import BadInput, IntegrityFailure

__all__ = ["SCHEMA_VERSION", "connect", "describe_url", "schema_version", "upgrade"]

WRITER_ROLE = "slotgen_writer"

# Each migration is applied once, in order, in one transaction with the version bump.
MIGRATIONS: tuple[str, ...] = (
    # 1: environments (the head each log has reached, and the controls it holds), the log, the triggers.
    f"""
    CREATE TABLE slotgen_meta (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE slotgen_environments (
        name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{{0,31}}$'),
        head_seq   bigint NOT NULL CHECK (head_seq >= 1),
        head_hash  text NOT NULL CHECK (head_hash ~ '^[0-9a-f]{{64}}$'),
        controls   jsonb NOT NULL,
        changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE TABLE slotgen_log (
        env         text NOT NULL,
        seq         bigint NOT NULL CHECK (seq >= 1),
        hash        text NOT NULL CHECK (hash ~ '^[0-9a-f]{{64}}$'),
        line        bytea NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (env, seq),
        UNIQUE (env, hash)
    );
    CREATE FUNCTION slotgen_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'slotgen_log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$;
    CREATE TRIGGER slotgen_log_no_update_or_delete BEFORE UPDATE OR DELETE ON slotgen_log
        FOR EACH ROW EXECUTE FUNCTION slotgen_log_append_only();
    CREATE TRIGGER slotgen_log_no_truncate BEFORE TRUNCATE ON slotgen_log
        FOR EACH STATEMENT EXECUTE FUNCTION slotgen_log_append_only();
    CREATE FUNCTION slotgen_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('slotgen_controls', NEW.name || ' ' || NEW.head_seq);
        RETURN NEW;
    END $$;
    CREATE TRIGGER slotgen_environments_notify AFTER INSERT OR UPDATE ON slotgen_environments
        FOR EACH ROW EXECUTE FUNCTION slotgen_notify_change();
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER_ROLE}') THEN
            CREATE ROLE {WRITER_ROLE} NOLOGIN;
        END IF;
    END $$;
    GRANT SELECT ON slotgen_meta TO {WRITER_ROLE};
    GRANT SELECT, INSERT ON slotgen_log TO {WRITER_ROLE};
    GRANT SELECT, INSERT, UPDATE ON slotgen_environments TO {WRITER_ROLE};
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def describe_url(url: str) -> str:
    """`user@host:port/db` for messages: never the password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - a URL we cannot even parse is described by its scheme only
        return "postgresql://(unreadable URL)"
    user = info.get("user") or "(default user)"
    host = info.get("host") or "(default host)"
    port = info.get("port") or "5432"
    return f"{user}@{host}:{port}/{info.get('dbname') or '(default db)'}"


def _check_url(url: str) -> None:
    if not (url.startswith("postgresql://") or url.startswith("postgres://")):
        raise BadInput("state URL must start with postgresql:// (e.g. postgresql://user@db.example:5432/slotgen)")
    try:
        from psycopg.conninfo import conninfo_to_dict

        conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - libpq's parser: one line, no password
        problem = " ".join(str(exc).split()).split(":", 1)[-1].strip() or "cannot be parsed"
        raise BadInput(f"state URL {describe_url(url)} is not a valid PostgreSQL URL: {problem}") from None


def _one_line(exc: Exception, url: str) -> str:
    text = " ".join(str(exc).split())
    password = None
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(url).get("password")
    except Exception:  # noqa: BLE001
        pass
    if password:
        text = text.replace(str(password), "***")
    return text


def connect(url: str, *, autocommit: bool = False, timeout: float = 5.0, check: bool = True):
    """A connection (psycopg 3) to the state database; BadInput (exit 2) for a wrong URL, IntegrityFailure
    (exit 4) for a server that refuses, is unreachable, or whose schema is missing or newer than this tool."""
    import psycopg

    _check_url(url)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout)),
                               application_name="slotgen")
    except psycopg.OperationalError as exc:
        text = _one_line(exc, url)
        if "connection option" in text or "invalid" in text and "value" in text and "option" in text:
            raise BadInput(f"state URL {describe_url(url)} is not a valid PostgreSQL URL: "
                           f"{text.split('connection is bad:', 1)[-1].strip()}") from None
        if "password authentication failed" in text or "no password supplied" in text:
            why = "authentication failed (check the user, and the password in the URL, PGPASSWORD or ~/.pgpass)"
        elif "does not exist" in text and "database" in text:
            why = "the database does not exist (create it, then run 'slotgen state upgrade')"
        elif "Connection refused" in text or "could not connect" in text or "timeout expired" in text:
            why = "cannot reach the server (connection refused or timed out)"
        else:
            why = text
        raise IntegrityFailure(f"state database {describe_url(url)}: {why}") from None
    if check:
        try:
            version = schema_version(conn)
        except BaseException:
            conn.close()
            raise
        if version == 0:
            conn.close()
            raise IntegrityFailure(f"state database {describe_url(url)} has no slotgen schema: run 'slotgen state "
                                   "upgrade' (as its owner) first")
        if version > SCHEMA_VERSION:
            conn.close()
            raise IntegrityFailure(f"state database {describe_url(url)} has schema version {version}, newer than "
                                   f"this slotgen ({SCHEMA_VERSION}): upgrade slotgen before using it")
        if version < SCHEMA_VERSION:
            conn.close()
            raise IntegrityFailure(f"state database {describe_url(url)} has schema version {version}, older than "
                                   f"this slotgen ({SCHEMA_VERSION}): run 'slotgen state upgrade'")
    return conn


def schema_version(conn: Any) -> int:
    """The schema version of the connected database (0: none)."""
    with _quiet_tx(conn):
        found = conn.execute("SELECT to_regclass('slotgen_meta') IS NOT NULL").fetchone()[0]
        if not found:
            return 0
        row = conn.execute("SELECT value FROM slotgen_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _quiet_tx(conn: Any) -> Iterator[None]:
    """A read that leaves no transaction open behind it (outside autocommit)."""
    try:
        yield
    finally:
        if not conn.autocommit:
            conn.rollback()


def upgrade(url: str) -> dict[str, Any]:
    """Create or migrate the schema to SCHEMA_VERSION; {"from", "to", "applied"}. Idempotent."""
    import psycopg

    conn = connect(url, check=False)
    try:
        before = schema_version(conn)
        if before > SCHEMA_VERSION:
            raise IntegrityFailure(f"state database {describe_url(url)} has schema version {before}, newer than "
                                   f"this slotgen ({SCHEMA_VERSION}): nothing changed")
        applied = []
        for number in range(before + 1, SCHEMA_VERSION + 1):
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('slotgen-schema'))")
                    if schema_version_in_tx(conn) >= number:  # another upgrade got there first
                        continue
                    conn.execute(MIGRATIONS[number - 1])
                    conn.execute("INSERT INTO slotgen_meta (key, value) VALUES ('schema_version', %s) "
                                 "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (str(number),))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise IntegrityFailure(f"state database {describe_url(url)}: not allowed to create the schema "
                                       f"({_one_line(exc, url)}); run 'slotgen state upgrade' as its owner") from None
            applied.append(number)
        return {"from": before, "to": SCHEMA_VERSION, "applied": applied}
    finally:
        conn.close()


def schema_version_in_tx(conn: Any) -> int:
    if not conn.execute("SELECT to_regclass('slotgen_meta') IS NOT NULL").fetchone()[0]:
        return 0
    row = conn.execute("SELECT value FROM slotgen_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0
