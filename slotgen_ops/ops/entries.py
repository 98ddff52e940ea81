"""One constructor for audit entries: every field the product records, and the state after the entry."""

from __future__ import annotations

from typing import Any

from .clock import now_utc, utc
from .state import apply


def policy_in_force(state: dict[str, Any] | None) -> str | None:
    """The digest of the accepted policy an entry is made under (SPEC section 8)."""
    policy = (state or {}).get("policy")
    return policy.get("digest") if isinstance(policy, dict) else None


def new_entry(env_name: str, actor: Any, state: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    """An audit entry's fields (the log adds seq, prevHash and hash), with `state` the state after it
    computed from the state before (None before an environment's first entry)."""
    base: dict[str, Any] = {
        "env": env_name, **actor.audit_fields(), "control": None, "old": None, "new": None,
        "decisionRecord": None, "reason": None, "step": None, "verification": None, "approvalId": None,
        "details": None, "policy": policy_in_force(state), "ts": utc(now_utc())}
    base.update(fields)
    base["state"] = apply(state, base)
    return base
