"""A database row is not an authority (SPEC section 14), driven the way each attack was: a role in
`slotgen_writer` (or, past the database's own refusal, its superuser) changes rows behind slotgen's back, and
the real CLI (`render`, `render --watch`, `status`, `set`, `rollback`) runs against a real PostgreSQL server.

What a host renders is the verified log head's controls, held to the controls byte grammar; anything else
the database holds is an integrity failure that engages the host's file (fail closed)."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from slotgen_ops.files import envgrammar
from slotgen_ops.changes.controls_file import runtime_values

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.helpers import assert_one_line_error, clean_env, command, slotgen  # noqa: E402

DR = ["--decision-record", "DR-1"]
INJECTED = "allowlists/slot-generation-allowlist.v1.json\nSLOTGEN_AI_KILL=false"


def as_(ws: Path, operator: str) -> list[str]:
    return ["--operator", operator, "--key", str(ws / "demo-keys" / operator)]


@contextmanager
def writer_member(postgres, pg_url: str):
    """The URL of a login role granted `slotgen_writer`, and nothing else: what an operator connects as."""
    name, password = f"w_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    db = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE slotgen_writer")
    try:
        yield postgres.url(name, password, db)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {name}")
            conn.execute(f"DROP ROLE {name}")


def _head(url: str) -> tuple[int, str]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT seq, hash FROM slotgen_log WHERE env = 'staging' ORDER BY seq DESC "
                            "LIMIT 1").fetchone()


def _as_superuser_past_the_triggers(url: str, statement: str, *params) -> None:
    """A superuser's edit with every trigger off (session_replication_role), then the notification the
    trigger would have sent: what a writer's UPDATE did before the database refused it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement, params or None)
        conn.execute("SELECT pg_notify('slotgen_controls', 'staging 0')")


def _engaged(path: Path) -> bool:
    """The file holds controls within the grammar, and every reader (systemd's own parser, docker's rules,
    slotgen's) reads the kill-switch engaged in it."""
    from envfile_oracle import kill_engaged_everywhere

    raw = path.read_bytes()
    parsed = envgrammar.parse(raw)
    return (parsed.values.get("SLOTGEN_AI_KILL") == "true" and runtime_values(raw)["SLOTGEN_AI_KILL"] == "true"
            and kill_engaged_everywhere(path))


