"""One constructor for audit entries: every field the product records, listed once, and the state after the entry.

Three forms, all built here:

- `new_entry`: an entry of an environment's audit log (the log adds seq,
  prevHash and hash; the writer the signature);
- `journal_entry`: a break-glass journal entry, the rollback a log could not
  take: the same fields without the policy and state it could not know;
- `stateless_repair_fields`: what the product adds to a torn-line repair
  entry when nothing before the cut has a state to build on.

A field not given is recorded as null, except in the last form, which has only
the fields given. The hash covers every field, so a form's set of fields never
changes: an entry that never had a field must not gain one.
"""

from __future__ import annotations

from typing import Any

from ..clock import now_utc, utc
from ..runbook.state import apply

#: Who acted, from the actor (`Actor.audit_fields`).
WHO_FIELDS: tuple[str, ...] = ("operator", "roles", "actor")
#: What was done; null where it does not apply.
ACT_FIELDS: tuple[str, ...] = (
    "action", "control", "old", "new", "decisionRecord", "reason", "step", "verification", "approvalId", "details",
)  # fmt: skip
#: What the log fills itself (`ts` too, when not given).
LOG_FIELDS: tuple[str, ...] = ("seq", "prevHash", "hash", "signature")
#: Under which policy it was done and the state it left (SPEC sections 3 and 8).
CONTEXT_FIELDS: tuple[str, ...] = ("policy", "state")
#: An entry's fields in the order of a review's columns (`audit export --format csv`; `audit.review.AUDIT_FIELDS`).
AUDIT_FIELDS: tuple[str, ...] = ("seq", "ts", "env", *WHO_FIELDS, *ACT_FIELDS, "prevHash", "hash", "signature")
#: Every field an entry of the product may carry.
ENTRY_FIELDS: frozenset[str] = frozenset((*AUDIT_FIELDS, *CONTEXT_FIELDS))


def policy_in_force(state: dict[str, Any] | None) -> str | None:
    """The digest of the accepted policy an entry is made under (SPEC section 8)."""
    policy = (state or {}).get("policy")
    return policy.get("digest") if isinstance(policy, dict) else None


def _given(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields`, refused (TypeError) when one is not an entry field or is the log's own."""
    wrong = sorted((set(fields) - ENTRY_FIELDS) | (set(fields) & set(LOG_FIELDS)))
    if wrong:
        raise TypeError(f"not a field the product sets on an audit entry: {', '.join(wrong)}")
    return fields


def _record(env_name: str, actor: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """Environment, who, and every act field (null unless given), then `fields`."""
    return {"env": env_name, **actor.audit_fields(), **dict.fromkeys(ACT_FIELDS), **_given(fields)}


def new_entry(env_name: str, actor: Any, state: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    """An audit entry's fields (the log adds seq, prevHash and hash), with `state` the state after it
    computed from the state before (None before an environment's first entry). `policy` defaults to the
    digest in force, `ts` to now."""
    entry = {"policy": policy_in_force(state), "ts": utc(now_utc()), **_record(env_name, actor, fields)}
    entry["state"] = apply(state, entry)
    return entry


def journal_entry(env_name: str, actor: Any, **fields: Any) -> dict[str, Any]:
    """A break-glass journal entry's fields (`breakglass.BreakGlassJournal.append`): no policy and no state (the
    log that knows them could not be reached); the journal stamps `ts`."""
    return _record(env_name, actor, fields)


def stateless_repair_fields(actor: Any, **fields: Any) -> dict[str, Any]:
    """What the product adds to a torn-line repair entry (`AuditLog.repair` adds action, env and details) when no
    entry before the cut has a state: who, the fields given, and `state` null. Only those: this form has never
    carried the other fields."""
    return {**actor.audit_fields(), **_given(fields), "state": None}
