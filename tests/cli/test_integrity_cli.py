"""Tamper, crash and break-glass through the real CLI: SPEC sections 3 and 5."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from .helpers import assert_one_line_error, slotgen

DR = ["--decision-record", "DR-7"]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    assert slotgen("init", str(root)).code == 0
    return root


def step(ws: Path, *args: str, env: dict | None = None, fault: list[str] | None = None):
    return slotgen(*args, "--workspace", str(ws), env=env, fault=fault)


def snapshot(ws: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((ws / "environments").iterdir()) if not p.name.endswith(".lock")}


def first_steps(ws: Path) -> None:
    assert step(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, "--operator", "owner", "--yes").code == 0
    assert step(ws, "set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", *DR, "--operator", "oncall", "--yes").code == 0


def test_hand_edited_controls_block_changes_but_not_rollback(ws):
    first_steps(ws)
    controls = ws / "environments" / "staging.env"
    controls.write_text(controls.read_text().replace("SLOTGEN_AI_ROLLOUT_PERCENT=0", "SLOTGEN_AI_ROLLOUT_PERCENT=100"))
    run = step(ws, "set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
               *DR, "--operator", "owner", "--yes")
    assert_one_line_error(run, 4)
    assert "hand edit" in run.stderr
    status = step(ws, "status", "--env", "staging", "--json")
    assert status.code == 4 and status.json()["audit"]["valid"] is False
    verify = step(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4 and verify.json()["valid"] is False
    rb = step(ws, "rollback", "--env", "staging", "--reason", "tampered controls", "--operator", "oncall", "--json")
    assert rb.code == 0, rb.stderr
    assert rb.json()["rollback"]["breakGlass"] is True
    assert "SLOTGEN_AI_KILL=true" in controls.read_text()
    assert (ws / "environments" / "staging.breakglass.jsonl").read_text().count("\n") == 1


def test_edited_audit_entry_is_named_by_audit_verify(ws):
    first_steps(ws)
    log = ws / "environments" / "staging.audit.jsonl"
    lines = log.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["operator"] = "someone-else"
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n")
    run = step(ws, "audit", "verify", "--env", "staging", "--json")
    assert run.code == 4
    assert run.json()["firstBad"] == 2 and run.json()["valid"] is False
    assert "Traceback" not in run.stderr


def test_truncated_log_is_detected_against_the_controls_head(ws):
    first_steps(ws)
    log = ws / "environments" / "staging.audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-2]))
    run = step(ws, "audit", "verify", "--env", "staging", "--json")
    assert run.code == 4
    assert run.json()["firstBad"] == len(lines) - 1
    assert_one_line_error(step(ws, "set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
                               *DR, "--operator", "owner", "--yes"), 4)


@pytest.mark.parametrize("point", ["after-audit-append", "controls-after-temp-write", "controls-before-rename",
                                   "controls-after-rename"])
def test_crash_at_each_point_then_next_command_closes_it_fail_closed(ws, point):
    first_steps(ws)
    before = snapshot(ws)
    run = step(ws, "set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
               *DR, "--operator", "owner", "--yes", fault=["--at", point, "--do", "kill"])
    assert run.code == -signal.SIGKILL, (run.code, run.stderr)
    log = ws / "environments" / "staging.audit.jsonl"
    assert len(log.read_text().splitlines()) == len(before["staging.audit.jsonl"].decode().splitlines()) + 1
    # The next command, even `status`, closes an interrupted change fail closed, records it and says so.
    status = step(ws, "status", "--env", "staging", "--json")
    assert status.code == 0, status.stderr
    doc = status.json()
    assert doc["controls"]["SLOTGEN_AI_KILL"] == "true"
    assert doc["controls"]["SLOTGEN_AI_ALLOWLIST_PATH"] == "allowlists/slot-generation-allowlist.v1.json"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    if point in ("after-audit-append", "controls-after-temp-write", "controls-before-rename"):
        assert entries[-1]["action"] == "rollback" and entries[-1]["details"]["trigger"] == "recover"
        assert any("interrupted" in w for w in doc["warnings"]), doc["warnings"]
    else:  # the rename happened: the change is whole, nothing to close
        assert entries[-1]["action"] == "set"
    audit = step(ws, "audit", "verify", "--env", "staging", "--json")
    assert audit.code == 0 and audit.json()["valid"] is True, audit.stdout
    verify = step(ws, "verify", "--env", "staging", *DR, "--operator", "oncall", "--json")
    assert verify.code == 0, verify.stderr
    assert not list((ws / "environments").glob(".*.tmp-*"))


def test_torn_last_line_refuses_changes_until_repaired(ws):
    first_steps(ws)
    log = ws / "environments" / "staging.audit.jsonl"
    with log.open("a") as fh:
        fh.write('{"seq": 99, "action": "se')
    run = step(ws, "set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
               *DR, "--operator", "owner", "--yes")
    assert run.code == 4 and "Traceback" not in run.stderr
    verify = step(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4
    repaired = step(ws, "audit", "repair", "--env", "staging", "--operator", "oncall", "--json")
    assert repaired.code == 0, repaired.stderr
    assert repaired.json()["repaired"] is True
    assert step(ws, "audit", "verify", "--env", "staging", "--json").json()["valid"] is True
    again = step(ws, "set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
                 *DR, "--operator", "owner", "--yes", "--json")
    assert again.code == 0, again.stderr


def test_dry_run_writes_nothing(ws):
    first_steps(ws)
    before = snapshot(ws)
    for args in (["set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json", *DR,
                  "--operator", "owner"],
                 ["approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", *DR, "--operator", "approver"],
                 ["rollback", "--env", "staging", "--reason", "drill", "--operator", "oncall"],
                 ["set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, "--operator", "owner"]):
        run = step(ws, *args, "--dry-run", "--json")
        assert run.code in (0, 3), run.stderr
    assert snapshot(ws) == before


def test_repair_restores_hand_edited_controls_with_the_kill_switch_on(ws):
    first_steps(ws)
    controls = ws / "environments" / "staging.env"
    controls.write_text(controls.read_text().replace("SLOTGEN_AI_KILL=true", "SLOTGEN_AI_KILL=false"))
    assert step(ws, "status", "--env", "staging", "--json").code == 4
    run = step(ws, "audit", "repair", "--env", "staging", "--operator", "oncall", "--json")
    assert run.code == 0, run.stderr
    doc = run.json()
    assert doc["restored"]["controls"]["SLOTGEN_AI_KILL"] == "true"
    assert "SLOTGEN_AI_KILL=true" in controls.read_text()
    assert step(ws, "audit", "verify", "--env", "staging", "--json").json()["valid"] is True
    entries = [json.loads(x) for x in (ws / "environments" / "staging.audit.jsonl").read_text().splitlines()]
    assert entries[-1]["action"] == "rollback" and entries[-1]["details"]["trigger"] == "restore-controls"
    assert entries[-1]["details"]["found"]["values"]["SLOTGEN_AI_KILL"] == "false"
    # and the runbook goes on from where the log says
    assert step(ws, "next", "--env", "staging", "--json").json()["step"] == "allowlist-enable"


def test_repair_refuses_a_log_that_does_not_verify(ws):
    first_steps(ws)
    log = ws / "environments" / "staging.audit.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # an entry deleted
    before = log.read_bytes()
    run = step(ws, "audit", "repair", "--env", "staging", "--operator", "oncall")
    assert_one_line_error(run, 4)
    assert "restore it from a backup" in run.stderr
    assert log.read_bytes() == before


def test_repair_never_hides_a_truncated_log(ws):
    first_steps(ws)
    log = ws / "environments" / "staging.audit.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:-2]))
    before = log.read_bytes()
    run = step(ws, "audit", "repair", "--env", "staging", "--operator", "oncall")
    assert_one_line_error(run, 4)
    assert "truncated" in run.stderr and log.read_bytes() == before
    assert step(ws, "audit", "verify", "--env", "staging").code == 4


def test_rollback_with_a_torn_last_line_still_engages_the_kill_switch(ws):
    first_steps(ws)
    controls = ws / "environments" / "staging.env"
    # Live-looking controls are not needed: the point is that the append is refused.
    with (ws / "environments" / "staging.audit.jsonl").open("a") as fh:
        fh.write('{"seq": 99, "acti')
    run = step(ws, "rollback", "--env", "staging", "--reason", "incident", "--operator", "oncall", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["rollback"]["breakGlass"] is True
    assert "SLOTGEN_AI_KILL=true" in controls.read_text()
    assert (ws / "environments" / "staging.breakglass.jsonl").exists()


def test_status_removes_the_temp_file_of_a_killed_writer(tmp_path):
    """A rollback or writer SIGKILLed between writing its temp file and renaming it leaves
    `.E.env.tmp-<pid>`; the next command, even status, removes it (only a dead process's)."""
    import subprocess
    import sys

    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = ws / "environments" / f".staging.env.tmp-{dead}"
    stale.write_text("SLOTGEN_AI_KILL=false\n")
    alive = ws / "environments" / f".staging.env.tmp-{os.getpid()}"
    alive.write_text("a live writer's\n")
    assert slotgen("status", "--env", "staging", "--workspace", str(ws)).code == 0
    assert not stale.exists() and alive.exists()
