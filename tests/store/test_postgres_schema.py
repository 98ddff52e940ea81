"""The PostgreSQL schema (SPEC section 10): created and migrated by the tool, the log append-only in the
database itself, and one clear line for every way a connection can go wrong (never the password)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
import pytest

from slotgen_ops.errors import BadInput, IntegrityFailure
from slotgen_ops.store import postgres as store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.helpers import assert_one_line_error, slotgen  # noqa: E402


def _row(conn, env="staging", seq=1):
    conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES (%s, %s, %s, %s)",
                 (env, seq, f"{seq:064x}", b'{"seq":%d}' % seq))


def test_upgrade_creates_the_schema_once_and_says_so(pg_url):
    first = slotgen("state", "upgrade", "--url", pg_url, "--json")
    assert first.code == 0, first.stderr
    assert first.json()["applied"] == list(range(1, store.SCHEMA_VERSION + 1))
    again = slotgen("state", "upgrade", env={"SLOTGEN_STATE_URL": pg_url})
    assert again.code == 0 and "nothing to do" in again.stdout
    with store.connect(pg_url) as conn:
        assert store.schema_version(conn) == store.SCHEMA_VERSION
    password = psycopg.conninfo.conninfo_to_dict(pg_url)["password"]
    assert password not in first.stdout + first.stderr + again.stdout + again.stderr


@pytest.mark.parametrize("statement", ["UPDATE slotgen_log SET line = 'forged' WHERE seq = 1",
                                       "DELETE FROM slotgen_log WHERE seq = 1",
                                       "TRUNCATE slotgen_log"])
def test_the_database_refuses_to_change_a_log_row_even_for_its_owner(pg_url, statement):
    store.upgrade(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _row(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        assert conn.execute("SELECT line FROM slotgen_log").fetchone()[0] == b'{"seq":1}'


def test_an_operators_role_may_only_read_and_append_the_log(pg_url, postgres):
    store.upgrade(pg_url)
    db = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE op_alice LOGIN PASSWORD 'alice-pw' IN ROLE slotgen_writer")
        conn.execute("ALTER TABLE slotgen_log DISABLE TRIGGER USER")  # privileges alone, without the trigger
    try:
        with psycopg.connect(postgres.url("op_alice", "alice-pw", db), autocommit=True) as alice:
            _row(alice, seq=1)
            assert alice.execute("SELECT count(*) FROM slotgen_log").fetchone()[0] == 1
            for statement in ("UPDATE slotgen_log SET line = 'x'", "DELETE FROM slotgen_log",
                              "ALTER TABLE slotgen_log DISABLE TRIGGER USER"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    alice.execute(statement)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE slotgen_log ENABLE TRIGGER USER")
            conn.execute("DROP OWNED BY op_alice")
            conn.execute("DROP ROLE op_alice")


def test_a_change_to_an_environment_is_notified(pg_url):
    store.upgrade(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as listener, psycopg.connect(pg_url, autocommit=True) as writer:
        listener.execute("LISTEN slotgen_controls")
        controls = {"SLOTGEN_AI_KILL": "true"}
        with writer.transaction():  # the row goes in with the log entry that leads to it (migration 2)
            writer.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES ('staging', 1, %s, %s)",
                           ("a" * 64, json.dumps({"seq": 1, "hash": "a" * 64, "state": {"controls": controls}})
                            .encode()))
            writer.execute("INSERT INTO slotgen_environments (name, head_seq, head_hash, controls) VALUES "
                           "('staging', 1, %s, %s)", ("a" * 64, json.dumps(controls)))
        note = next(listener.notifies(timeout=5))
        assert (note.channel, note.payload) == ("slotgen_controls", "staging 1")


def test_a_schema_newer_than_the_tool_or_missing_is_refused(pg_url):
    with pytest.raises(IntegrityFailure, match="no slotgen schema: run 'slotgen state upgrade'"):
        store.connect(pg_url)
    store.upgrade(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE slotgen_meta SET value = %s WHERE key = 'schema_version'",
                     (str(store.SCHEMA_VERSION + 1),))
    with pytest.raises(IntegrityFailure, match="newer than this slotgen"):
        store.connect(pg_url)
    r = slotgen("state", "upgrade", "--url", pg_url)
    assert_one_line_error(r, 4)
    assert "newer than this slotgen" in r.stderr


def test_connection_settings_come_from_pg_variables_too(pg_url):
    store.upgrade(pg_url)
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    bare = f"postgresql://{info['user']}@{info['host']}:{info['port']}/{info['dbname']}"
    r = slotgen("state", "upgrade", "--url", bare, env={"PGPASSWORD": info["password"]})
    assert r.code == 0, r.stderr


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["not-postgres", "malformed", "refused", "wrong-password", "no-database"])
def test_every_connection_problem_is_one_line_without_the_password(pg_url, case):
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    secret = "s3cr3t-Never-Print"
    url, code, says = {
        "not-postgres": (f"mysql://u:{secret}@127.0.0.1/db", 2, "must start with postgresql://"),
        "malformed": (f"postgresql://u:{secret}@127.0.0.1:notaport/db", 2, "not a valid PostgreSQL URL"),
        "refused": (f"postgresql://u:{secret}@127.0.0.1:{_unused_port()}/db", 4, "cannot reach the server"),
        "wrong-password": (f"postgresql://{info['user']}:{secret}@{info['host']}:{info['port']}/{info['dbname']}", 4,
                           "authentication failed"),
        "no-database": (f"postgresql://{info['user']}:{info['password']}@{info['host']}:{info['port']}/nope_db", 4,
                        "database does not exist"),
    }[case]
    r = slotgen("state", "upgrade", "--url", url)
    assert_one_line_error(r, code)
    assert says in r.stderr
    assert secret not in r.stderr and info["password"] not in r.stderr
    with pytest.raises(BadInput if code == 2 else IntegrityFailure):
        store.connect(url)
