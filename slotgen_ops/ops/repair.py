"""`slotgen audit repair`: put an environment back in order, recording what was done.

Two repairs, each only when it is safe:

- a torn last line (an interrupted write) is cut off and what was cut is
  recorded;
- a controls file that disagrees with an audit log whose whole chain verifies
  (a hand edit, a rewound file, a break-glass rollback) is rewritten from the
  log, always with the kill-switch engaged: the restore is recorded as a
  rollback, so nothing is exposed by it and the runbook resumes at verify.

A log that does not verify is not repaired here: restore it from a backup.
"""

from __future__ import annotations

from typing import Any

from ..contract import KILL_VAR
from ..errors import IntegrityFailure
from .authority import CHANGE_ROLES, now_utc, require_role, resolve_actor, utc
from .environment import parse_controls
from .state import ROLLBACK, apply


def repair_log(env, operator: str | None) -> dict[str, Any]:
    """Run the repairs that apply; return what was done ({"cut": entry|None, "restored": entry|None})."""
    actor = resolve_actor(env.workspace.roster, operator)
    require_role(actor, CHANGE_ROLES, "repair the audit log")
    cut = env.log.repair(env.name, actor.to_json(), extra=_extra(actor))
    if cut is not None:
        with env.writer() as writer:
            writer.write_controls(cut)
    restored = _restore_controls(env, actor)
    return {"cut": cut, "restored": restored}


def _restore_controls(env, actor) -> dict[str, Any] | None:
    from .report import chain_report

    chain = chain_report(env)  # the whole log, every time: only a sound log may be restored from
    if not chain["valid"]:
        raise IntegrityFailure(f"the audit log itself fails verification at seq {chain['firstBad']} "
                               f"({chain['reason']}); restore it from a backup, nothing was changed")
    try:
        env.snapshot()
        return None  # log and controls agree (or only the crash window is open, which any writer finishes)
    except IntegrityFailure as exc:
        problem = exc.message
    try:
        found = parse_controls(env.controls_path)
        found_doc: Any = {"values": found.values, "headSeq": found.head_seq}
    except IntegrityFailure as exc:
        found, found_doc = None, {"unreadable": exc.message}
    if found is not None and found.head_seq > chain["entries"]:
        # Restoring would hide entries the log has lost: never lose a record.
        raise IntegrityFailure(f"the controls file records audit seq {found.head_seq} but the log ends at seq "
                               f"{chain['entries']} (truncated?); restore the log from a backup, nothing was changed")
    with env.writer() as writer:
        head = env.log.head()
        state = head["state"]
        fields: dict[str, Any] = {
            "env": env.name, **actor.audit_fields(), "action": ROLLBACK, "control": KILL_VAR,
            "old": state["controls"][KILL_VAR], "new": "true", "decisionRecord": None,
            "reason": f"controls restored from the audit log with the kill-switch engaged: {problem}",
            "step": None, "verification": None, "approvalId": None,
            "details": {"trigger": "restore-controls", "found": found_doc}, "ts": utc(now_utc())}
        fields["state"] = apply(state, fields)
        return writer.record(fields)


def _extra(actor):
    """Fields the torn-line repair entry carries besides the log's own: who, and the unchanged state."""

    def fields(previous: dict[str, Any] | None) -> dict[str, Any]:
        state = previous.get("state") if previous else None
        return {**actor.audit_fields(), "control": None, "old": None, "new": None, "decisionRecord": None,
                "reason": "cut a torn last line", "step": None, "verification": None, "approvalId": None,
                "state": state}

    return fields
