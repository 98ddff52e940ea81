"""`slotgen audit repair`: cut a torn last line off and record what was cut."""

from __future__ import annotations

from typing import Any

from .authority import CHANGE_ROLES, require_role, resolve_actor


def repair_log(env, operator: str | None) -> dict[str, Any] | None:
    actor = resolve_actor(env.workspace.roster, operator)
    require_role(actor, CHANGE_ROLES, "repair the audit log")
    head = None
    entry = env.log.repair(env.name, actor.to_json(), extra=_extra(env, actor))
    if entry is not None:
        head = entry
        with env.writer() as writer:
            writer.write_controls(head)
    return entry


def _extra(env, actor) -> Any:
    """Fields the repair entry carries besides the log's own: who, and the unchanged state."""

    def fields(previous: dict[str, Any] | None) -> dict[str, Any]:
        state = previous.get("state") if previous else None
        return {**actor.audit_fields(), "control": None, "old": None, "new": None, "decisionRecord": None,
                "reason": "cut a torn last line", "step": None, "verification": None, "approvalId": None,
                "state": state}

    return fields
