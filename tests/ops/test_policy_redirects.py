"""Every policy file is pinned, wherever it sits, and a redirect is policy (SPEC sections 8 and 14).

`allowlists/` and `runbooks/` are pinned to any depth (a file in a sub-folder,
or behind a symlinked folder, is as much policy as one at the top), and
`environments/STATE-URL`, which names the database a workspace's environments
live in, is pinned with them: pointed at another database, every change but
rollback is refused, naming it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import psycopg
import pytest

from slotgen_ops.policy.pins import digests, drift, policy_paths, remedy, snapshot
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from cli.helpers import assert_one_line_error, slotgen  # noqa: E402
from walked import API_KEY, APPROVED, kill_as_runtime_reads, walk  # noqa: E402

SET = ("set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=" + APPROVED, "--decision-record", "DR-9",
       "--operator", "owner", "--yes")


@pytest.fixture
def endpoint():
    with FakeOpenAIServer("ok") as server:
        yield server


def run(ws: Path, *args: str, env: dict[str, str] | None = None):
    return slotgen(*args, "--workspace", str(ws), env={"OPENAI_API_KEY": API_KEY, **(env or {})}, cwd=ws)


def _policy_tree(root: Path) -> None:
    for rel in ("slotgen.yaml", "operators.yaml", "allowlists/a.json", "runbooks/beta-enable.yaml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)


def test_files_in_sub_folders_of_allowlists_and_runbooks_are_pinned(tmp_path):
    _policy_tree(tmp_path)
    (tmp_path / "allowlists" / "team" / "deep").mkdir(parents=True)
    (tmp_path / "allowlists" / "team" / "deep" / "wide.json").write_text("{}")
    (tmp_path / "runbooks" / "old").mkdir()
    (tmp_path / "runbooks" / "old" / "beta-enable.yaml").write_text("ladder: [100]")
    paths = policy_paths(tmp_path)
    assert "allowlists/team/deep/wide.json" in paths and "runbooks/old/beta-enable.yaml" in paths
    accepted = snapshot(tmp_path, None)
    (tmp_path / "allowlists" / "team" / "deep" / "wide.json").write_text('{"rules": "everyone"}')
    assert [(c["file"], c["change"]) for c in drift(accepted, tmp_path)] == [("allowlists/team/deep/wide.json",
                                                                                "changed")]


def test_a_folder_reached_through_a_symlink_is_pinned_once(tmp_path):
    _policy_tree(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "wide.json").write_text("{}")
    (tmp_path / "allowlists" / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(tmp_path / "allowlists", target_is_directory=True)  # never walked twice
    paths = policy_paths(tmp_path)
    assert "allowlists/linked/wide.json" in paths
    assert sum(p.endswith("/a.json") for p in paths) == 1


def test_the_state_url_marker_is_pinned_and_its_remedy_never_says_only_remove_it(tmp_path):
    _policy_tree(tmp_path)
    (tmp_path / "environments").mkdir()
    accepted = snapshot(tmp_path, None)
    (tmp_path / "environments" / "STATE-URL").write_text("postgresql://slotgen@db.example/other\n")
    changes = drift(accepted, tmp_path)
    assert [(c["file"], c["change"]) for c in changes] == [("environments/STATE-URL", "added")]
    assert "accept it instead" in remedy(changes, "staging")
    accepted = snapshot(tmp_path, None)
    (tmp_path / "environments" / "STATE-URL").write_text("postgresql://slotgen@evil.example/slotgen\n")
    assert [(c["file"], c["change"]) for c in drift(accepted, tmp_path)] == [("environments/STATE-URL", "changed")]
    assert "environments/STATE-URL" in digests(tmp_path)


def test_a_policy_file_added_in_a_sub_folder_blocks_changes(tmp_path, endpoint):
    """Through the CLI: before, an edit below the top of allowlists/ blocked nothing."""
    ws = tmp_path / "ws"
    walk(ws, 2, endpoint.base_url)
    (ws / "allowlists" / "team").mkdir()
    (ws / "allowlists" / "team" / "wide-open.json").write_text(json.dumps({"version": "x", "enabled": True,
                                                                            "rules": []}))
    change = run(ws, *SET)
    assert_one_line_error(change, 4)
    assert "allowlists/team/wide-open.json" in change.stderr
    assert run(ws, "rollback", "--env", "staging", "--reason", "drift", "--operator", "oncall").code == 0
    assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "true"


def _second_database(postgres) -> str:
    import secrets

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url("slotgen_admin", postgres.password, name)


def test_state_url_pointed_at_another_database_is_refused_naming_it(tmp_path, endpoint, postgres, pg_url):
    """A workspace moved into database A (the move accepted like any policy edit); its STATE-URL then pointed
    at database B, which holds a genuine copy of the same log from before the move. A clone that never saw
    the workspace (no memory of its head) reads B: every change but rollback is refused, naming the file."""
    ws, copy = tmp_path / "ws", tmp_path / "copy"
    walk(ws, 2, endpoint.base_url)
    shutil.copytree(ws, copy)
    other = _second_database(postgres)
    password = psycopg.conninfo.conninfo_to_dict(pg_url)["password"]
    db = {"PGPASSWORD": password, "OPENAI_BASE_URL": endpoint.base_url}
    assert run(ws, "state", "migrate", "--to", pg_url, env=db).code == 0
    assert run(copy, "state", "migrate", "--to", other, env=db).code == 0
    approval = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-5", "--operator",
                   "approver", "--yes", "--json", env=db).json()["approvalId"]
    accepted = run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-5", "--approval", approval,
                   "--operator", "owner", env=db)
    assert accepted.code == 0, accepted.stderr

    (ws / "environments" / "STATE-URL").write_text((copy / "environments" / "STATE-URL").read_text())
    fresh = {**db, "XDG_STATE_HOME": str(tmp_path / "another-machine")}
    change = run(ws, *SET, env=fresh)
    assert_one_line_error(change, 4)
    assert "environments/STATE-URL" in change.stderr
    status = run(ws, "status", "--env", "staging", "--json", env=fresh).json()
    assert [d["file"] for d in status["policy"]["drift"]] == ["environments/STATE-URL"]
    assert run(ws, "rollback", "--env", "staging", "--reason", "redirect", "--operator", "oncall", env=fresh).code == 0


def test_a_fifo_where_a_policy_file_or_the_marker_was_is_drift_never_a_hang(tmp_path):
    import os
    import signal

    from slotgen_ops.policy.paths import marker_url

    _policy_tree(tmp_path)
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "STATE-URL").write_text("postgresql://slotgen@db.example/slotgen\n")
    assert marker_url(tmp_path / "environments") == "postgresql://slotgen@db.example/slotgen"
    accepted = snapshot(tmp_path, None)
    (tmp_path / "environments" / "STATE-URL").unlink()
    os.mkfifo(tmp_path / "environments" / "STATE-URL")
    os.mkfifo(tmp_path / "allowlists" / "b.json")
    def hung(signum, frame):
        raise AssertionError("a FIFO was opened blocking")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)  # a blocking open of a FIFO would wait for a writer for ever
    try:
        assert marker_url(tmp_path / "environments") is None
        changes = {c["file"]: c["change"] for c in drift(accepted, tmp_path)}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert changes == {"environments/STATE-URL": "changed", "allowlists/b.json": "added"}
    assert digests(tmp_path)["allowlists/b.json"] == "unreadable"
