"""Changing an environment: set, approve, recorded verify, rollback.

Each change is judge -> append -> apply under the exclusive audit lock. The
audit entry is the commit point; the controls follow and are read back. A
refusal changes nothing and is recorded. After every applied change the
verification runs; a failed check engages the kill-switch at once.

This module never prints: it returns a `Result` or raises a SlotgenError.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..contract import ALLOWLIST_VAR, CONTROL_VARS, KILL_VAR, ROLLOUT_VAR, kill_switch_engaged
from ..errors import EXIT_OK, EXIT_VERIFICATION_FAILED, BadInput, IntegrityFailure, Refused
from .authority import (
    APPROVER_ROLE,
    CHANGE_ROLES,
    Actor,
    approval_record,
    check_approval,
    check_decision_record,
    new_approval_id,
    now_utc,
    require_role,
    utc,
)
from .environment import ControlsWriter, Environment, Snapshot
from .runbook import Runbook, judge, next_step, normalise_value
from .state import APPROVE, REFUSED, ROLLBACK, SET, VERIFY, apply

# A verifier runs the sample jobs under the given controls and returns
# {"passed": bool, "checks": [{name, passed, detail}], "shadowExposure": {...}, ...}.
Verifier = Callable[[Environment, dict[str, Any]], dict[str, Any]]
Confirm = Callable[["Preview"], bool]


@dataclass
class Preview:
    """What a change will do, shown before it is made (and by --dry-run)."""

    env: str
    step: str | None
    control: str
    old: str | None
    new: str
    checks: list[str] = field(default_factory=list)


@dataclass
class Result:
    ok: bool
    exit_code: int = EXIT_OK
    step: str | None = None
    change: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    audit_seq: int | None = None
    approval_id: str | None = None
    dry_run: bool = False
    message: str = ""
    rollback: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc = {"ok": self.ok, "step": self.step, "change": self.change, "verification": self.verification,
               "auditSeq": self.audit_seq, "dryRun": self.dry_run, "message": self.message}
        if self.approval_id is not None:
            doc["approvalId"] = self.approval_id
        if self.rollback is not None:
            doc["rollback"] = self.rollback
        doc.update(self.extra)
        return doc


def checked_runbook(env: Environment) -> Runbook:
    """The workspace's runbook, validated by pydantic and by its JSON schema (changes only)."""
    from .runbook import check_runbook_schema

    runbook: Runbook = env.workspace.runbook
    if runbook.path is not None:
        check_runbook_schema(runbook.path)
    return runbook


def parse_item(item: str) -> tuple[str, str]:
    """KEY=VALUE with KEY a control and VALUE of its form (BadInput otherwise)."""
    key, sep, value = item.partition("=")
    if not sep:
        raise BadInput(f"{item!r}: expected KEY=VALUE, e.g. FEATURE_SLOTGEN_AI=true")
    key = key.strip()
    if key not in CONTROL_VARS:
        raise BadInput(f"{key!r} is not a control (one of {', '.join(CONTROL_VARS)})")
    return key, normalise_value(key, value)


def _prepare(env: Environment, command: str, items: list[str], decision_record: str | None,
             approval_id: str | None) -> tuple[Runbook, list[tuple[str, str]], dict[str, Any], dict[str, Any]]:
    """What set and approve do first: the checked runbook, the parsed KEY=VALUEs (bad input
    is exit 2), the environment's state (integrity failure is exit 4), and the request as recorded."""
    runbook = checked_runbook(env)
    if not items:
        raise BadInput(f"{command} needs one KEY=VALUE, e.g. "
                       f"{'SLOTGEN_AI_ROLLOUT_PERCENT=1' if command == 'approve' else 'FEATURE_SLOTGEN_AI=true'}")
    parsed = [parse_item(item) for item in items]
    state = env.snapshot().state
    request: dict[str, Any] = {"command": command, "items": items, "decisionRecord": decision_record,
                               "approvalId": approval_id}
    if len(parsed) == 1:
        request.update(control=parsed[0][0], value=parsed[0][1])
    return runbook, parsed, state, request


