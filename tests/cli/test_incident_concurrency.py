"""Rollback always wins, through real processes (SPEC section 6, "Never waits").

A rollback runs while another `slotgen` process is verifying against a hung or
slow endpoint, while a lock holder is stopped (SIGSTOP) inside its critical
section, and after every lock-looking file is deleted. Each time: the
rollback finishes before the other process does (asserted as an order of
events, never as a wall-clock bound), the kill-switch ends engaged as the
runtime reads it, the other process's change never reaches the controls, and
`audit verify` passes once the next command has run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import clean_env, command, demo_key, slotgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from walked import API_KEY, kill_as_runtime_reads, walk  # noqa: E402

DR = ["--decision-record", "DR-77"]
ENV = {"OPENAI_API_KEY": API_KEY}


def start(ws: Path, *args: str, fault: list[str] | None = None) -> subprocess.Popen:
    env = clean_env({**ENV, **demo_key(args, ws, ENV)})
    return subprocess.Popen(command(*args, "--workspace", str(ws), fault=fault), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def wait_for(path: Path, proc: subprocess.Popen, limit_s: float = 60) -> None:
    """Wait on the thing itself: the marker the child writes at a protocol point (or its early death)."""
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended before reaching the point: {proc.returncode} {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never reached the point")
        time.sleep(0.002)


def rollback(ws: Path, *extra: str):
    return slotgen("rollback", "--env", "staging", "--reason", "incident", "--operator", "oncall", "--json",
                   "--workspace", str(ws), *extra, env=ENV)


def log_entries(ws: Path) -> list[dict]:
    return [json.loads(line) for line in (ws / "environments" / "staging.audit.jsonl").read_text().splitlines()]


def audit_valid(ws: Path) -> dict:
    run = slotgen("audit", "verify", "--env", "staging", "--json", "--workspace", str(ws))
    assert run.code == 0, (run.stdout, run.stderr)
    return run.json()


@pytest.mark.parametrize("mode", ["hung", "slow"])
@pytest.mark.parametrize("delete_lock_files", [False, True])
def test_rollback_wins_against_a_verification_stuck_on_the_endpoint(tmp_path, endpoint, mode, delete_lock_files):
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)  # verified, kill-switch on: `set SLOTGEN_AI_KILL=false` is next
    endpoint.set_mode(mode, delay_s=30)
    marker = tmp_path / "verifying"
    setter = start(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, "--operator", "owner", "--yes",
                   "--json", fault=["--at", "before-verify", "--do", f"touch:{marker}"])
    try:
        wait_for(marker, setter)
        if delete_lock_files:  # what an operator does to a "stuck" rollback: there is no lock file to delete
            for path in (ws / "environments").glob("*.lock"):
                path.unlink()
            assert not list((ws / "environments").glob("*.lock"))
        run = rollback(ws)
        assert setter.poll() is None, "the rollback must finish while the other process is still verifying"
        assert run.code == 0, run.stderr
        doc = run.json()
        assert doc["rollback"]["engaged"] is True and doc["auditSeq"] is not None
        assert "waiting" not in run.stderr  # verification holds no lock: nothing to wait for
        assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "true"
    finally:
        endpoint.stopping.set()  # release the hung answers; the setter's verification now fails or ends
    out, err = setter.communicate(timeout=120)
    # The verification was overtaken by the rollback: recorded as superseded, no control changed.
    assert setter.returncode in (1, 3), (setter.returncode, out, err)
    assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "true"
    entries = log_entries(ws)
    assert not any(e["action"] == "set" and e["control"] == "SLOTGEN_AI_KILL" and e["new"] == "false"
                   for e in entries), "the stale change was committed"
    if setter.returncode == 3:
        assert "superseded" in err
        assert entries[-1]["action"] == "verify" and entries[-1]["details"]["superseded"] is True
    assert audit_valid(ws)["valid"] is True


@pytest.mark.parametrize("point", ["writer-locked", "after-audit-append", "controls-before-rename"])
def test_rollback_wins_against_a_stopped_lock_holder(tmp_path, endpoint, point):
    """A writer stopped inside its critical section, at each point, live at 5 stepping down to 1."""
    ws = tmp_path / "ws"
    walk(ws, 7, endpoint.base_url)
    marker = tmp_path / "stopped"
    holder = start(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", *DR, "--operator", "owner",
                   "--yes", fault=["--at", point, "--do", f"touch:{marker},stop"])
    try:
        wait_for(marker, holder)
        pid = int(marker.read_text())
        run = rollback(ws)
        assert holder.poll() is None
        assert run.code == 0, run.stderr
        # It said at once why the record had to wait, naming the stopped holder.
        assert f"held by pid {pid}" in run.stderr and "stopped" in run.stderr, run.stderr
        assert run.json()["rollback"]["breakGlass"] is True
        assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "true"
        # The break-glass act is in the review before it is folded (audit show reads no writer's lock).
        shown = slotgen("audit", "show", "--env", "staging", "--json", "--workspace", str(ws))
        glass = shown.json()["breakGlass"]
        assert [g["folded"] for g in glass] == [False] and glass[0]["entry"]["reason"] == "incident"
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    out, err = holder.communicate(timeout=60)
    assert "Traceback" not in err
    # The resumed writer never undoes the rollback, whatever point it was stopped at.
    assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "true", (holder.returncode, err)
    status = slotgen("status", "--env", "staging", "--json", "--workspace", str(ws))
    assert status.code == 0, status.stderr
    assert status.json()["controls"]["SLOTGEN_AI_KILL"] == "true"
    verdict = audit_valid(ws)
    assert verdict["valid"] is True and verdict["breakGlass"]["unfolded"] == 0
    assert any(e["action"] == "rollback" and (e.get("details") or {}).get("trigger") == "break-glass-fold"
               for e in log_entries(ws))


def test_a_second_writer_waits_for_a_stopped_holder_and_says_who(tmp_path, endpoint):
    """Mutual exclusion is the directory's flock: deleting files does not let a second writer in."""
    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url)
    marker = tmp_path / "stopped"
    holder = start(ws, "approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", *DR, "--operator", "approver",
                   "--yes", fault=["--at", "writer-locked", "--do", f"touch:{marker},stop"])
    wait_for(marker, holder)
    for path in (ws / "environments").iterdir():
        if path.suffix == ".lock" or path.name.startswith("."):
            path.unlink()
    second = start(ws, "approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record", "DR-78",
                   "--operator", "approver", "--yes")
    line = ""
    while "waiting for the lock" not in line:  # the notice comes at once, on stderr
        line = second.stderr.readline()
        assert line, "the second writer ended without waiting"
    assert f"pid {holder.pid}" in line and "stopped" in line
    assert second.poll() is None
    os.kill(holder.pid, signal.SIGCONT)
    assert holder.wait(timeout=60) == 0
    assert second.wait(timeout=60) == 0
    approvals = [e for e in log_entries(ws) if e["action"] == "approve"]
    assert [e["decisionRecord"] for e in approvals[-2:]] == ["DR-77", "DR-78"]
    assert audit_valid(ws)["valid"] is True