def _watcher(ws: Path, output: Path, env: dict, state_home: Path) -> subprocess.Popen:
    """`render --watch` on another host: its own clone and its own state directory (so a rollback run
    elsewhere does not engage its file directly: only what it renders from the database does)."""
    return subprocess.Popen(command("render", "--env", "staging", "--output", str(output), "--watch",
                                    "--workspace", str(ws)),
                            env=clean_env({**env, "XDG_STATE_HOME": str(state_home)}), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def _wait_for(predicate, proc: subprocess.Popen, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1]
        if time.monotonic() >= deadline:
            proc.send_signal(signal.SIGTERM)
            raise AssertionError(f"never happened; the watcher said: {proc.communicate()[1]}")
        time.sleep(0.02)


def _stop(proc: subprocess.Popen) -> str:
    assert proc.poll() is None, "the watcher must keep running through an integrity failure"
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


def _file_at(path: Path, head: tuple[int, str]) -> bool:
    try:
        return f"seq={head[0]} hash={head[1]}" in path.read_text()
    except OSError:
        return False


def _rolled_back(ws: Path, env: dict) -> dict:
    rb = slotgen("rollback", "--env", "staging", "--reason", "incident", *as_(ws, "oncall"), "--json",
                 "--workspace", str(ws), env=env)
    assert rb.code == 0, rb.stderr
    return rb.json()


# -- 1. a controls row that no entry leads to ------------------------------------------------------------------


def test_the_database_refuses_a_writers_controls_row_that_no_appended_entry_leads_to(pg_team, postgres, pg_url):
    a, _, env, _ = pg_team
    _rolled_back(a, env)
    seq, digest = _head(pg_url)
    with writer_member(postgres, pg_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for attack in (
                "UPDATE slotgen_environments SET controls = jsonb_set(controls, '{SLOTGEN_AI_KILL}', '\"false\"') "
                "WHERE name = 'staging'",
                "UPDATE slotgen_environments SET name = 'staging2' WHERE name = 'staging'",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="slotgen_environments"):
                    conn.execute(attack)
            # A temporary table named like the log (any role may make one) does not stand in for it.
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not made in the transaction"), \
                    conn.transaction():
                conn.execute("CREATE TEMP TABLE slotgen_log (env text, seq bigint, hash text, line bytea)")
                conn.execute("INSERT INTO pg_temp.slotgen_log VALUES ('staging', %s, %s, %s)",
                             (seq + 1, "e" * 64, json.dumps({"state": {"controls": {"SLOTGEN_AI_KILL": "false"}}})
                              .encode()))
                conn.execute("UPDATE slotgen_environments SET head_seq = %s, head_hash = %s, controls = "
                             "jsonb_set(controls, '{SLOTGEN_AI_KILL}', '\"false\"') WHERE name = 'staging'",
                             (seq + 1, "e" * 64))
            # An appended row that is not an entry leading to those controls does not justify them either.
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not a valid entry"), conn.transaction():
                conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES ('staging', %s, %s, 'x')",
                             (seq + 1, "e" * 64))
                conn.execute("UPDATE slotgen_environments SET head_seq = %s, head_hash = %s WHERE name = 'staging'",
                             (seq + 1, "e" * 64))
            row = conn.execute("SELECT head_seq, head_hash, controls->>'SLOTGEN_AI_KILL' FROM slotgen_environments "
                               "WHERE name = 'staging'").fetchone()
            assert row == (seq, digest, "true")
        # The writer role still does everything slotgen does: a rollback engages the row on its own (first
        # act), then records itself with the row that follows its entry.
        rb = slotgen("rollback", "--env", "staging", "--reason", "as a writer", *as_(a, "oncall"), "--json",
                     "--workspace", str(a), env={**env, "SLOTGEN_STATE_URL": url})
        assert rb.code == 0, rb.stderr
        assert rb.json()["rollback"].get("breakGlass") is not True, rb.stdout
    status = slotgen("status", "--env", "staging", "--json", "--workspace", str(a), env=env)
    assert status.code == 0 and status.json()["audit"]["valid"] is True, status.stdout + status.stderr


def test_a_changed_controls_row_is_an_integrity_failure_and_every_host_renders_the_kill_switch(pg_team, pg_url,
                                                                                            tmp_path):
    """The attack: after a rollback, the row's SLOTGEN_AI_KILL set to false with no log entry. The database
    refuses a writer that (test above); its superuser, past the triggers, is what remains, and it changes
    nothing a host renders: the watcher keeps the kill-switch engaged, says why, and keeps running."""
    a, b, env, _ = pg_team
    _rolled_back(a, env)
    head = _head(pg_url)
    out = tmp_path / "host" / "staging.env"
    out.parent.mkdir()
    proc = _watcher(b, out, env, tmp_path / "host-state")
    try:
        _wait_for(lambda: _file_at(out, head), proc)
        assert _engaged(out)
        _as_superuser_past_the_triggers(pg_url, "UPDATE slotgen_environments SET controls = jsonb_set(controls, "
                                        "'{SLOTGEN_AI_KILL}', '\"false\"') WHERE name = 'staging'")
        time.sleep(2.5)  # the attack had the file rewritten within 2 s
        assert _engaged(out), out.read_text()
    finally:
        err = _stop(proc)
    assert "integrity failure" in err and "controls row disagrees" in err, err
    assert "Traceback" not in err

    other = tmp_path / "other-host.env"
    once = slotgen("render", "--env", "staging", "--output", str(other), "--workspace", str(b), env=env)
    assert_one_line_error(once, 4)
    assert "controls row disagrees" in once.stderr and "fail closed" in once.stderr
    assert _engaged(other)
    status = slotgen("status", "--env", "staging", "--json", "--workspace", str(b), env=env)
    assert status.code == 4, status.stdout + status.stderr
    assert status.json()["audit"]["valid"] is False
    assert "Traceback" not in status.stderr
    # status shows what every host renders (engaged), and says what the row claims
    assert status.json()["controls"]["SLOTGEN_AI_KILL"] == "true"
    assert any("controls row says SLOTGEN_AI_KILL='false'" in w for w in status.json()["warnings"])
    assert not any("kill-switch is OFF" in w for w in status.json()["warnings"])
    # and it names the environment's row, not a controls file that does not exist on PostgreSQL
    assert "environments/staging.env" not in status.stdout
    assert "environment staging" in status.json()["audit"]["problem"]


# -- 2. a value outside the byte grammar -----------------------------------------------------------------------


def _signed_entry_setting_the_allowlist_to(ws: Path, pg_url: str, value: str, monkeypatch) -> dict:
    """A well-formed, signed `set` entry by the owner (whose key is in the roster) after the log's head: the
    chain verifies and the database accepts it with its row. Only the byte grammar can stop its value."""
    from walked import demo_actor

    from slotgen_ops.audit.append import complete
    from slotgen_ops.changes.entries import new_entry
    from slotgen_ops.workspace import Workspace

    monkeypatch.setenv("SLOTGEN_STATE_URL", pg_url)
    workspace = Workspace(ws)
    environment = workspace.environment("staging")
    head = environment.log.head()
    actor = demo_actor(workspace, "owner")
    fields = new_entry("staging", actor.recordable(), head["state"], action="set",
                       control="SLOTGEN_AI_ALLOWLIST_PATH", old=head["state"]["controls"]["SLOTGEN_AI_ALLOWLIST_PATH"],
                       new=value, decisionRecord="DR-1", reason="allowlist")
    entry = complete(fields, head)
    entry["signature"] = actor.recordable().signer().sign([entry["hash"]])[entry["hash"]]
    environment.store.close()
    return entry


def test_a_control_value_outside_the_grammar_never_reaches_a_rendered_file(pg_team, postgres, pg_url, tmp_path,
                                                                          monkeypatch):
    from slotgen_ops.audit.canonical import _dumps

    a, b, env, _ = pg_team
    out = tmp_path / "host" / "staging.env"
    out.parent.mkdir()
    proc = _watcher(b, out, env, tmp_path / "host-state")
    try:
        head = _head(pg_url)
        _wait_for(lambda: _file_at(out, head), proc)
        entry = _signed_entry_setting_the_allowlist_to(a, pg_url, INJECTED, monkeypatch)
        with writer_member(postgres, pg_url) as url, psycopg.connect(url) as conn, conn.transaction():
            # With its entry, in one transaction: the database lets this row through (it is what the entry
            # leads to); the value is what must not be written anywhere.
            conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES ('staging', %s, %s, %s)",
                         (entry["seq"], entry["hash"], _dumps(entry)))
            conn.execute("UPDATE slotgen_environments SET head_seq = %s, head_hash = %s, controls = %s "
                         "WHERE name = 'staging'", (entry["seq"], entry["hash"],
                                                     json.dumps(entry["state"]["controls"])))
        rb = _rolled_back(a, env)  # engages, and records (break-glass: the environment cannot take it)
        assert rb["rollback"]["engaged"] is True
        time.sleep(2.5)
        assert _engaged(out), out.read_bytes()
    finally:
        err = _stop(proc)
    assert "integrity failure" in err and "grammar" in err and "Traceback" not in err, err

    other = tmp_path / "other-host.env"
    once = slotgen("render", "--env", "staging", "--output", str(other), "--workspace", str(b), env=env)
    assert_one_line_error(once, 4)
    assert "SLOTGEN_AI_ALLOWLIST_PATH" in once.stderr and "fail closed" in once.stderr
    assert _engaged(other) and b"SLOTGEN_AI_KILL=false" not in other.read_bytes()
    status = slotgen("status", "--env", "staging", "--json", "--workspace", str(b), env=env)
    assert status.code == 4 and "Traceback" not in status.stderr, status.stdout + status.stderr


