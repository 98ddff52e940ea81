"""Changing an environment: set, approve, recorded verify, rollback (the write protocol).

A change is judged, then *verified before it is committed*: the sample jobs
run in-process under the would-be controls, with no lock held, so a slow or
hung endpoint never holds anyone up. Then, in one short critical section
(`Environment.writer`: local file operations only, signals deferred), the
environment is read again; if it moved (a rollback won), the verification is
recorded as superseded and nothing changes; otherwise the change and its
verification are appended as one entry (the commit point) and the controls
are written with a fenced replace and checked as the runtime reads them. A
failed verification records itself and a rollback, and exits 1. The rollback
(`rollback.py`) engages the kill-switch before anything else, without the
lock, and records after. The argument: README, "How a change is made safe".

This module is the three steps (`set_control`, `approve`, `verify_environment`):
what each judges and commits. What they share lives beside it: `settling`
(closing what a crash or a rollback left open, first), `verifying` (the sample
jobs, fail closed) and `outcomes` (the `Result`, and what is recorded when a
change does not go through). It never prints: it returns a `Result` or raises
a SlotgenError.
"""

from __future__ import annotations

from typing import Any

from ..contract import ALLOWLIST_VAR, CONTROL_VARS, KILL_VAR, ROLLOUT_VAR
from ..errors import EXIT_OK, EXIT_VERIFICATION_FAILED, BadInput, Refused
from ..policy.authority import (
    APPROVER_ROLE,
    CHANGE_ROLES,
    Actor,
    approval_record,
    check_approval,
    check_decision_record,
    new_approval_id,
    now_utc,
    require_role,
)
from .environment import Environment
from .outcomes import Confirm, Preview, Result, _entry, _fail_closed, _moved, _refusal, _superseded
from .settling import _settled
from .verifying import Verifier, _post_commit_problem, _verify_unlocked, run_verifier, sample_exposure
from .writer import ControlsWriter
from ..policy.pins import accepted_actor, require_pinned
from ..runbook.judge import REDUCE, judge, needs_approval, next_step, normalise_value
from ..runbook.runbook import Runbook
from ..runbook.state import APPROVE, SET, VERIFY, apply


def checked_runbook(env: Environment) -> Runbook:
    """The workspace's runbook, validated by pydantic and by its JSON schema (changes only)."""
    from ..runbook.runbook import check_runbook_schema

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


def set_control(env: Environment, items: list[str], *, actor: Actor, decision_record: str | None,
                approval_id: str | None, expect: str | None, dry_run: bool, confirm: Confirm,
                verifier: Verifier) -> Result:
    """One runbook step (SPEC section 2) or a step down (section 6): judged, confirmed, verified, committed."""
    ws = env.workspace
    runbook, parsed, before, request = _prepare(env, "set", items, decision_record, approval_id)
    actor = accepted_actor(before, actor)
    snap, notes = _settled(env, actor, dry_run)
    state = snap.state
    require_pinned(state, ws.root, env.name)
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
    change = {"control": control, "old": old, "new": value}
    label = f"step {step.number} ({step.id})" if step.number else "a step down (reduce-exposure)"
    if dry_run:
        return Result(ok=True, step=step.id, change=change, dry_run=True, warnings=notes,
                      message=f"dry-run: {label} would set {control}={value}; nothing written")
    if not confirm(Preview(env.name, step.id, control, old, value,
                           exposure=sample_exposure(env, state["controls"], control, value))):
        raise _refusal(env, actor, Refused("not confirmed: with no terminal a change needs --yes"), state,
                       request, dry_run=False)
    proposed = apply(state, {"action": SET, "control": control, "new": value})["controls"]
    report, summary = _verify_unlocked(verifier, env, proposed)

    def commit(writer: ControlsWriter) -> Result:
        fresh = writer.snapshot
        assert fresh is not None
        warnings = notes + writer.notes
        if _moved(snap, fresh):
            raise _superseded(env, writer, actor, snap, summary, dr, change, f"step {step.id}")
        require_pinned(fresh.state, ws.root, env.name)  # a policy file edited during the verification
        try:
            now = _judge_all(env, runbook, fresh.state, actor, control, value, dr, approval_id)
        except Refused as exc:
            raise _refusal(env, actor, exc, fresh.state, request, dry_run=False, writer=writer) from None
        result = Result(ok=True, step=now.id, change=change, verification=report, warnings=warnings)
        if not summary["passed"]:
            ventry = writer.record(_entry(env, actor, fresh.state, action=VERIFY, verification=summary,
                                          decisionRecord=dr, details={"trigger": "before-change",
                                                                      "proposed": change}))
            return _fail_closed(env, writer, actor, ventry, result, summary["failed"], dr, f" before {label}")
        used = approval_id if needs_approval(now, fresh.state) else None
        entry = writer.record(_entry(env, actor, fresh.state, action=SET, control=control, old=old, new=value,
                                     decisionRecord=dr, step=now.id, approvalId=used, verification=summary))
        result.audit_seq = entry["seq"]
        problem = _post_commit_problem(env, report)
        if problem is not None:
            return _fail_closed(env, writer, actor, entry, result, [*summary["failed"], "post-commit"], dr,
                                f" after {label}: {problem}")
        result.message = f"{label}: {control}={value} verified, recorded and applied"
        return result

    return env.transact(actor, commit)


def _judge_all(env: Environment, runbook: Runbook, state: dict[str, Any], actor: Actor, control: str, value: str,
               dr: str, approval_id: str | None):
    now = now_utc()
    judgement = judge(state, runbook, env.name, control, value, now)
    if not judgement.allowed:
        raise Refused(f"{judgement.kind}: {judgement.refusal}")
    step = judgement.step
    if control == ALLOWLIST_VAR and step.id != REDUCE:
        from ..policy.allowlists import check_approved_allowlist

        check_approved_allowlist(env.workspace, runbook, value)
    if needs_approval(step, state):
        check_approval(state["approvals"], approval_id, env.name, control, value, dr, actor.claimed or "", now,
                       old=state["controls"][control], key=actor.fingerprint)
    return step


