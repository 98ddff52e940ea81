"""PostgreSQL: where a team keeps its environments (SPEC section 10). Connection, schema, migrations.

The schema is created and migrated by the tool (`slotgen state upgrade`), one
numbered migration at a time, each in its own transaction, the version kept
in `slotgen_meta`. A database whose schema is newer than this tool is refused
(an older tool must not write rows it does not understand).

The log is append-only in the database itself, not only in this code:
- a trigger refuses every UPDATE and DELETE of a log row, and TRUNCATE;
- the role the tool's operators connect as (`slotgen_writer`, granted to
  their login roles) may only SELECT and INSERT log rows.

The controls row is not an authority of its own (SPEC section 14): readers
render the verified log head, never the row (`pg_env`, `workspace.render`), and
migration 2 makes the database refuse a controls row that no log entry leads
to. The argument, for a role in `slotgen_writer` (it may SELECT and INSERT log
rows, and INSERT and UPDATE environment rows; nothing else):

- A BEFORE INSERT OR UPDATE trigger on `slotgen_environments` lets a row
  change through in two cases only. (1) The rollback's first act: the head
  (seq, hash) unchanged and the controls unchanged or unchanged but for
  SLOTGEN_AI_KILL=true (`PgControls.engage`, `store.pgfast`); that only ever
  lowers exposure. (2) Anything else names a head (seq, hash) that must be
  a log row of the same environment inserted by this very transaction
  (`xmin` is the transaction's own id: no role can forge it), with no later
  row, whose entry's `state.controls` are exactly the row's new controls.
- So a controls row can only say what the newest log entry says, and that
  entry was appended with it. The log is append-only (migration 1's trigger
  and the grants), so the entry stays there for every reader to verify: its
  hash chain, its signature by an operator of the roster in force, and that
  its state replays. A writer that appends a forged entry to justify a row
  gets a log that fails verification, which every reader treats as an
  integrity failure and every `render` host as a reason to engage the
  kill-switch (fail closed). The trigger is the database's half; readers
  never trusting the row (they render the verified head) is the other.
- The function's search_path is pinned at definition, so a temporary table
  named `slotgen_log` cannot stand in for the log; a writer cannot disable
  the trigger (only the table's owner can), nor set
  `session_replication_role` (superuser only).
- What it does not stop: the table's owner or a superuser can disable the
  trigger or rewrite rows; a writer can append junk or forged rows (a
  denial of service that fails closed: hosts render the kill-switch
  engaged until an owner removes them).
- The append and the row update must be in the same (top-level) transaction,
  outside a savepoint: slotgen's writer sections are one transaction each.

Connection settings come from the URL and the standard `PG*` variables
(libpq reads them); a password is never printed or recorded: every message
names the server as `user@host:port/db`, and a URL that cannot even be parsed
is never echoed (libpq quotes the URL, or a piece of it, in its complaint).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import BadInput, IntegrityFailure

__all__ = ["SCHEMA_VERSION", "DatabaseUnavailable", "connect", "describe_url", "schema_version", "upgrade"]


class DatabaseUnavailable(IntegrityFailure):
    """The state database cannot be used at all (unreachable, refusing, no or another schema): exit 4, and a
    statement about the connection, never a verdict on what the database holds (`render` leaves the host's
    file as it is for this, and engages it for that)."""

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
    # 2: the controls row follows the log: no row change without the append of the entry it names.
    """
    CREATE FUNCTION slotgen_controls_follow_log() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        appended boolean;
        leads_to jsonb;
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            IF NEW.name IS DISTINCT FROM OLD.name THEN
                RAISE EXCEPTION 'slotgen_environments: an environment is never renamed'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            -- A rollback's first act, before its entry: the kill-switch engaged, nothing else changed.
            IF NEW.head_seq = OLD.head_seq AND NEW.head_hash = OLD.head_hash
               AND (NEW.controls = OLD.controls
                    OR NEW.controls = OLD.controls || '{"SLOTGEN_AI_KILL": "true"}'::jsonb) THEN
                RETURN NEW;
            END IF;
        END IF;
        BEGIN
            SELECT l.xmin = pg_current_xact_id()::xid,
                   convert_from(l.line, 'UTF8')::jsonb #> '{state,controls}'
              INTO appended, leads_to
              FROM slotgen_log AS l
             WHERE l.env = NEW.name AND l.seq = NEW.head_seq AND l.hash = NEW.head_hash;
        EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
            RAISE EXCEPTION 'slotgen_environments: % of %: log entry seq % is not a valid entry',
                TG_OP, NEW.name, NEW.head_seq USING ERRCODE = 'insufficient_privilege';
        END;
        IF appended IS NOT TRUE THEN
            RAISE EXCEPTION 'slotgen_environments: % of % refused: not made in the transaction that appends the '
                'log entry it names (seq %)', TG_OP, NEW.name, NEW.head_seq USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF EXISTS (SELECT 1 FROM slotgen_log WHERE env = NEW.name AND seq > NEW.head_seq) THEN
            RAISE EXCEPTION 'slotgen_environments: % of % refused: seq % is not the newest log entry',
                TG_OP, NEW.name, NEW.head_seq USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF leads_to IS NULL OR NEW.controls IS DISTINCT FROM leads_to THEN
            RAISE EXCEPTION 'slotgen_environments: % of % refused: the controls are not the ones log entry seq % '
                'leads to', TG_OP, NEW.name, NEW.head_seq USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END $$;
    DO $$ BEGIN
        -- Resolved at definition, not by the caller's search_path: a temporary table named slotgen_log
        -- (any role may create one) must not stand in for the log.
        EXECUTE format('ALTER FUNCTION slotgen_controls_follow_log() SET search_path = pg_catalog, %I, pg_temp',
                       current_schema());
    END $$;
    CREATE TRIGGER slotgen_environments_follow_log BEFORE INSERT OR UPDATE ON slotgen_environments
        FOR EACH ROW EXECUTE FUNCTION slotgen_controls_follow_log();
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def describe_url(url: str) -> str:
    """`user@host:port/db` for messages: never the password (a URL that cannot be parsed: its scheme only)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - a URL we cannot even parse is described by its scheme only
        return "postgresql://(unreadable URL)"
    user = info.get("user") or "(default user)"
    host = info.get("host") or "(default host)"
    port = info.get("port") or "5432"
    return _redacted(f"{user}@{host}:{port}/{info.get('dbname') or '(default db)'}", url)


def _secrets(url: str) -> set[str]:
    """Everything in `url` that could be (part of) its password, however malformed the URL: the URL itself,
    what libpq parses as the password, and, read leniently, each `user:password@` reading and each
    `password=` parameter, raw and percent-decoded."""
    import re
    from urllib.parse import unquote

    found = {url}
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(url).get("password")
        if password:
            found.add(str(password))
    except Exception:  # noqa: BLE001 - unparseable: the lenient readings below
        pass
    rest = url.split("://", 1)[-1]
    if "@" in rest:
        for userinfo in (rest.split("@", 1)[0], rest.rsplit("@", 1)[0]):
            if ":" in userinfo:
                found.add(userinfo.split(":", 1)[1])
    found.update(match.group(1) for match in re.finditer(r"password=([^&\s]*)", url, re.IGNORECASE))
    found |= {unquote(item) for item in found}
    return {item for item in found if item}


def _redacted(text: str, url: str) -> str:
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _check_url(url: str) -> None:
    if not (url.startswith("postgresql://") or url.startswith("postgres://")):
        raise BadInput("state URL must start with postgresql:// (e.g. postgresql://user@db.example:5432/slotgen)")
    try:
        from psycopg.conninfo import conninfo_to_dict

        conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - libpq's parser: one line, no password
        import re

        # libpq quotes the URL, or the piece it stumbled on (which may be a piece of the password): never shown,
        # but for a lone punctuation mark ("]").
        text = re.sub(r'"([^"]*)"', lambda m: m.group(0) if re.fullmatch(r"[^A-Za-z0-9]", m.group(1)) else "(…)",
                      " ".join(str(exc).split()))
        problem = _redacted(text, url).removesuffix(": (…)").strip() or "cannot be parsed"
        raise BadInput(f"state URL {describe_url(url)} is not a valid PostgreSQL URL: {problem}") from None


def _one_line(exc: BaseException, url: str) -> str:
    """The error as one line, with nothing of the URL's password in it."""
    return _redacted(" ".join(str(exc).split()), url)


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
        raise DatabaseUnavailable(f"state database {describe_url(url)}: {why}") from None
    if check:
        try:
            version = schema_version(conn)
        except BaseException:
            conn.close()
            raise
        if version == 0:
            conn.close()
            raise DatabaseUnavailable(f"state database {describe_url(url)} has no slotgen schema: run 'slotgen "
                                      "state upgrade' (as its owner) first")
        if version > SCHEMA_VERSION:
            conn.close()
            raise DatabaseUnavailable(f"state database {describe_url(url)} has schema version {version}, newer "
                                      f"than this slotgen ({SCHEMA_VERSION}): upgrade slotgen before using it")
        if version < SCHEMA_VERSION:
            conn.close()
            raise DatabaseUnavailable(f"state database {describe_url(url)} has schema version {version}, older "
                                      f"than this slotgen ({SCHEMA_VERSION}): run 'slotgen state upgrade'")
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