def test_a_watcher_following_the_log_refuses_an_unsigned_entry_that_turns_the_kill_switch_off(pg_team, postgres,
                                                                                             pg_url, tmp_path,
                                                                                             monkeypatch):
    """The database lets a writer append a well-formed, well-linked entry with the row it leads to; only the
    reader's verification stands between it and the host: a watcher that follows the log entry by entry
    replays each new one (here: `set SLOTGEN_AI_KILL=false` with nobody's signature) and engages instead."""
    from walked import demo_actor

    from slotgen_ops.audit.canonical import _dumps
    from slotgen_ops.audit.append import complete
    from slotgen_ops.changes.entries import new_entry
    from slotgen_ops.workspace import Workspace

    a, b, env, _ = pg_team
    _rolled_back(a, env)
    out = tmp_path / "host" / "staging.env"
    out.parent.mkdir()
    proc = _watcher(b, out, env, tmp_path / "host-state")
    try:
        _wait_for(lambda: _file_at(out, _head(pg_url)), proc)  # it has verified the log up to its head
        monkeypatch.setenv("SLOTGEN_STATE_URL", pg_url)
        workspace = Workspace(a)
        environment = workspace.environment("staging")
        head = environment.log.head()
        environment.store.close()
        claimed = demo_actor(workspace, "owner").unidentified()
        entry = complete(new_entry("staging", claimed.recordable(), head["state"], action="set",
                                   control="SLOTGEN_AI_KILL", old="true", new="false", decisionRecord="DR-1",
                                   reason="forged"), head)
        entry["signature"] = None
        assert entry["state"]["controls"]["SLOTGEN_AI_KILL"] == "false"
        with writer_member(postgres, pg_url) as url, psycopg.connect(url) as conn, conn.transaction():
            conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES ('staging', %s, %s, %s)",
                         (entry["seq"], entry["hash"], _dumps(entry)))
            conn.execute("UPDATE slotgen_environments SET head_seq = %s, head_hash = %s, controls = %s "
                         "WHERE name = 'staging'", (entry["seq"], entry["hash"],
                                                     json.dumps(entry["state"]["controls"])))
        time.sleep(2.5)
        assert _engaged(out), out.read_text()
    finally:
        err = _stop(proc)
    assert "integrity failure" in err and f"seq {entry['seq']}" in err and "Traceback" not in err, err


