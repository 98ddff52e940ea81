"""Two operators' clones of one workspace on one PostgreSQL database (SPEC section 10), through the real CLI:
the runbook walked alternating between them, one winner when they contend, and the same verdicts from
either side."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.helpers import assert_one_line_error, clean_env, command, slotgen  # noqa: E402

DR = ["--decision-record", "DR-1"]
APPROVED = "allowlists/slot-generation-allowlist.v1.json"


@pytest.fixture
def team(pg_team):
    return pg_team


def run(ws: Path, *args: str, env: dict, **kw):
    return slotgen(*args, "--workspace", str(ws), env=env, cwd=ws, **kw)


def as_(ws: Path, operator: str) -> list[str]:
    return ["--operator", operator, "--key", str(ws / "demo-keys" / operator)]


def test_init_keeps_the_password_out_of_the_workspace_and_the_environments_in_the_database(team, pg_url):
    a, b, env, _ = team
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    text = (a / "slotgen.yaml").read_text()
    assert f"state: 'postgresql://{info['user']}@" in text and info["password"] not in text
    assert not (a / "environments" / "staging.env").exists(), "no controls file: the database holds them"
    with psycopg.connect(pg_url) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM slotgen_environments")}
        assert names == {"staging", "production"}
        assert conn.execute("SELECT count(*) FROM slotgen_log").fetchone()[0] == 2
    for ws in (a, b):
        assert run(ws, "audit", "verify", "--env", "staging", env=env).code == 0


def test_the_runbook_walked_alternating_between_two_clones(team):
    a, b, env, _ = team
    sides = [a, b]

    def step(i: int, *args: str, who: str):
        ws = sides[i % 2]
        r = run(ws, *args, *DR, *as_(ws, who), env=env)
        assert r.code == 0, (ws.name, args, r.stderr)
        return r

    step(0, "set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--yes", who="owner")
    # Skipping ahead from the other clone is refused there too, and recorded for both to see.
    skipped = run(b, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, *as_(b, "owner"), "--yes", env=env)
    assert_one_line_error(skipped, 3)
    step(1, "set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--yes", who="oncall")
    step(2, "set", "--env", "staging", f"SLOTGEN_AI_ALLOWLIST_PATH={APPROVED}", "--yes", who="owner")
    approval = step(3, "approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes", "--json",
                    who="approver").json()["approvalId"]
    step(4, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--approval", approval, "--yes", who="oncall")
    step(5, "verify", "--env", "staging", who="owner")
    step(6, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--yes", who="owner")
    for ws in (a, b):
        status = run(ws, "status", "--env", "staging", "--json", env=env)
        assert status.code == 0
        doc = status.json()
        assert doc["controls"]["SLOTGEN_AI_KILL"] == "false" and doc["audit"]["valid"] is True
    rb = run(b, "rollback", "--env", "staging", "--reason", "from the other clone", *as_(b, "oncall"), "--json",
             env=env)
    assert rb.code == 0 and rb.json()["rollback"]["engaged"] is True and not rb.json().get("breakGlass")
    assert run(a, "status", "--env", "staging", "--json", env=env).json()["controls"]["SLOTGEN_AI_KILL"] == "true"
    for ws in (a, b):
        verify = run(ws, "audit", "verify", "--env", "staging", "--json", env=env)
        assert verify.code == 0 and verify.json()["valid"] is True
    actions = [e["action"] for e in json.loads("[" + ",".join(
        run(a, "audit", "export", "--env", "staging", env=env).stdout.splitlines()) + "]")]
    assert actions.count("refused") == 1 and actions.count("rollback") == 1


def test_contending_changes_from_both_clones_have_exactly_one_winner(team, pg_url):
    a, b, env, _ = team
    assert run(a, "set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, *as_(a, "owner"), "--yes", env=env).code == 0

    def contend(i: int):
        ws = (a, b)[i % 2]
        proc = subprocess.run(command("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", *DR,
                                      *as_(ws, "oncall"), "--yes", "--workspace", str(ws)),
                              env=clean_env(env), capture_output=True, text=True, cwd=ws, timeout=300)
        return proc.returncode, proc.stderr

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(contend, range(8)))
    codes = sorted(code for code, _ in results)
    assert codes.count(0) == 1, results
    assert all(code == 3 for code in codes if code != 0), results
    with psycopg.connect(pg_url) as conn:
        sets = conn.execute("SELECT count(*) FROM slotgen_log WHERE env = 'staging' AND "
                            "convert_from(line, 'UTF8')::jsonb->>'action' = 'set'").fetchone()[0]
    assert sets == 2, "step 1 and exactly one step 2"
    for ws in (a, b):
        assert run(ws, "audit", "verify", "--env", "staging", env=env).code == 0


def test_many_approvals_from_both_clones_lose_nothing(team, pg_url):
    a, b, env, _ = team
    assert run(a, "set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, *as_(a, "owner"), "--yes", env=env).code == 0
    assert run(b, "set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", *DR, *as_(b, "oncall"), "--yes",
               env=env).code == 0
    assert run(a, "set", "--env", "staging", f"SLOTGEN_AI_ALLOWLIST_PATH={APPROVED}", *DR, *as_(a, "owner"), "--yes",
               env=env).code == 0
    per, workers = 5, 8

    def approve(i: int):
        ws = (a, b)[i % 2]
        out = []
        for n in range(per):
            proc = subprocess.run(command("approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1",
                                          "--decision-record", f"DR-{i + 1}{n:02d}", *as_(ws, "approver"), "--yes",
                                          "--json", "--workspace", str(ws)),
                                  env=clean_env(env), capture_output=True, text=True, cwd=ws, timeout=300)
            out.append((proc.returncode, proc.stdout, proc.stderr))
        return out

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = [r for batch in pool.map(approve, range(workers)) for r in batch]
    assert all(code == 0 for code, _, _ in results), [err for code, _, err in results if code][:3]
    ids = {json.loads(out)["approvalId"] for _, out, _ in results}
    assert len(ids) == per * workers
    status = run(b, "status", "--env", "staging", "--json", env=env).json()
    assert set(status["approvals"]) == ids, "no lost update: every approval is in the head state"
    for ws in (a, b):
        assert run(ws, "audit", "verify", "--env", "staging", env=env).code == 0


def test_a_file_workspace_moves_into_the_database_with_its_checkpoints_still_good(tmp_path, pg_url, monkeypatch):
    from walked import walk

    with FakeOpenAIServer("ok") as server:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-local"}
        ws = tmp_path / "ws"
        walk(ws, 5, server.base_url)  # files, verified, one step before live
        checkpoint = tmp_path / "before.checkpoint"
        assert slotgen("audit", "checkpoint", "--env", "staging", "--operator", "approver", "-o", str(checkpoint),
                       "--workspace", str(ws), env=env, cwd=ws).code == 0
        entries_before = (ws / "environments" / "staging.audit.jsonl").read_bytes()
        moved = slotgen("state", "migrate", "--to", pg_url, "--workspace", str(ws), "--json", env=env)
        assert moved.code == 0, moved.stderr
        doc = moved.json()
        assert {e["env"] for e in doc["environments"]} == {"staging", "production"}
        assert not (ws / "environments" / "staging.audit.jsonl").exists()
        assert (Path(doc["setAside"]) / "staging.audit.jsonl").read_bytes() == entries_before, "files kept"
        info = psycopg.conninfo.conninfo_to_dict(pg_url)
        assert info["password"] not in (ws / "environments" / "STATE-URL").read_text()
        db_env = {**env, "PGPASSWORD": info["password"]}  # the marker has no password: libpq finds it
        verify = slotgen("audit", "verify", "--env", "staging", "--checkpoint", str(checkpoint), "--json",
                         "--workspace", str(ws), env=db_env)
        assert verify.code == 0, verify.stderr
        assert verify.json()["checkpoints"][0]["consistent"] is True
        # environments/STATE-URL is policy (SPEC 14, "Redirects are policy"): the move is accepted like any edit.
        assert "environments/STATE-URL" in run(ws, "config", "status", "--env", "staging", env=db_env).stdout
        approval = run(ws, "approve", "--env", "staging", "--config", *DR, *as_(ws, "approver"), "--yes", "--json",
                       env=db_env).json()["approvalId"]
        accepted = run(ws, "config", "accept", "--env", "staging", *DR, "--approval", approval, *as_(ws, "owner"),
                       env=db_env)
        assert accepted.code == 0, accepted.stderr
        assert run(ws, "verify", "--env", "staging", *DR, *as_(ws, "oncall"), env=db_env).code == 0
        go_live = slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, *as_(ws, "owner"), "--yes",
                          "--workspace", str(ws), env=db_env, cwd=ws)
        assert go_live.code == 0, go_live.stderr
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT controls->>'SLOTGEN_AI_KILL' FROM slotgen_environments "
                                "WHERE name = 'staging'").fetchone()[0] == "false"
        again = slotgen("state", "migrate", "--to", pg_url, "--workspace", str(ws), env=db_env)
        assert_one_line_error(again, 2)


def test_operators_need_only_the_writer_role(tmp_path, pg_url, postgres):
    """The owner creates the schema once; operators log in as roles that are members of slotgen_writer
    (read, append to the log, update the environments' rows) and do everything else."""
    from slotgen_ops.store import postgres as store

    store.upgrade(pg_url)
    db = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE op_bob LOGIN PASSWORD 'bob-pw' IN ROLE slotgen_writer")
    bob_url = postgres.url("op_bob", None, db)
    try:
        with FakeOpenAIServer("ok") as server:
            env = {"SLOTGEN_STATE_URL": bob_url, "PGPASSWORD": "bob-pw", "OPENAI_BASE_URL": server.base_url,
                   "OPENAI_API_KEY": "sk-local"}
            ws = tmp_path / "ws"
            made = slotgen("init", str(ws), "--state", bob_url, env=env, cwd=tmp_path)
            assert made.code == 0, made.stderr
            assert run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, *as_(ws, "owner"), "--yes",
                       env=env).code == 0
            assert run(ws, "approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", *DR, *as_(ws, "approver"),
                       "--yes", env=env).code == 0
            assert run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, *as_(ws, "owner"), "--yes",
                       env=env).code == 3  # refused (a skipped step), and the refusal recorded
            assert run(ws, "rollback", "--env", "staging", "--reason", "r", *as_(ws, "oncall"), env=env).code == 0
            assert run(ws, "render", "--env", "staging", "--output", str(tmp_path / "host.env"), env=env).code == 0
            assert run(ws, "audit", "verify", "--env", "staging", env=env).code == 0
            forged = slotgen("state", "upgrade", "--url", bob_url, env=env)
            assert forged.code == 0 and "nothing to do" in forged.stdout
        with psycopg.connect(postgres.url("op_bob", "bob-pw", db), autocommit=True) as bob:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bob.execute("DELETE FROM slotgen_log")
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY op_bob")
            conn.execute("DROP ROLE op_bob")
