"""`slotgen audit repair`: put an environment back in order, never lowering safety.

SPEC section 6, "Repair never lowers safety": nothing at or below the head the
controls file records is ever removed, and every state it writes has the
kill-switch engaged. What it does, each only when safe, each recorded:

- a torn last line (an interrupted write) is cut off, unless the controls file
  says it reflects an entry at or beyond that line (then the line may be the
  very entry the runtime is running on: restore the log from a backup);
- break-glass rollbacks are folded into the chain as rollback entries;
- controls that disagree with an audit log whose whole chain verifies (a hand
  edit, a rewound file, a break-glass rollback) are rewritten from the log with
  the kill-switch engaged, recorded as a rollback.

After a cut, the kill-switch is engaged too: what the cut line said is unknown,
so the environment resumes from verify with nothing exposed.
"""

from __future__ import annotations

from typing import Any

from ..contract import KILL_VAR
from ..errors import IntegrityFailure
from .authority import CHANGE_ROLES, now_utc, require_role, resolve_actor, utc
from .controls_file import lenient_controls
from .environment import _rollback_fields
from .state import ROLLBACK, apply


def repair_log(env, operator: str | None) -> dict[str, Any]:
    """Run the repairs that apply; return what was done ({"cut", "restored", "folded"})."""
    actor = resolve_actor(env.workspace.roster, operator)
    require_role(actor, CHANGE_ROLES, "repair the audit log")
    cut = _cut_torn_tail(env, actor)
    restored = _restore_controls(env, actor, after_cut=cut is not None)
    with env.writer(actor, what="audit repair") as writer:
        folded = list(writer.notes)
    return {"cut": cut, "restored": restored, "folded": folded}


def _cut_torn_tail(env, actor) -> dict[str, Any] | None:
    with env.lock.exclusive(what="audit repair"):
        head = env.log.head()
        found = lenient_controls(env.controls_path)
        intact = int(head["seq"]) if head else 0
        if found.head_seq > intact and _has_torn_tail(env):
            raise IntegrityFailure(f"the controls file records audit seq {found.head_seq}, beyond the last intact entry "
                                   f"(seq {intact}): the torn line may be that entry; not cutting it — restore the "
                                   "log from a backup (rollback still works meanwhile)")
        return env.log.repair(env.name, actor.to_json(), extra=_extra(actor))


def _has_torn_tail(env) -> bool:
    import os

    try:
        fd = os.open(env.log.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return bool(env.log._tail(fd).torn)
    finally:
        os.close(fd)


def _restore_controls(env, actor, after_cut: bool) -> dict[str, Any] | None:
    from .report import chain_report

    chain = chain_report(env)  # the whole log, every time: only a sound log may be restored from
    if not chain["valid"]:
        raise IntegrityFailure(f"the audit log itself fails verification at seq {chain['firstBad']} "
                               f"({chain['reason']}); restore it from a backup, nothing was changed")
    problem = None
    try:
        snap = env.snapshot()
        if not after_cut or KILL_VAR not in snap.state["controls"] or snap.state["controls"][KILL_VAR] == "true":
            return None  # agreement (or a window any writer closes, engaging the kill-switch)
        problem = "a torn line was cut; what it said is unknown, so the kill-switch is engaged"
    except IntegrityFailure as exc:
        problem = exc.message
    found = lenient_controls(env.controls_path)
    if found.head_seq > chain["entries"]:
        # Restoring would hide entries the log has lost: never lose a record.
        raise IntegrityFailure(f"the controls file records audit seq {found.head_seq} but the log ends at seq "
                               f"{chain['entries']} (truncated?); restore the log from a backup, nothing was changed")
    with env.writer(actor, what="audit repair", reconcile=False) as writer:
        head = env.log.head()
        state = head["state"]
        fields = _rollback_fields(env, actor, state, old=state["controls"][KILL_VAR],
                                  reason=f"controls restored from the audit log with the kill-switch engaged: {problem}",
                                  details={"trigger": "restore-controls",
                                           "found": {"values": found.values, "headSeq": found.head_seq}})
        from .environment import Snapshot

        writer.snapshot = Snapshot(state, head, found, None, False)
        return writer.record(fields)


def _extra(actor):
    """Fields the torn-line repair entry carries besides the log's own: who, and the unchanged state."""

    def fields(previous: dict[str, Any] | None) -> dict[str, Any]:
        state = previous.get("state") if previous else None
        return {**actor.audit_fields(), "control": None, "old": None, "new": None, "decisionRecord": None,
                "reason": "cut a torn last line", "step": None, "verification": None, "approvalId": None,
                "state": state, "ts": utc(now_utc())}

    return fields


__all__ = ["repair_log", "ROLLBACK", "apply"]
