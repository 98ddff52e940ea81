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
from ..policy.authority import CHANGE_ROLES, require_role, resolve_actor
from .entries import new_entry, stateless_repair_fields
from .writer import _rollback_fields
from ..runbook.state import REPAIR


def repair_log(env, operator: str | None, key: str | None = None) -> dict[str, Any]:
    """Run the repairs that apply; return what was done ({"cut", "restored", "folded"})."""
    from .rollback import _under_accepted_policy

    actor = _under_accepted_policy(env, resolve_actor(env.workspace.roster, operator, key,
                                                      identity=env.workspace.config.identity,
                                                      base=env.workspace.root))
    require_role(actor, CHANGE_ROLES, "repair the audit log")
    cut = _cut_torn_tail(env, actor)
    restored = _restore_controls(env, actor)
    folded = env.transact(actor, lambda writer: list(writer.notes), what="audit repair")
    return {"cut": cut, "restored": restored, "folded": folded}


def _cut_torn_tail(env, actor) -> dict[str, Any] | None:
    """Cut a torn last line; the repair entry engages the kill-switch and the controls follow it.

    One critical section, like any change: a crash after the entry leaves the
    controls exactly one entry behind, which the next command closes.
    """

    def cut(writer) -> dict[str, Any] | None:
        head = env.log.head()
        found = env.controls.lenient()
        intact = int(head["seq"]) if head else 0
        if not _has_torn_tail(env):
            return None
        if found.head_seq > intact:
            raise IntegrityFailure(f"the controls file records audit seq {found.head_seq}, beyond the last intact entry "
                                   f"(seq {intact}): the torn line may be that entry; not cutting it — restore the "
                                   "log from a backup (rollback still works meanwhile)")
        ts = writer.stamp((head or {}).get("ts"))
        entry = env.log.repair(env.name, actor.to_json(), extra=_extra(actor, found.values.get(KILL_VAR), env.name, ts),
                               seal=writer.seal)
        if entry is not None and isinstance(entry.get("state"), dict):
            env.controls.write(entry["state"]["controls"], entry["seq"], entry["hash"], expect=found)
        return entry

    return env.transact(actor, cut, what="audit repair", reconcile=False)


def _has_torn_tail(env) -> bool:
    import os

    if env.backend != "files":  # a database row is whole or absent: nothing is ever torn
        return False
    try:
        fd = os.open(env.log.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return bool(env.log._tail(fd).torn)
    finally:
        os.close(fd)


def _restore_controls(env, actor) -> dict[str, Any] | None:
    from .chain import chain_report

    chain = chain_report(env)  # the whole log, every time: only a sound log may be restored from
    if not chain["valid"]:
        raise IntegrityFailure(f"the audit log itself fails verification at seq {chain['firstBad']} "
                               f"({chain['reason']}); restore it from a backup, nothing was changed")
    try:
        env.snapshot()
        return None  # agreement (or a window any writer closes, engaging the kill-switch)
    except IntegrityFailure as exc:
        problem = exc.message
    found = env.controls.lenient()
    if found.head_seq > chain["entries"]:
        # Restoring would hide entries the log has lost: never lose a record.
        raise IntegrityFailure(f"the controls file records audit seq {found.head_seq} but the log ends at seq "
                               f"{chain['entries']} (truncated?); restore the log from a backup, nothing was changed")

    def restore(writer) -> dict[str, Any]:
        head = env.log.head()
        state = head["state"]
        fields = _rollback_fields(env, actor, state, old=state["controls"][KILL_VAR],
                                  reason=f"controls restored from the audit log with the kill-switch engaged: {problem}",
                                  details={"trigger": "restore-controls",
                                           "found": {"values": found.values, "headSeq": found.head_seq}})
        from .snapshot import Snapshot

        writer.snapshot = Snapshot(state, head, found, None, False)
        return writer.record(fields)

    return env.transact(actor, restore, what="audit repair", reconcile=False)


REPAIR_REASON = "cut a torn last line; the kill-switch is engaged because what the line said is unknown"


def _extra(actor, kill_in_file: str | None, env_name: str, ts: str):
    """Fields of the torn-line repair entry besides the log's own: who, and the state with the kill-switch engaged."""

    def fields(previous: dict[str, Any] | None) -> dict[str, Any]:
        state = previous.get("state") if previous else None
        if not isinstance(state, dict):  # nothing before the cut to build on: no state to record
            return stateless_repair_fields(actor, control=KILL_VAR, old=kill_in_file, new="true", reason=REPAIR_REASON,
                                           ts=ts)
        body = new_entry(env_name, actor, state, action=REPAIR, control=KILL_VAR, old=state["controls"].get(KILL_VAR),
                         new="true", reason=REPAIR_REASON, ts=ts)
        del body["action"], body["env"]  # AuditLog.repair sets both itself
        return body

    return fields


__all__ = ["repair_log"]