def test_a_watcher_that_saw_a_head_refuses_a_log_cut_back_beneath_it(pg_team, pg_url, tmp_path):
    a, b, env, _ = pg_team
    out = tmp_path / "host" / "staging.env"
    out.parent.mkdir()
    proc = _watcher(b, out, env, tmp_path / "host-state")
    try:
        before = _head(pg_url)
        _wait_for(lambda: _file_at(out, before), proc)
        _rolled_back(a, env)
        after = _head(pg_url)
        _wait_for(lambda: _file_at(out, after), proc)
        # Cut back to the old head, the row regenerated to match it: every remaining row verifies.
        _as_superuser_past_the_triggers(
            pg_url, "DELETE FROM slotgen_log WHERE env = 'staging' AND seq > %s", before[0])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            line = conn.execute("SELECT line FROM slotgen_log WHERE env = 'staging' AND seq = %s",
                                (before[0],)).fetchone()[0]
            controls = json.loads(bytes(line))["state"]["controls"]
            conn.execute("UPDATE slotgen_environments SET head_seq = %s, head_hash = %s, controls = %s "
                         "WHERE name = 'staging'", (*before, json.dumps(controls)))
            conn.execute("SELECT pg_notify('slotgen_controls', 'staging 0')")
        time.sleep(2.5)
        assert _engaged(out) and _file_at(out, after), out.read_text()
    finally:
        err = _stop(proc)
    assert "does not extend it" in err and "Traceback" not in err, err


# -- 3. a log row that is not an entry ---------------------------------------------------------------------------


