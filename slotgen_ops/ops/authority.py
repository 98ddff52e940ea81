"""Who may act: operators, roles, decision records, approvals (SPEC section 3).

Identity is declared (--operator, else SLOTGEN_OPERATOR) and recorded with
the OS account that ran the command, taken from the process's uid (not $USER),
as an `actor` object that signed identities can extend later.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import BadInput, Refused
from .clock import now_utc, utc
from .roster import Operator, Roster

__all__ = ["APPROVER_ROLE", "CHANGE_ROLES", "Actor", "approval_record", "check_approval", "check_decision_record",
           "new_approval_id", "now_utc", "require_role", "resolve_actor", "utc"]

CHANGE_ROLES = ("engineering-owner", "on-call")
APPROVER_ROLE = "approver"


def os_account() -> dict[str, Any]:
    uid = os.getuid()
    try:
        import pwd

        user = pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        user = None
    return {"uid": uid, "user": user}


@dataclass(frozen=True)
class Actor:
    claimed: str | None          # what --operator / SLOTGEN_OPERATOR said
    operator: Operator | None    # the roster entry, if the claim is known
    identity: str = "declared"   # "unidentified": a rollback by someone not proven allowed (SPEC section 6)

    @property
    def roles(self) -> list[str]:
        return list(self.operator.roles) if self.operator else []

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.claimed,
            "name": self.operator.name if self.operator else None,
            "roles": self.roles,
            "known": self.operator is not None,
            "identity": self.identity,
            "os": os_account(),
            "host": socket.gethostname(),
        }

    def audit_fields(self) -> dict[str, Any]:
        return {"operator": self.claimed, "roles": self.roles, "actor": self.to_json()}

    def unidentified(self) -> "Actor":
        """The same claim, recorded as not proven allowed: what a rollback by anyone records."""
        return Actor(claimed=self.claimed, operator=None, identity="unidentified")


def resolve_actor(roster: Roster | None, operator_opt: str | None) -> Actor:
    claimed = operator_opt if operator_opt else os.environ.get("SLOTGEN_OPERATOR") or None
    operator = roster.get(claimed) if (roster is not None and claimed) else None
    return Actor(claimed=claimed, operator=operator)


def require_role(actor: Actor, roles: tuple[str, ...], what: str) -> None:
    if actor.claimed is None:
        raise Refused(f"no operator given for {what}: pass --operator ID or set SLOTGEN_OPERATOR")
    if actor.operator is None:
        raise Refused(f"unknown operator {actor.claimed!r}: not listed in operators.yaml")
    if not set(actor.roles) & set(roles):
        raise Refused(f"operator {actor.claimed!r} ({', '.join(actor.roles)}) may not {what}: "
                      f"needs {' or '.join(roles)}")


def check_decision_record(ref: str | None, pattern: str, required: bool = True) -> str | None:
    if ref is None or not ref.strip():
        if required:
            raise Refused("missing decision record: every change needs --decision-record REF (e.g. DR-123 or an https URL)")
        return None
    ref = ref.strip()
    if not re.fullmatch(pattern, ref):
        raise BadInput(f"--decision-record {ref!r}: not a decision record (expected e.g. DR-123 or an https URL; "
                       f"pattern {pattern})")
    return ref


def new_approval_id() -> str:
    return "apv-" + secrets.token_hex(5)


def approval_record(env: str, control: str, value: str, decision_record: str, approver: str,
                    ttl_hours: float, now: datetime, *, old: str | None) -> dict[str, Any]:
    """An approval bound to environment, control, old value, new value and decision record (SPEC section 7)."""
    expires = now + timedelta(seconds=int(ttl_hours * 3600))
    return {"env": env, "control": control, "old": old, "value": value, "decisionRecord": decision_record,
            "approver": approver, "expiresAt": utc(expires)}


def check_approval(approvals: dict[str, Any], approval_id: str | None, env: str, control: str, value: str,
                   decision_record: str, operator: str, now: datetime, *, old: str | None) -> None:
    """An approval is bound to one exact change (from `old` to `value`), single-use, expires, and is not
    its approver's."""
    if not approval_id:
        raise Refused(f"{control}={value} needs an approval: an approver runs 'slotgen approve --env {env} "
                      f"{control}={value} --decision-record {decision_record}', then pass --approval ID")
    approval = approvals.get(approval_id)
    if approval is None:
        raise Refused(f"approval {approval_id!r} is unknown, already used or expired")
    bound = (approval.get("env"), approval.get("control"), approval.get("old", "(unbound)"), approval.get("value"),
             approval.get("decisionRecord"))
    if bound != (env, control, old, value, decision_record):
        raise Refused(f"approval {approval_id} was given for {approval.get('control')}: {approval.get('old')} -> "
                      f"{approval.get('value')} in {approval.get('env')} under {approval.get('decisionRecord')}, "
                      f"not for this change ({control}: {old} -> {value})")
    if approval.get("approver") == operator:
        raise Refused(f"approval {approval_id} was given by {operator!r}, who cannot use their own approval")
    if _expired(approval.get("expiresAt"), now):
        raise Refused(f"approval {approval_id} expired at {approval.get('expiresAt')}")


def _expired(expires_at: Any, now: datetime) -> bool:
    """Compared as times, not as strings; an expiry that cannot be read counts as expired (fail closed)."""
    try:
        moment = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
    except ValueError:
        return True
    if moment.tzinfo is None:
        return True
    return moment <= now
