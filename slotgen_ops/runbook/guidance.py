"""What to do next, in words and as the exact command (for `next`, `status` and refusals)."""

from __future__ import annotations

import os
from typing import Any

from ..policy.authority import now_utc
from .judge import needs_approval, next_step, unmet_requirement
from .runbook import Step


def describe_next(env, state: dict[str, Any]) -> dict[str, Any]:
    """The next allowed step of `env`, what it needs, and the commands that take it."""
    runbook = env.workspace.runbook
    nxt = next_step(state, runbook)
    name = env.name
    who = "" if os.environ.get("SLOTGEN_OPERATOR") else " --operator <OPERATOR>"
    if nxt.step is None:
        return {"step": None, "number": None, "title": "Beta is live at the top of the ladder", "control": None,
                "value": None, "needsApproval": False, "blockedBy": None, "commands": [],
                "summary": "none: Beta is live (to reduce exposure: one rung down with 'slotgen set', or 'slotgen rollback')"}
    step = nxt.step
    value = nxt.value
    if step.id == "allowlist-enable":
        from ..policy.allowlists import default_allowlist

        value = default_allowlist(env.workspace) or "allowlists/<APPROVED-FILE>.json"
    approval_needed = needs_approval(step, state)
    commands = step_commands(name, step, value, approval_needed, who)
    blocked = unmet_requirement(step, state, runbook, name, now_utc(), skip=("approval",))
    summary = f"step {step.number} ({step.id}): " + " then ".join(commands)
    if blocked:
        summary += f" [not yet: {blocked}]"
    position = explain_position(state, step.id)
    if position:
        summary = f"{position}; {summary}"
    return {"step": step.id, "number": step.number, "title": step.title, "control": step.control, "value": value,
            "needsApproval": approval_needed, "blockedBy": blocked, "commands": commands, "summary": summary,
            "position": position}


def explain_position(state: dict[str, Any], step_id: str | None) -> str | None:
    """Why the runbook stands where it does after a rollback or a step down (the position follows the controls)."""
    from ..contract import ROLLOUT_VAR

    rung = state["controls"].get(ROLLOUT_VAR)
    if state.get("rolledBack"):
        if step_id in ("verify", "kill-switch-off"):
            return (f"after a rollback: the kill-switch is engaged at rollout {rung}; re-enabling takes a recorded "
                    "passing verify and an approval for SLOTGEN_AI_KILL=false (it re-exposes this rung)")
        return "after a rollback: the kill-switch is engaged; the runbook resumes from the first control not in place"
    if state.get("steppedDown"):
        return (f"after a step down (now rollout {rung}): the runbook resumes from the controls as they stand; "
                "going up again is a rung at a time, each with an approval and the soak")
    return None


def step_commands(env_name: str, step: Step, value: str | None, approval_needed: bool, who: str) -> list[str]:
    """The exact commands that take `step` (placeholders in <>), as `next` prints them."""
    if step.control is None:
        return [f"slotgen verify --env {env_name} --decision-record <REF>{who}"]
    commands = []
    if approval_needed:
        commands.append(f"slotgen approve --env {env_name} {step.control}={value} --decision-record <REF> "
                        "--operator <APPROVER>")
    approval = " --approval <APPROVAL-ID>" if approval_needed else ""
    commands.append(f"slotgen set --env {env_name} {step.control}={value} --decision-record <REF>{approval}{who}")
    return commands
