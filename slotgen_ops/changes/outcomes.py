"""What a change returns, and what it records when it does not go through as asked.

Every command of the write protocol (`steps`, `config_change`, `rollback`)
returns a `Result` (what the CLI renders, and its --json document), and one
that asks for confirmation shows a `Preview` first. What does not go through
is recorded too: a refusal, with the next allowed step (`_refusal`); a
verification overtaken by another change, which changes no control
(`_superseded`, when `_moved` says the environment moved between judging and
committing); and a failed check, which engages the kill-switch at once and
exits 1 (`_fail_closed`).

This module never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..contract import KILL_VAR, kill_switch_engaged
from ..errors import EXIT_OK, EXIT_VERIFICATION_FAILED, IntegrityFailure, Refused
from ..policy.authority import Actor
from .entries import new_entry
from .environment import Environment
from .snapshot import Snapshot
from .writer import ControlsWriter, Superseded
from ..runbook.state import REFUSED, ROLLBACK, VERIFY

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


def next_hint(env: Environment, state: dict[str, Any]) -> str:
    """'next allowed step: ...' for refusal messages."""
    from ..runbook.guidance import describe_next

    return describe_next(env, state)["summary"]


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
    """'; cause: ...' for a rollback's reason: what the failed verification found (verification.cause)."""
    cause = (result.verification or {}).get("cause")
    return f"; cause: {cause}" if cause else ""
