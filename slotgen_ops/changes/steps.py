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

This module never prints: it returns a `Result` or raises a SlotgenError.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..contract import ALLOWLIST_VAR, CONTROL_VARS, KILL_VAR, ROLLOUT_VAR, kill_switch_engaged
from ..errors import EXIT_OK, EXIT_VERIFICATION_FAILED, BadInput, IntegrityFailure, Refused
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
from ..files import hooks
from .entries import new_entry
from .environment import ControlsWriter, Environment, Snapshot, Superseded
from ..policy.pins import accepted_actor, require_pinned
from ..runbook.judge import REDUCE, judge, needs_approval, next_step, normalise_value
from ..runbook.runbook import Runbook
from ..runbook.state import APPROVE, REFUSED, ROLLBACK, SET, VERIFY, apply

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
    #: Sample jobs on the OpenAI path before and after: {"samples", "before", "after"} (None if unreadable).
    exposure: dict[str, int] | None = None
    #: An approval being recorded (not a change being applied), and how long it stays valid.
    approval: bool = False
    ttl_hours: float | None = None


def sample_exposure(env: Environment, controls: dict[str, Any], control: str, value: str) -> dict[str, int] | None:
    """How many sample jobs take the OpenAI path now and with ``control=value`` (decide only, no calls)."""
    from ..contract import PATH_OPENAI, Controls, decide
    from ..runtime.allowlist_file import load_allowlist
    from ..policy.samples import load_sample_jobs

    try:
        jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    except (BadInput, OSError):
        return None

    def on_openai(values: dict[str, Any]) -> int:
        parsed = Controls.from_mapping(values)
        allowlist = load_allowlist(parsed.allowlist_path, env.workspace.root)
        return sum(1 for job in jobs if decide(job, parsed, allowlist).path == PATH_OPENAI)

    return {"samples": len(jobs), "before": on_openai(dict(controls)),
            "after": on_openai({**controls, control: value})}


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
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc = {"ok": self.ok, "step": self.step, "change": self.change, "verification": self.verification,
               "auditSeq": self.audit_seq, "dryRun": self.dry_run, "message": self.message}
        if self.approval_id is not None:
            doc["approvalId"] = self.approval_id
        if self.rollback is not None:
            doc["rollback"] = self.rollback
        if self.warnings:
            doc["warnings"] = self.warnings
        doc.update(self.extra)
        return doc


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


def next_hint(env: Environment, state: dict[str, Any]) -> str:
    """'next allowed step: ...' for refusal messages."""
    from ..runbook.guidance import describe_next

    return describe_next(env, state)["summary"]


def needs_settling(env: Environment) -> tuple[Snapshot, bool]:
    """The whole log checked (cached: a stat), the snapshot, and whether something is left open in it:
    an interrupted change, a kill-switch engaged outside the log, or a break-glass rollback not yet folded."""
    from .breakglass import BreakGlassJournal
    from .chain import require_sound

    require_sound(env)  # the whole log, not only its head (SPEC section 9)
    snap = env.snapshot()
    return snap, snap.needs_reconcile or bool(BreakGlassJournal(env).unfolded(snap.state))


def _settled(env: Environment, actor: Actor, dry_run: bool, timeout: float | None = None) -> tuple[Snapshot, list[str]]:
    """The environment's snapshot, after closing what a crash or a lock-free rollback left open.

    Closing means recording a rollback (fail closed), so a dry-run only says it would.
    """
    snap, needed = needs_settling(env)
    if not needed:
        return snap, []
    if dry_run:
        return snap, ["the environment has an interrupted change or an unrecorded rollback; the next change "
                      "records it and engages the kill-switch"]
    return env.transact(actor, lambda writer: (writer.snapshot, list(writer.notes)), what="recovery",
                        timeout=timeout)


def _refusal(env: Environment, actor: Actor, exc: Refused, state: dict[str, Any], request: dict[str, Any],
             dry_run: bool, writer: ControlsWriter | None = None) -> Refused:
    """Record a refusal (unless dry-run) and return it with the next allowed step appended."""
    actor = actor.recordable()  # a claim its key does not prove is recorded as unidentified, unsigned
    hint = next_hint(env, state)
    refused = Refused(f"{exc.message}; next allowed step: {hint}", next_step=hint)
    if dry_run:
        return refused

    def write(w: ControlsWriter) -> None:
        assert w.snapshot is not None
        entry = w.record(_entry(env, actor, w.snapshot.state, action=REFUSED, control=request.get("control"),
                                new=request.get("value"), decisionRecord=request.get("decisionRecord"),
                                reason=exc.message, approvalId=request.get("approvalId"),
                                details={"command": request.get("command"), "items": request.get("items"),
                                         "refusal": exc.message}))
        refused.audit_seq = entry["seq"]  # type: ignore[attr-defined]

    try:
        if writer is not None:
            write(writer)
        else:
            env.transact(actor, write, what="recording a refusal")
    except (IntegrityFailure, Superseded):
        pass  # the refusal stands; the log's own problem is reported by status / audit verify
    return refused


