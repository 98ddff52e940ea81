"""The rollback's first act on a database-backed environment, before the CLI is imported (SPEC sections 6, 10).

On files the entry point writes the kill-switch before typer, pydantic or any
configuration is imported; this module does the same for PostgreSQL: it
speaks to libpq directly through `ctypes` (psycopg alone takes about 100 ms to
import), sets SLOTGEN_AI_KILL=true in the environment's row in one statement
(waiting at most a second for a writer's uncommitted row), and returns the
old value. Stdlib only. Anything unexpected returns None, and the rollback
proper then does it through psycopg: this is a head start, never the only
attempt.

libpq is the one psycopg ships (psycopg_binary.libs), else the system's
libpq.so.5. Connection settings are the URL's and the standard PG*
variables (PGPASSWORD, ~/.pgpass), exactly as for psycopg.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re

_ENV_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")
CONNECTION_OK = 0
PGRES_TUPLES_OK = 2


def _libpq():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates = []
    for base in {here, *(p for p in __import__("sys").path if p.endswith("site-packages"))}:
        candidates += sorted(glob.glob(os.path.join(base, "psycopg_binary.libs", "libpq-*.so*")))
    candidates += ["libpq.so.5", "/usr/lib/x86_64-linux-gnu/libpq.so.5", "/usr/lib/aarch64-linux-gnu/libpq.so.5"]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.PQconnectdb.restype = ctypes.c_void_p
        lib.PQconnectdb.argtypes = [ctypes.c_char_p]
        lib.PQstatus.argtypes = [ctypes.c_void_p]
        lib.PQexec.restype = ctypes.c_void_p
        lib.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.PQresultStatus.argtypes = [ctypes.c_void_p]
        lib.PQntuples.argtypes = [ctypes.c_void_p]
        lib.PQgetvalue.restype = ctypes.c_char_p
        lib.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.PQgetisnull.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.PQclear.argtypes = [ctypes.c_void_p]
        lib.PQfinish.argtypes = [ctypes.c_void_p]
        return lib
    return None


def engage(url: str, env: str) -> tuple[bool, str | None] | None:
    """Set SLOTGEN_AI_KILL=true in `env`'s row; (True, old value), or None if that could not be done here."""
    if not _ENV_RE.match(env) or not url.startswith(("postgresql://", "postgres://")):
        return None
    lib = _libpq()
    if lib is None:
        return None
    sep = "&" if "?" in url else "?"
    conninfo = f"{url}{sep}connect_timeout=2&application_name=slotgen-rollback".encode()
    conn = lib.PQconnectdb(conninfo)
    if not conn:
        return None
    try:
        if lib.PQstatus(conn) != CONNECTION_OK:
            return None
        # One statement: the row locked (a writer's uncommitted update waited for at most a second), the old
        # value read, the kill-switch set; the environment name matched the pattern above, so it is a literal.
        sql = (
            "SET lock_timeout = '1s'; "
            "UPDATE slotgen_environments AS e SET controls = jsonb_set(e.controls, '{SLOTGEN_AI_KILL}', '\"true\"'), "
            "changed_at = clock_timestamp() FROM (SELECT name, controls->>'SLOTGEN_AI_KILL' AS kill "
            f"FROM slotgen_environments WHERE name = '{env}' FOR UPDATE) AS old "
            "WHERE e.name = old.name RETURNING old.kill"
        ).encode()
        res = lib.PQexec(conn, sql)
        if not res:
            return None
        try:
            if lib.PQresultStatus(res) != PGRES_TUPLES_OK or lib.PQntuples(res) != 1:
                return None
            old = None if lib.PQgetisnull(res, 0, 0) else lib.PQgetvalue(res, 0, 0).decode("utf-8", "replace")
            return True, old
        finally:
            lib.PQclear(res)
    finally:
        lib.PQfinish(conn)