def next_hint(env: Environment, state: dict[str, Any]) -> str:
    """'next allowed step: ...' for refusal messages."""
    from .guidance import describe_next

    return describe_next(env, state)["summary"]


def _refusal(env: Environment, actor: Actor, exc: Refused, state: dict[str, Any] | None, request: dict[str, Any],
             dry_run: bool, writer: ControlsWriter | None = None) -> Refused:
    """Record a refusal (unless dry-run) and return it with the next allowed step appended."""
    hint = next_hint(env, state) if state is not None else None
    message = exc.message + (f"; next allowed step: {hint}" if hint else "")
    refused = Refused(message, next_step=hint)
    if dry_run or state is None:
        return refused
    def write(w: ControlsWriter) -> None:
        snap = env.snapshot()
        w.finish_pending(snap)
        entry = w.record(_entry(env, actor, snap.state, action=REFUSED, control=request.get("control"),
                                new=request.get("value"), decisionRecord=request.get("decisionRecord"),
                                reason=exc.message, approvalId=request.get("approvalId"),
                                details={"command": request.get("command"), "items": request.get("items"),
                                         "refusal": exc.message}))
        refused.audit_seq = entry["seq"]  # type: ignore[attr-defined]

    try:
        if writer is not None:
            write(writer)
        else:
            with env.writer() as w:
                write(w)
    except IntegrityFailure:
        pass  # the refusal stands; the log's own problem is reported by status / audit verify
    return refused