def test_signing_holds_no_lock_and_a_rollback_meanwhile_supersedes_the_change(tmp_path, endpoint):
    """SPEC sections 6 and 7: a change signs its entries with the lock released. Stopped right there, it
    holds no lock: a rollback engages and records in the audit log itself (not the break-glass journal);
    resumed, the change finds the environment moved and is superseded (exit 3), nothing exposed."""
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)
    marker = tmp_path / "signing"
    change = start(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, "--operator", "owner", "--yes",
                   fault=["--at", "before-sign", "--do", f"touch:{marker},stop"])
    wait_for(marker, change)
    rb = slotgen("rollback", "--env", "staging", "--reason", "while signing", "--operator", "oncall", "--json",
                 "--workspace", str(ws), env=ENV)
    assert rb.code == 0, rb.stderr
    doc = rb.json()
    assert doc["rollback"]["engaged"] is True and not doc.get("breakGlass"), doc
    assert "waiting for the lock" not in rb.stderr
    os.kill(change.pid, signal.SIGCONT)
    out, err = change.communicate(timeout=120)
    assert change.returncode == 3 and "superseded" in err, (change.returncode, err)
    assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "true"
    sets = [e for e in log_entries(ws) if e["action"] == "set" and e["control"] == "SLOTGEN_AI_KILL"
            and e["new"] == "false"]
    assert sets == [], "the change was never recorded"
    assert audit_valid(ws)["valid"] is True