def test_a_junk_log_row_is_an_integrity_failure_naming_its_seq_and_rollback_still_engages(pg_team, postgres,
                                                                                         pg_url, tmp_path):
    a, b, env, _ = pg_team
    seq, _ = _head(pg_url)
    junk = seq + 1
    with writer_member(postgres, pg_url) as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES ('staging', %s, %s, 'x')",
                     (junk, "f" * 64))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # and the writer cannot take it back
            conn.execute("DELETE FROM slotgen_log WHERE seq = %s", (junk,))

    said = f"seq {junk}"
    status = slotgen("status", "--env", "staging", "--workspace", str(a), env=env)
    assert status.code == 4 and said in status.stdout + status.stderr, status.stdout + status.stderr
    assert "internal error" not in status.stderr and "Traceback" not in status.stderr
    refused = slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, *as_(a, "owner"), "--yes",
                      "--workspace", str(a), env=env)
    assert_one_line_error(refused, 4)
    assert said in refused.stderr

    out = tmp_path / "host.env"
    once = slotgen("render", "--env", "staging", "--output", str(out), "--workspace", str(b), env=env)
    assert_one_line_error(once, 4)
    assert said in once.stderr and _engaged(out)
    watched = tmp_path / "watched.env"
    proc = _watcher(b, watched, env, tmp_path / "host-state")
    try:
        _wait_for(lambda: watched.exists() and _engaged(watched), proc)
    finally:
        err = _stop(proc)
    assert said in err and "Traceback" not in err and "internal error" not in err, err

    rb = slotgen("rollback", "--env", "staging", "--reason", "junk in the log", *as_(a, "oncall"), "--json",
                 "--workspace", str(a), env=env)
    assert rb.code == 0, rb.stderr
    doc = rb.json()
    assert doc["rollback"]["engaged"] is True and doc["rollback"]["breakGlass"] is True
    assert "internal error" not in rb.stderr and "Traceback" not in rb.stderr
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT controls->>'SLOTGEN_AI_KILL' FROM slotgen_environments WHERE name = "
                            "'staging'").fetchone()[0] == "true"


# -- 4. the write's read-back -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tamper", ["NEW.controls = jsonb_set(NEW.controls, '{FEATURE_SLOTGEN_AI}', '\"true\"')",
                                    "NEW.head_seq = NEW.head_seq + 100",
                                    "NEW.head_hash = repeat('d', 64)"])
def test_a_controls_write_that_does_not_read_back_as_written_fails_the_change(pg_team, pg_url, tmp_path, tamper):
    """Something between the writer and the row (here a trigger its owner added, firing after slotgen's own)
    makes the row differ from what was written: the change says so, exit 4, and no host renders it."""
    a, b, env, _ = pg_team
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"""CREATE FUNCTION zz_tamper() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN IF NEW.head_seq > OLD.head_seq THEN {tamper}; END IF; RETURN NEW; END $$""")
        conn.execute("CREATE TRIGGER zz_tamper BEFORE UPDATE ON slotgen_environments FOR EACH ROW "
                     "EXECUTE FUNCTION zz_tamper()")
    r = slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, *as_(a, "owner"), "--yes",
                "--workspace", str(a), env=env)
    assert_one_line_error(r, 4)
    assert "read-back differs from what was written" in r.stderr
    out = tmp_path / "host.env"
    once = slotgen("render", "--env", "staging", "--output", str(out), "--workspace", str(b), env=env)
    assert_one_line_error(once, 4)
    assert _engaged(out)


# -- a malformed state URL -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql://u:s3cret@[bad/db", "postgresql://u:s3%ZZcret@127.0.0.1/db",
                                 "postgresql://u@127.0.0.1/db?password=s3cret&bogus=1"])
def test_a_malformed_state_url_never_shows_its_password(tmp_path, url):
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    secret = "s3cret" if "s3cret" in url else "ZZcret"
    runs = [slotgen("state", "upgrade", "--url", url),
            slotgen("init", str(tmp_path / "other"), "--state", url),
            slotgen("status", "--env", "staging", "--workspace", str(ws), env={"SLOTGEN_STATE_URL": url}),
            slotgen("render", "--env", "staging", "--output", str(tmp_path / "h.env"), "--workspace", str(ws),
                    env={"SLOTGEN_STATE_URL": url})]
    for run in runs:
        assert_one_line_error(run, 2)
        assert secret not in run.stdout + run.stderr, run.stderr
        assert "s3%ZZ" not in run.stderr