def approve(env: Environment, items: list[str], *, actor: Actor, decision_record: str | None, dry_run: bool,
            confirm: Confirm) -> Result:
    """An approver records an approval bound to one exact change: a rollout increase, or
    turning the kill-switch off again after a rollback."""
    ws = env.workspace
    runbook, parsed, before, request = _prepare(env, "approve", items, decision_record, None)
    actor = accepted_actor(before, actor)
    snap, notes = _settled(env, actor, dry_run)
    state = snap.state
    require_pinned(state, ws.root, env.name)
    try:
        if len(parsed) > 1:
            raise Refused(f"combined: {len(parsed)} changes in one approval; an approval covers one change")
        control, value = parsed[0]
        require_role(actor, (APPROVER_ROLE,), "approve changes")
        dr = check_decision_record(decision_record, ws.config.decisionRecordPattern)
        if control == KILL_VAR:
            if value != "false":
                raise Refused(f"{control}={value} needs no approval (engaging the kill-switch: 'slotgen rollback')")
        elif control != ROLLOUT_VAR:
            raise Refused(f"only rollout increases and re-enabling after a rollback need approvals; {control} "
                          "changes need none")
        elif int(value) not in runbook.ladder:
            raise Refused(f"{control}={value} is not a rung of the ladder {list(runbook.ladder)}")
    except Refused as exc:
        raise _refusal(env, actor, exc, state, request, dry_run) from None
    now = now_utc()
    approval_id = new_approval_id()
    record = approval_record(env.name, control, value, dr, actor.claimed or "", runbook.approvals.ttlHours, now,
                             old=state["controls"][control], key=actor.fingerprint)
    change = {"control": control, "old": state["controls"][control], "new": value}
    if dry_run:
        return Result(ok=True, step=None, change=change, dry_run=True, warnings=notes,
                      message=f"dry-run: would record an approval for {control}={value} under {dr}, "
                      f"expiring {record['expiresAt']}; nothing written")
    if not confirm(Preview(env.name, None, control, state["controls"][control], value,
                           exposure=sample_exposure(env, state["controls"], control, value), approval=True,
                           ttl_hours=runbook.approvals.ttlHours)):
        raise _refusal(env, actor, Refused("not confirmed: with no terminal an approval needs --yes"), state,
                       request, dry_run=False)
    def commit(writer: ControlsWriter) -> Result:
        fresh = writer.snapshot
        assert fresh is not None
        entry = writer.record(_entry(env, actor, fresh.state, action=APPROVE, control=control,
                                     old=fresh.state["controls"][control], new=value, decisionRecord=dr,
                                     approvalId=approval_id, details={"approval": record}))
        return Result(ok=True, step=None, change={"control": control, "old": entry["old"], "new": value},
                      audit_seq=entry["seq"], approval_id=approval_id, warnings=notes + writer.notes,
                      message=f"approval {approval_id} recorded; expires {record['expiresAt']}",
                      extra={"expiresAt": record["expiresAt"]})

    return env.transact(actor, commit)


def verify_environment(env: Environment, *, actor: Actor, decision_record: str | None, verifier: Verifier) -> Result:
    """`slotgen verify`: recorded when an operator and a decision record are given.

    Recorded, it completes step 5 when the runbook stands there, and a failed
    check rolls back like after any change. Unrecorded, it only reports. The
    sample jobs run with no lock held; the result is recorded in a short
    critical section, as superseded if the controls changed meanwhile.
    """
    ws = env.workspace
    checked_runbook(env)
    recorded = decision_record is not None or actor.claimed is not None
    if not recorded:
        snapshot = env.snapshot()
        report = run_verifier(verifier, env, snapshot.controls.values)
        return Result(ok=bool(report["passed"]), exit_code=EXIT_OK if report["passed"] else EXIT_VERIFICATION_FAILED,
                      verification=report, message="not recorded (no --operator / --decision-record); nothing rolled back")
    actor = accepted_actor(env.snapshot().state, actor)
    snap, notes = _settled(env, actor, dry_run=False)
    require_pinned(snap.state, ws.root, env.name)
    request = {"command": "verify", "decisionRecord": decision_record}
    try:
        require_role(actor, CHANGE_ROLES, "record a verification")
        dr = check_decision_record(decision_record, ws.config.decisionRecordPattern)
    except Refused as exc:
        raise _refusal(env, actor, exc, snap.state, request, dry_run=False) from None
    report, summary = _verify_unlocked(verifier, env, snap.controls.values)

    def commit(writer: ControlsWriter) -> Result:
        fresh = writer.snapshot
        assert fresh is not None
        warnings = notes + writer.notes
        if _moved(snap, fresh):
            raise _superseded(env, writer, actor, snap, summary, dr, None, "this verification")
        require_pinned(fresh.state, ws.root, env.name)
        at_step = next_step(fresh.state, ws.runbook).id == "verify"
        entry = writer.record(_entry(env, actor, fresh.state, action=VERIFY, verification=summary, decisionRecord=dr,
                                     step="verify" if at_step else None, details={"trigger": "operator"}))
        result = Result(ok=summary["passed"], step="verify" if at_step else None, verification=report,
                        audit_seq=entry["seq"], warnings=warnings)
        if summary["passed"]:
            result.message = "every check passed" + ("; step 5 (verify) is done" if at_step else "")
            return result
        return _fail_closed(env, writer, actor, entry, result, summary["failed"], dr, "")

    return env.transact(actor, commit)