def _entry(env: Environment, actor: Actor, state: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An audit entry's fields, with the state after it computed from the state before."""
    base = {"env": env.name, **actor.audit_fields(), "control": None, "old": None, "new": None,
            "decisionRecord": None, "reason": None, "step": None, "verification": None, "approvalId": None,
            "details": None, "ts": utc(now_utc())}
    base.update(fields)
    base["state"] = apply(state, base)
    return base


def run_verifier(verifier: Verifier, env: Environment, controls: dict[str, Any]) -> dict[str, Any]:
    """The verification, where a verifier that cannot run counts as failed (fail closed)."""
    try:
        return verifier(env, controls)
    except Exception as exc:  # noqa: BLE001 - any failure to verify must roll back, not escape
        detail = f"verification could not run: {exc}"
        return {"passed": False, "checks": [{"name": "verification", "passed": False, "detail": detail}],
                "samples": 0, "openaiCalls": 0, "p95Ms": 0}


def verification_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a verification: integers and booleans only (no floats)."""
    return {
        "passed": bool(report.get("passed")),
        "checks": {c["name"]: bool(c["passed"]) for c in report.get("checks", [])},
        "failed": [c["name"] for c in report.get("checks", []) if not c["passed"]],
        "samples": int(report.get("samples", 0)),
        "openaiCalls": int(report.get("openaiCalls", 0)),
        "p95Ms": int(report.get("p95Ms", 0)),
    }


def set_control(env: Environment, items: list[str], *, actor: Actor, decision_record: str | None,
                approval_id: str | None, expect: str | None, dry_run: bool, confirm: Confirm,
                verifier: Verifier) -> Result:
    """One runbook step (SPEC section 2): judged, confirmed, recorded, applied, verified."""
    ws = env.workspace
    runbook, parsed, state, request = _prepare(env, "set", items, decision_record, approval_id)
    try:
        if len(parsed) > 1:
            raise Refused(f"combined: {len(parsed)} changes in one invocation; the runbook takes one step at a time")
        control, value = parsed[0]
        require_role(actor, CHANGE_ROLES, "change runbook controls")
        dr = check_decision_record(decision_record, ws.config.decisionRecordPattern)
        step = _judge_all(env, runbook, state, actor, control, value, dr, approval_id)
        old = state["controls"][control]
        if expect is not None and expect != (old or ""):
            raise Refused(f"compare-and-set: {control} is {old!r}, not the expected {expect!r}; "
                          "someone changed it since you looked")
    except Refused as exc:
        raise _refusal(env, actor, exc, state, request, dry_run) from None
    preview = Preview(env.name, step.id, control, old, value)
    if dry_run:
        return Result(ok=True, step=step.id, change={"control": control, "old": old, "new": value}, dry_run=True,
                      message=f"dry-run: step {step.number} ({step.id}) would set {control}={value}; nothing written")
    if not confirm(preview):
        raise _refusal(env, actor, Refused("not confirmed: with no terminal a change needs --yes"), state,
                       request, dry_run=False)
    with env.writer() as writer:
        fresh = env.snapshot()
        writer.finish_pending(fresh)
        current = fresh.state
        try:
            if current["controls"][control] != old:
                raise Refused(f"compare-and-set: {control} changed from {old!r} to {current['controls'][control]!r} "
                              "since this change was judged (another operator?); nothing applied")
            step = _judge_all(env, runbook, current, actor, control, value, dr, approval_id)
        except Refused as exc:
            raise _refusal(env, actor, exc, current, request, dry_run=False, writer=writer) from None
        fields = _entry(env, actor, current, action=SET, control=control, old=old, new=value, decisionRecord=dr,
                        step=step.id, approvalId=approval_id if "approval" in step.requires else None)
        entry = writer.record(fields)
        result = Result(ok=True, step=step.id, change={"control": control, "old": old, "new": value},
                        audit_seq=entry["seq"])
        return _verify_after(env, writer, actor, entry, result, verifier, f"step {step.id}")


def _judge_all(env: Environment, runbook: Runbook, state: dict[str, Any], actor: Actor, control: str, value: str,
               dr: str, approval_id: str | None):
    now = now_utc()
    judgement = judge(state, runbook, env.name, control, value, now)
    if not judgement.allowed:
        raise Refused(f"{judgement.kind}: {judgement.refusal}")
    step = judgement.step
    if control == ALLOWLIST_VAR:
        from .allowlists import check_approved_allowlist

        check_approved_allowlist(env.workspace, runbook, value)
    if "approval" in step.requires:
        check_approval(state["approvals"], approval_id, env.name, control, value, dr, actor.claimed or "", now)
    return step


def _verify_after(env: Environment, writer: ControlsWriter, actor: Actor, entry: dict[str, Any], result: Result,
                  verifier: Verifier, what: str) -> Result:
    """Run the verification after a change; on any failed check, roll back at once (exit 1)."""
    report = run_verifier(verifier, env, entry["state"]["controls"])
    summary = verification_summary(report)
    ventry = writer.record(_entry(env, actor, entry["state"], action=VERIFY, verification=summary,
                                  details={"trigger": "after-change", "afterSeq": entry["seq"]}))
    result.verification = report
    result.audit_seq = ventry["seq"]
    if summary["passed"]:
        return result
    return _fail_closed(env, writer, actor, ventry, result, summary, entry.get("decisionRecord"), f" after {what}")


def _fail_closed(env: Environment, writer: ControlsWriter, actor: Actor, ventry: dict[str, Any], result: Result,
                 summary: dict[str, Any], decision_record: str | None, where: str) -> Result:
    """A failed check: engage the kill-switch at once, record it, and exit 1 (SPEC section 2)."""
    failed = ", ".join(summary["failed"])
    rollback, _ = _rollback_locked(env, writer, actor, ventry["state"], reason=f"automatic: verification failed"
                                f"{where} ({failed})", decision_record=decision_record, trigger="verification-failed")
    result.ok = False
    result.exit_code = EXIT_VERIFICATION_FAILED
    result.rollback = rollback
    result.audit_seq = rollback["auditSeq"]
    result.message = f"verification failed ({failed}): the kill-switch was engaged"
    return result


def _rollback_locked(env: Environment, writer: ControlsWriter, actor: Actor, state: dict[str, Any], *,
                     reason: str, decision_record: str | None, trigger: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Engage the kill-switch under the held lock; the rollback's report and the state after it."""
    start = time.perf_counter()
    old = state["controls"][KILL_VAR]
    entry = writer.record(_entry(env, actor, state, action=ROLLBACK, control=KILL_VAR, old=old, new="true",
                                 decisionRecord=decision_record, reason=reason, details={"trigger": trigger}))
    back = env.read_controls()
    engaged = kill_switch_engaged(back.values[KILL_VAR])
    info = {"auditSeq": entry["seq"], "engaged": engaged, "old": old, "new": back.values[KILL_VAR],
            "engagedMs": round((time.perf_counter() - start) * 1000, 3), "reason": reason}
    return info, entry["state"]


def approve(env: Environment, items: list[str], *, actor: Actor, decision_record: str | None, dry_run: bool,
            confirm: Confirm) -> Result:
    """An approver records an approval bound to one exact rollout change."""
    ws = env.workspace
    runbook, parsed, state, request = _prepare(env, "approve", items, decision_record, None)
    try:
        if len(parsed) > 1:
            raise Refused(f"combined: {len(parsed)} changes in one approval; an approval covers one change")
        control, value = parsed[0]
        require_role(actor, (APPROVER_ROLE,), "approve rollout increases")
        dr = check_decision_record(decision_record, ws.config.decisionRecordPattern)
        if control != ROLLOUT_VAR:
            raise Refused(f"only rollout increases need approvals; {control} changes need none")
        if int(value) not in runbook.ladder:
            raise Refused(f"{control}={value} is not a rung of the ladder {list(runbook.ladder)}")
    except Refused as exc:
        raise _refusal(env, actor, exc, state, request, dry_run) from None
    now = now_utc()
    approval_id = new_approval_id()
    record = approval_record(env.name, control, value, dr, actor.claimed or "", runbook.approvals.ttlHours, now)
    if dry_run:
        return Result(ok=True, step=None, change={"control": control, "old": state["controls"][control], "new": value},
                      dry_run=True, message=f"dry-run: would record an approval for {control}={value} under {dr}, "
                      f"expiring {record['expiresAt']}; nothing written")
    if not confirm(Preview(env.name, None, control, state["controls"][control], value)):
        raise _refusal(env, actor, Refused("not confirmed: with no terminal an approval needs --yes"), state,
                       request, dry_run=False)
    with env.writer() as writer:
        fresh = env.snapshot()
        writer.finish_pending(fresh)
        entry = writer.record(_entry(env, actor, fresh.state, action=APPROVE, control=control,
                                     old=fresh.state["controls"][control], new=value, decisionRecord=dr,
                                     approvalId=approval_id, details={"approval": record}))
    return Result(ok=True, step=None, change={"control": control, "old": entry["old"], "new": value},
                  audit_seq=entry["seq"], approval_id=approval_id,
                  message=f"approval {approval_id} recorded; expires {record['expiresAt']}",
                  extra={"expiresAt": record["expiresAt"]})


def verify_environment(env: Environment, *, actor: Actor, decision_record: str | None, verifier: Verifier) -> Result:
    """`slotgen verify`: recorded when an operator and a decision record are given.

    Recorded, it completes step 5 when the runbook stands there, and a failed
    check rolls back like after any change. Unrecorded, it only reports.
    """
    ws = env.workspace
    checked_runbook(env)
    snapshot = env.snapshot()
    recorded = decision_record is not None or actor.claimed is not None
    if not recorded:
        report = run_verifier(verifier, env, snapshot.state["controls"])
        return Result(ok=bool(report["passed"]), exit_code=EXIT_OK if report["passed"] else EXIT_VERIFICATION_FAILED,
                      verification=report, message="not recorded (no --operator / --decision-record); nothing rolled back")
    request = {"command": "verify", "decisionRecord": decision_record}
    try:
        require_role(actor, CHANGE_ROLES, "record a verification")
        dr = check_decision_record(decision_record, ws.config.decisionRecordPattern)
    except Refused as exc:
        raise _refusal(env, actor, exc, snapshot.state, request, dry_run=False) from None
    with env.writer() as writer:
        fresh = env.snapshot()
        writer.finish_pending(fresh)
        state = fresh.state
        at_step = next_step(state, ws.runbook).id == "verify"
        report = run_verifier(verifier, env, state["controls"])
        summary = verification_summary(report)
        entry = writer.record(_entry(env, actor, state, action=VERIFY, verification=summary, decisionRecord=dr,
                                     step="verify" if at_step else None, details={"trigger": "operator"}))
        result = Result(ok=summary["passed"], step="verify" if at_step else None, verification=report,
                        audit_seq=entry["seq"])
        if summary["passed"]:
            result.message = "every check passed" + ("; step 5 (verify) is done" if at_step else "")
            return result
        return _fail_closed(env, writer, actor, entry, result, summary, dr, "")


def rollback(env: Environment, *, actor: Actor, reason: str, decision_record: str | None, dry_run: bool,
             verifier: Verifier | None) -> Result:
    """Engage the kill-switch in one action, from any state (SPEC section 2).

    Even when the log or the controls fail verification (break-glass): then the
    controls file is forced to kill-switch on first, and the act is recorded
    in the environment's break-glass log.
    """
    start = time.perf_counter()
    ws = env.workspace
    if not reason or not reason.strip():
        raise BadInput("rollback needs --reason TEXT")
    try:
        snapshot: Snapshot | None = env.snapshot()
        problem = None
    except IntegrityFailure as exc:
        snapshot, problem = None, exc.message
    request = {"command": "rollback", "decisionRecord": decision_record, "control": KILL_VAR, "value": "true"}
    try:
        require_role(actor, CHANGE_ROLES, "roll back")
        dr = check_decision_record(decision_record, ws.config.decisionRecordPattern, required=False)
    except Refused as exc:
        raise _refusal(env, actor, exc, snapshot.state if snapshot else None, request, dry_run) from None
    if snapshot is None:
        from .breakglass import break_glass_rollback

        return break_glass_rollback(env, actor, reason, dr, problem or "", dry_run, verifier, start)
    old = snapshot.state["controls"][KILL_VAR]
    if dry_run:
        return Result(ok=True, step=None, change={"control": KILL_VAR, "old": old, "new": "true"}, dry_run=True,
                      message="dry-run: would engage the kill-switch (SLOTGEN_AI_KILL=true); nothing written")
    try:
        return _rollback_recorded(env, actor, reason.strip(), dr, verifier, start)
    except IntegrityFailure as exc:  # integrity failed between the check and the lock: rollback still happens
        from .breakglass import break_glass_rollback

        return break_glass_rollback(env, actor, reason, dr, exc.message, False, verifier, start)


def _rollback_recorded(env: Environment, actor: Actor, reason: str, dr: str | None, verifier: Verifier | None,
                       start: float) -> Result:
    with env.writer() as writer:
        fresh = env.snapshot()
        writer.finish_pending(fresh)
        info, after = _rollback_locked(env, writer, actor, fresh.state, reason=reason, decision_record=dr,
                                       trigger="operator")
        info["totalMs"] = round((time.perf_counter() - start) * 1000, 3)
        result = Result(ok=info["engaged"], step=None, change={"control": KILL_VAR, "old": info["old"], "new": "true"},
                        audit_seq=info["auditSeq"], rollback=info,
                        message=f"kill-switch engaged and read back in {info['totalMs']:.0f} ms")
        if verifier is not None:
            report = run_verifier(verifier, env, env.read_controls().values)
            summary = verification_summary(report)
            ventry = writer.record(_entry(env, actor, after, action=VERIFY, verification=summary,
                                          details={"trigger": "after-rollback", "afterSeq": info["auditSeq"]}))
            result.verification = report
            result.audit_seq = ventry["seq"]
            if not summary["passed"]:
                result.ok = False
                result.exit_code = EXIT_VERIFICATION_FAILED
                result.message += f"; verification after rollback failed ({', '.join(summary['failed'])})"
        return result