def test_what_waits_for_the_commit_runs_after_it_and_never_after_a_rollback(pg_url):
    """`PgLock.after_commit`: an append is not a commit; what a machine may only believe of committed rows
    (the head it has seen) is recorded after COMMIT, when every other session can read them."""
    from slotgen_ops.store import postgres
    from slotgen_ops.store.pg_env import PgEnvironmentStore

    postgres.upgrade(pg_url)
    store = PgEnvironmentStore(pg_url, "staging")

    def visible() -> int:
        with psycopg.connect(pg_url) as other:
            return other.execute("SELECT count(*) FROM slotgen_log").fetchone()[0]

    seen: list[int] = []
    with store.lock.exclusive():
        store.conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES ('staging', 1, %s, 'x')",
                           ("a" * 64,))
        store.lock.after_commit(lambda: seen.append(visible()))
        assert seen == [] and visible() == 0
    assert seen == [1]
    with pytest.raises(psycopg.errors.UniqueViolation):
        with store.lock.exclusive():
            store.lock.after_commit(lambda: seen.append(-1))
            store.conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES ('staging', 1, %s, 'x')",
                               ("b" * 64,))
    assert seen == [1]
    store.lock.after_commit(lambda: seen.append(2))  # no section open: at once
    assert seen == [1, 2]
    store.close()


def test_audit_repair_puts_a_changed_controls_row_right_with_the_kill_switch_engaged(pg_team, pg_url, tmp_path):
    """The remedy the integrity failure names works on the database too: the repair records its entry and
    the row that entry leads to (in one transaction, as the database requires), engaged."""
    a, b, env, _ = pg_team
    _as_superuser_past_the_triggers(pg_url, "UPDATE slotgen_environments SET controls = jsonb_set(controls, "
                                    "'{FEATURE_SLOTGEN_AI}', '\"true\"') WHERE name = 'staging'")
    assert slotgen("status", "--env", "staging", "--workspace", str(a), env=env).code == 4
    yes = ["--yes"] if "--yes" in slotgen("audit", "repair", "--help").stdout else []  # SPEC 15 adds it
    repaired = slotgen("audit", "repair", "--env", "staging", *as_(a, "owner"), *yes, "--workspace", str(a),
                       env=env)
    assert repaired.code == 0, repaired.stdout + repaired.stderr
    status = slotgen("status", "--env", "staging", "--json", "--workspace", str(b), env=env)
    assert status.code == 0 and status.json()["audit"]["valid"] is True, status.stdout + status.stderr
    assert status.json()["controls"]["FEATURE_SLOTGEN_AI"] == "false"
    out = tmp_path / "host.env"
    assert slotgen("render", "--env", "staging", "--output", str(out), "--workspace", str(b), env=env).code == 0
    assert _engaged(out)


def test_state_upgrade_adds_the_constraint_to_a_database_made_by_the_previous_schema(pg_team, postgres, pg_url):
    """An environment made under schema 1 (no constraint): `state upgrade` adds it, and the environment goes
    on as before, its row now refused to a writer unless an appended entry leads to it."""
    from slotgen_ops.store import postgres as store

    a, _, env, _ = pg_team
    with psycopg.connect(pg_url, autocommit=True) as conn:  # back to schema 1, as a database made before it
        conn.execute("DROP TRIGGER slotgen_environments_follow_log ON slotgen_environments")
        conn.execute("DROP FUNCTION slotgen_controls_follow_log()")
        conn.execute("UPDATE slotgen_meta SET value = '1' WHERE key = 'schema_version'")
    old = slotgen("status", "--env", "staging", "--workspace", str(a), env=env)
    assert_one_line_error(old, 4)
    assert "run 'slotgen state upgrade'" in old.stderr
    up = slotgen("state", "upgrade", "--url", pg_url, "--json")
    assert up.code == 0 and up.json()["applied"] == list(range(2, store.SCHEMA_VERSION + 1)), up.stderr
    assert slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, *as_(a, "owner"), "--yes",
                   "--workspace", str(a), env=env).code == 0
    with writer_member(postgres, pg_url) as url, psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not made in the transaction"):
            conn.execute("UPDATE slotgen_environments SET controls = jsonb_set(controls, '{SLOTGEN_AI_KILL}', "
                         "'\"false\"'), head_seq = head_seq + 1 WHERE name = 'staging'")