def _entry(env: Environment, actor: Actor, state: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An audit entry of this environment (see `entries.new_entry`)."""
    return new_entry(env.name, actor, state, **fields)


def run_verifier(verifier: Verifier, env: Environment, controls: dict[str, Any]) -> dict[str, Any]:
    """The verification, where a verifier that cannot run counts as failed (fail closed)."""
    try:
        return verifier(env, controls)
    except Exception as exc:  # noqa: BLE001 - any failure to verify must count as failed, never escape
        detail = f"verification could not run: {exc}"
        return {"passed": False, "cause": detail, "causeKind": "runtime",
                "checks": [{"name": "verification", "passed": False, "detail": detail}],
                "samples": 0, "openaiCalls": 0, "p95Ms": 0}


def _verify_unlocked(verifier: Verifier, env: Environment, controls: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                         dict[str, Any]]:
    """The verification of a change, run with no lock held: it may take as long as the endpoint does."""
    hooks.point("before-verify")
    report = run_verifier(verifier, env, controls)
    hooks.point("after-verify")
    return report, verification_summary(report)


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


_NOT_A_MOVE = ("approvals", "breakGlassFolded")  # an approval recorded meanwhile supersedes nothing


def _moved(before: Snapshot, after: Snapshot) -> bool:
    """Did the environment move between judging and committing (a rollback, a change, a verification)?"""
    def essence(snap: Snapshot) -> dict[str, Any]:
        return {k: v for k, v in snap.state.items() if k not in _NOT_A_MOVE}

    return essence(before) != essence(after) or before.controls.values != after.controls.values


def _superseded(env: Environment, writer: ControlsWriter, actor: Actor, before: Snapshot, summary: dict[str, Any],
                dr: str | None, proposed: dict[str, Any] | None, what: str) -> Refused:
    """Record a verification overtaken by another change; it changes no control (SPEC section 6)."""
    fresh = writer.snapshot
    assert fresh is not None
    entry = writer.record(_entry(env, actor, fresh.state, action=VERIFY, verification=summary, decisionRecord=dr,
                                 details={"trigger": "before-change" if proposed else "operator", "superseded": True,
                                          "proposed": proposed, "judgedAtSeq": before.head_id[0]}))
    head = fresh.head
    refused = Refused(f"superseded: while {what} was being verified the environment changed (seq {head['seq']}: "
                      f"{head.get('action')} by {head.get('operator') or 'unidentified'}); nothing applied, recorded "
                      f"as seq {entry['seq']}")
    refused.audit_seq = entry["seq"]  # type: ignore[attr-defined]
    return refused


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


def _post_commit_problem(env: Environment, report: dict[str, Any]) -> str | None:
    """What only the applied state can show: the sample decisions under the file as written are the ones verified."""
    digest = report.get("decisionDigest")
    if digest is None:
        return None
    from ..policy.samples import decision_digest_for

    try:
        now = decision_digest_for(env, env.read_controls().values)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run fails closed
        return f"the applied controls could not be checked ({exc.__class__.__name__})"
    if now != digest:
        return ("the sample jobs' decisions under the applied controls differ from those verified "
                "(was the allowlist or a sample file changed during the verification?)")
    return None


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


def _fail_closed(env: Environment, writer: ControlsWriter, actor: Actor, ventry: dict[str, Any], result: Result,
                 failed_checks: list[str], decision_record: str | None, where: str) -> Result:
    """A failed check: engage the kill-switch at once, record it, and exit 1 (SPEC section 2)."""
    failed = ", ".join(failed_checks)
    start = time.perf_counter()
    old = ventry["state"]["controls"][KILL_VAR]
    entry = writer.record(_entry(env, actor, ventry["state"], action=ROLLBACK, control=KILL_VAR, old=old, new="true",
                                 decisionRecord=decision_record,
                                 reason=f"automatic: verification failed{where} ({failed})" + _cause_of(result),
                                 details={"trigger": "verification-failed"}))
    back = env.read_controls()
    result.ok = False
    result.exit_code = EXIT_VERIFICATION_FAILED
    result.rollback = {"auditSeq": entry["seq"], "engaged": kill_switch_engaged(back.values[KILL_VAR]), "old": old,
                       "new": back.values[KILL_VAR], "engagedMs": round((time.perf_counter() - start) * 1000, 3),
                       "reason": entry["reason"]}
    result.audit_seq = entry["seq"]
    result.message = f"verification failed ({failed}): the kill-switch was engaged"
    return result


def _cause_of(result: Result) -> str:
    """'; cause: ...' for a rollback's reason: what the failed verification found (verification.samples)."""
    cause = (result.verification or {}).get("cause")
    return f"; cause: {cause}" if cause else ""


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
