"""Going down and coming back, signals, and no safety switch, through the real CLI (SPEC section 6)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from .helpers import slotgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from walked import API_KEY, kill_as_runtime_reads, walk  # noqa: E402

ENV = {"OPENAI_API_KEY": API_KEY}
PACKAGE = Path(__file__).resolve().parents[2] / "slotgen_ops"


def run(ws: Path, *args: str, fault: list[str] | None = None):
    return slotgen(*args, "--workspace", str(ws), env=ENV, fault=fault)


def entries(ws: Path) -> list[dict]:
    return [json.loads(line) for line in (ws / "environments" / "staging.audit.jsonl").read_text().splitlines()]


def test_step_down_then_rollback_then_come_back_with_an_approval(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 7, endpoint.base_url)  # live at 5
    down = run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-20",
               "--operator", "oncall", "--yes", "--json")
    assert down.code == 0, down.stderr
    assert down.json()["step"] == "reduce-exposure"
    assert entries(ws)[-1]["approvalId"] is None and entries(ws)[-1]["verification"]["passed"] is True
    nxt = run(ws, "next", "--env", "staging", "--json").json()
    assert nxt["step"] == "rollout-progression" and nxt["value"] == "5"
    assert "after a step down" in nxt["position"]
    status = run(ws, "status", "--env", "staging")
    assert "after a step down" in status.stdout
    assert run(ws, "rollback", "--env", "staging", "--reason", "errors", "--operator", "oncall").code == 0
    # With the kill-switch engaged the flag can go off too; the position follows the controls.
    off = run(ws, "set", "--env", "staging", "FEATURE_SLOTGEN_AI=false", "--decision-record", "DR-21",
              "--operator", "owner", "--yes")
    assert off.code == 0, off.stderr
    assert run(ws, "next", "--env", "staging", "--json").json()["step"] == "feature-flag-on"
    for item in ("FEATURE_SLOTGEN_AI=true",):
        assert run(ws, "set", "--env", "staging", item, "--decision-record", "DR-22", "--operator", "owner",
                   "--yes").code == 0
    nxt = run(ws, "next", "--env", "staging", "--json").json()
    assert nxt["step"] == "verify" and "after a rollback" in nxt["summary"]
    assert run(ws, "verify", "--env", "staging", "--decision-record", "DR-23", "--operator", "owner").code == 0
    nxt = run(ws, "next", "--env", "staging", "--json").json()
    assert nxt["step"] == "kill-switch-off" and nxt["needsApproval"] is True
    assert any("slotgen approve" in c and "SLOTGEN_AI_KILL=false" in c for c in nxt["commands"])
    refused = run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-24",
                  "--operator", "owner", "--yes")
    assert refused.code == 3 and "needs an approval" in refused.stderr
    approval = run(ws, "approve", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-24",
                   "--operator", "approver", "--yes", "--json").json()["approvalId"]
    back = run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-24",
               "--approval", approval, "--operator", "owner", "--yes")
    assert back.code == 0, back.stderr
    assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "false"
    assert run(ws, "audit", "verify", "--env", "staging").code == 0


def test_feature_off_while_live_is_refused_with_the_way_down(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url)
    r = run(ws, "set", "--env", "staging", "FEATURE_SLOTGEN_AI=false", "--decision-record", "DR-9",
            "--operator", "owner", "--yes")
    assert r.code == 3 and "slotgen rollback" in r.stderr


@pytest.mark.parametrize("sig", ["term", "hup", "int"])
def test_a_signal_during_verification_changes_nothing(tmp_path, endpoint, sig):
    """SIGTERM and SIGHUP (a dropped SSH session) behave like SIGINT: nothing committed, nothing live."""
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)
    before = (ws / "environments" / "staging.env").read_bytes(), len(entries(ws))
    r = run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-9", "--operator",
            "owner", "--yes", fault=["--at", "after-verify", "--do", sig])
    assert r.code == 130, (r.code, r.stderr)
    assert "Traceback" not in r.stderr and "interrupted" in r.stderr
    assert ((ws / "environments" / "staging.env").read_bytes(), len(entries(ws))) == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_inside_the_critical_section_waits_for_its_end(tmp_path, endpoint, sig):
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)
    name = {signal.SIGTERM: "term", signal.SIGHUP: "hup"}[sig]
    r = run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-9", "--operator",
            "owner", "--yes", fault=["--at", "after-audit-append", "--do", name])
    assert r.code == 130, (r.code, r.stderr)
    # The change was committed whole: the entry and the controls agree, verified before the commit.
    assert entries(ws)[-1]["action"] == "set" and entries(ws)[-1]["verification"]["passed"] is True
    assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "false"
    assert run(ws, "audit", "verify", "--env", "staging").code == 0


def test_the_installed_cli_has_no_safety_switch(tmp_path, endpoint):
    """No variable of the package disables locking, verification or integrity checks, or injects a fault."""
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    for name in ("SLOTGEN_FAULT", "SLOTGEN_UNSAFE", "DISABLE_LOCK", "WIDEN_RACE"):
        assert name not in source, name
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)
    env = {**ENV, "SLOTGEN_FAULT": "after-audit-append", "SLOTGEN_UNSAFE_DISABLE_LOCK": "1"}
    r = slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-9", "--operator",
                "owner", "--yes", "--workspace", str(ws), env=env)
    assert r.code == 0, r.stderr  # not killed at the "fault point"


@pytest.mark.parametrize("sig", ["int", "term", "hup"])
def test_a_signal_during_the_rollbacks_own_write_leaves_no_temp_file(tmp_path, endpoint, sig):
    """Regression (found by the fault campaign): the rollback's lock-free write defers the stop signals too,
    so an interrupt between its temp file and the rename cannot leave the temp file behind. The entry
    point's early write reaches the point twice (#1, #2); the command's own write is #3."""
    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url)
    r = run(ws, "rollback", "--env", "staging", "--reason", "x", "--operator", "oncall",
            fault=["--at", "rollback-temp-written#3", "--do", sig])
    assert r.code == 130 and "Traceback" not in r.stderr, (r.code, r.stderr)
    assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "true"
    assert not list((ws / "environments").glob(".*.tmp-*"))
