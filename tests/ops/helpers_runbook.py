"""Shared helpers for the runbook, change-service and stateful tests.

Pure helpers only (no I/O beyond loading the shipped runbook): entry builders
that mirror what `slotgen_ops.changes.steps` records, an in-memory hash-chained
log, and fake verification reports (test doubles for the verification only).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from slotgen_ops.contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR
from slotgen_ops.audit.review import GENESIS_HASH, verify_lines
from slotgen_ops.policy.authority import utc
from slotgen_ops.audit.canonical import _dumps, entry_hash
from slotgen_ops.runbook.runbook import CHECK_NAMES, Runbook
from slotgen_ops.runbook.state import APPROVE, INIT, ROLLBACK, SAFE_CONTROLS, SET, VERIFY, apply

REPO = Path(__file__).resolve().parents[2]
RUNBOOK_PATH = REPO / "runbooks" / "beta-enable.yaml"
APPROVED_ALLOWLIST = "allowlists/slot-generation-allowlist.v1.json"
UNAPPROVED_ALLOWLIST = "allowlists/wide-open.json"

# A fixed simulated epoch: the domain tests never read the wall clock.
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)

# Which control and value each control-changing step sets (the allowlist: the approved file).
STEP_CHANGE: dict[str, tuple[str, str]] = {
    "kill-switch-on": (KILL_VAR, "true"),
    "feature-flag-on": (FEATURE_VAR, "true"),
    "allowlist-enable": (ALLOWLIST_VAR, APPROVED_ALLOWLIST),
    "rollout-canary": (ROLLOUT_VAR, "1"),
    "kill-switch-off": (KILL_VAR, "false"),
    "rollout-progression": (ROLLOUT_VAR, "5"),
}


def shipped_runbook() -> Runbook:
    return Runbook.load(RUNBOOK_PATH)


def report(passed: bool, failed: tuple[str, ...] = ("path-behavior",)) -> dict[str, Any]:
    """A verification report as the injected verifier returns it (a test double)."""
    checks = [{"name": name, "passed": passed or name not in failed,
               "detail": "ok" if (passed or name not in failed) else "fake failure"} for name in CHECK_NAMES]
    return {"passed": passed, "checks": checks, "samples": 60, "openaiCalls": 0, "p95Ms": 3,
            "shadowExposure": {"count": 0}}


def summary(passed: bool) -> dict[str, Any]:
    """What changes.verification_summary keeps of `report(passed)`."""
    rep = report(passed)
    return {"passed": passed, "checks": {c["name"]: c["passed"] for c in rep["checks"]},
            "failed": [c["name"] for c in rep["checks"] if not c["passed"]],
            "samples": 60, "openaiCalls": 0, "p95Ms": 3}


def base_fields(env: str, at: datetime, operator: str | None = "owner", roles: list[str] | None = None,
                **fields: Any) -> dict[str, Any]:
    """An audit entry's fields, shaped like changes._entry builds them (before the state)."""
    base = {"env": env, "operator": operator, "roles": list(roles or []), "control": None, "old": None,
            "new": None, "decisionRecord": None, "reason": None, "step": None, "verification": None,
            "approvalId": None, "details": None, "ts": utc(at)}
    base.update(fields)
    return base


class MemoryLog:
    """An in-memory audit log: entries carry seq, prevHash, hash and the state after them."""

    def __init__(self, env: str = "staging") -> None:
        self.env = env
        self.entries: list[dict[str, Any]] = []

    @property
    def state(self) -> dict[str, Any] | None:
        return self.entries[-1]["state"] if self.entries else None

    def append(self, fields: dict[str, Any]) -> dict[str, Any]:
        entry = dict(fields)
        entry["state"] = apply(self.state, entry)
        entry["seq"] = len(self.entries) + 1
        entry["prevHash"] = self.entries[-1]["hash"] if self.entries else GENESIS_HASH
        entry["hash"] = entry_hash(entry)
        self.entries.append(entry)
        return entry

    def chain_ok(self) -> bool:
        prev = GENESIS_HASH
        for pos, entry in enumerate(self.entries, 1):
            if entry["seq"] != pos or entry["prevHash"] != prev or entry_hash(entry) != entry["hash"]:
                return False
            prev = entry["hash"]
        return verify_lines([_dumps(e) + b"\n" for e in self.entries], env=self.env).valid

    # Convenience builders for the pure judge tests.

    def init(self, at: datetime) -> dict[str, Any]:
        return self.append(base_fields(self.env, at, action=INIT, new=dict(SAFE_CONTROLS)))

    def set(self, at: datetime, control: str, value: str | None, step: str | None,
            approval_id: str | None = None) -> dict[str, Any]:
        old = self.state["controls"][control]
        return self.append(base_fields(self.env, at, action=SET, control=control, old=old, new=value,
                                       decisionRecord="DR-1", step=step, approvalId=approval_id))

    def verify(self, at: datetime, passed: bool, step: str | None = None) -> dict[str, Any]:
        return self.append(base_fields(self.env, at, action=VERIFY, verification=summary(passed), step=step,
                                       details={"trigger": "operator" if step else "after-change"}))

    def rollback(self, at: datetime, reason: str = "test") -> dict[str, Any]:
        old = self.state["controls"][KILL_VAR]
        return self.append(base_fields(self.env, at, action=ROLLBACK, control=KILL_VAR, old=old, new="true",
                                       reason=reason, details={"trigger": "operator"}))

    def approve(self, at: datetime, approval_id: str, record: dict[str, Any]) -> dict[str, Any]:
        return self.append(base_fields(self.env, at, operator="approver", action=APPROVE,
                                       control=record["control"], new=record["value"],
                                       decisionRecord=record["decisionRecord"], approvalId=approval_id,
                                       details={"approval": record}))


def happy_walk(env: str = "staging", start: datetime = T0, step_gap: timedelta = timedelta(minutes=1)
               ) -> tuple[MemoryLog, list[dict[str, Any]]]:
    """The runbook walked from init to Beta live at 5, as recorded entries.

    Returns the log and the 8 states S0..S7: S0 after init, S_i after step i's
    change (plus its after-change verification); S4 is after the canary, S5
    after the explicit step-5 verify, S6 live at 1, S7 live at 5.
    """
    log = MemoryLog(env)
    clock = [start]

    def tick() -> datetime:
        clock[0] += step_gap
        return clock[0]

    log.init(clock[0])
    states = [log.state]
    for step_id in ("kill-switch-on", "feature-flag-on", "allowlist-enable", "rollout-canary"):
        control, value = STEP_CHANGE[step_id]
        log.set(tick(), control, value, step_id)
        log.verify(tick(), True)
        states.append(log.state)
    log.verify(tick(), True, step="verify")
    states.append(log.state)
    for step_id in ("kill-switch-off", "rollout-progression"):
        control, value = STEP_CHANGE[step_id]
        # progression in production needs the soak: leave an hour before it.
        at = tick() + (timedelta(hours=1) if step_id == "rollout-progression" else timedelta(0))
        clock[0] = at
        log.set(at, control, value, step_id)
        log.verify(tick(), True)
        states.append(log.state)
    return log, states


def set_openai(root: Path, env: str = "staging", **values: Any) -> None:
    """Update `env`'s `openai` settings in the workspace's slotgen.yaml (the other keys as they are)."""
    import yaml

    path = root / "slotgen.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["environments"][env]["openai"].update(values)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
