"""Who may act: operators, roles, decision records, approvals (SPEC section 3).

Identity is claimed (--operator, else SLOTGEN_OPERATOR) and, in a workspace
with `identity: signed`, proven by the operator's key (--key, else
SLOTGEN_SIGNING_KEY): every entry they record is signed with it (SPEC section
7). It is recorded with the OS account that ran the command, taken from the
process's uid (not $USER), as an `actor` object.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from datetime import datetime, timedelta
from typing import Any

from ..errors import BadInput, Refused
from ..clock import expired, now_utc, utc
from .roster import Operator, Roster

__all__ = ["APPROVER_ROLE", "CHANGE_ROLES", "Actor", "approval_record", "check_approval", "check_decision_record",
           "new_approval_id", "now_utc", "require_key", "require_role", "resolve_actor", "utc"]

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
    # "signed": proven by a key (SPEC section 7); "declared": the workspace opted out of signing;
    # "unidentified": a rollback (or refusal) by someone not proven allowed (SPEC section 6)
    identity: str = "declared"
    key: Path | None = None      # --key / SLOTGEN_SIGNING_KEY, as ssh-keygen -Y sign -f takes it
    key_line: str | None = None  # its public key
    key_problem: str | None = None  # why its public key could not be read

    @property
    def roles(self) -> list[str]:
        return list(self.operator.roles) if self.operator else []

    @property
    def fingerprint(self) -> str | None:
        if self.key_line is None:
            return None
        from ..audit.sshkey import fingerprint

        return fingerprint(self.key_line)

    @property
    def proven(self) -> bool:
        """A signed identity whose key is one of the operator's keys in the roster it was resolved against."""
        return (self.identity == "signed" and self.operator is not None and self.fingerprint is not None
                and self.fingerprint in self.operator.fingerprints)

    def signer(self):  # -> signing.Signer | None
        """What signs this actor's entries; None when they are recorded unsigned (declared, unidentified)."""
        if not self.proven:
            return None
        from .signing import Signer

        assert self.operator is not None and self.key is not None
        return Signer(self.operator.id, self.key, self.operator.keys)

    def recordable(self) -> "Actor":
        """Who an entry by this actor is recorded as: itself, unless it claims a signed identity it cannot prove."""
        return self if self.identity != "signed" or self.proven else self.unidentified()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.claimed,
            "name": self.operator.name if self.operator else None,
            "roles": self.roles,
            "known": self.operator is not None,
            "identity": self.identity,
            "key": self.fingerprint if self.identity == "signed" else None,
            "os": os_account(),
            "host": socket.gethostname(),
        }

    def audit_fields(self) -> dict[str, Any]:
        return {"operator": self.claimed, "roles": self.roles, "actor": self.to_json()}

    def unidentified(self) -> "Actor":
        """The same claim, recorded as not proven allowed: what a rollback by anyone records."""
        return Actor(claimed=self.claimed, operator=None, identity="unidentified")

    def against(self, roster: Roster | None, identity: str | None = None) -> "Actor":
        """The same claim and key, judged against another roster and identity mode (the audit log's)."""
        operator = roster.get(self.claimed) if (roster is not None and self.claimed) else None
        if self.identity == "unidentified":
            return replace(self, operator=None)
        mode = self.identity if identity is None else ("declared" if identity == "declared" else "signed")
        return replace(self, operator=operator, identity=mode)


def resolve_actor(roster: Roster | None, operator_opt: str | None, key_opt: Path | str | None = None, *,
                  identity: str = "signed", base: Path | None = None) -> Actor:
    """Who acts: --operator, else SLOTGEN_OPERATOR, with the key of --key, else SLOTGEN_SIGNING_KEY (its
    public half read now; nothing is signed until an entry is recorded). A relative key path that is not
    there from the current directory is looked for under `base` (the workspace: `demo-keys/owner` works
    from anywhere). `identity` is the workspace's mode; the services judge the actor again under the
    policy the log accepted (`policy.accepted_actor`)."""
    claimed = operator_opt if operator_opt else os.environ.get("SLOTGEN_OPERATOR") or None
    operator = roster.get(claimed) if (roster is not None and claimed) else None
    mode = "declared" if identity == "declared" else "signed"
    key = key_opt if key_opt else os.environ.get("SLOTGEN_SIGNING_KEY") or None
    if key is None:
        return Actor(claimed=claimed, operator=operator, identity=mode)
    from ..audit.sshkey import KeyFormatError, public_key_of

    key = Path(key).expanduser()
    if base is not None and not key.is_absolute() and not key.exists() and (Path(base) / key).exists():
        key = Path(base) / key
    try:
        return Actor(claimed, operator, mode, key, public_key_of(key))
    except KeyFormatError as exc:
        return Actor(claimed, operator, mode, key, None, str(exc))


def require_role(actor: Actor, roles: tuple[str, ...], what: str) -> None:
    """Refused (exit 3) unless the actor is a known operator with one of `roles`, proven by their key
    when the workspace signs."""
    if actor.claimed is None:
        raise Refused(f"no operator given for {what}: pass --operator ID or set SLOTGEN_OPERATOR")
    if actor.operator is None:
        raise Refused(f"unknown operator {actor.claimed!r}: not listed in operators.yaml")
    if not set(actor.roles) & set(roles):
        raise Refused(f"operator {actor.claimed!r} ({', '.join(actor.roles)}) may not {what}: "
                      f"needs {' or '.join(roles)}")
    require_key(actor)


def require_key(actor: Actor) -> None:
    """Refused (exit 3) when a signed identity has no key, an unreadable one, or one not the operator's."""
    if actor.identity != "signed" or actor.operator is None:
        return
    if actor.key is None:
        raise Refused(f"no signing key for {actor.claimed!r}: pass --key FILE or set SLOTGEN_SIGNING_KEY (a private "
                      "key file, or a public key whose private half is in ssh-agent); this workspace has identity: "
                      "signed")
    if actor.key_line is None:
        raise Refused(f"signing key {actor.key}: {actor.key_problem}")
    if not actor.proven:
        listed = ", ".join(actor.operator.fingerprints) or "none"
        raise Refused(f"the key {actor.key} ({actor.fingerprint}) is not one of operator {actor.claimed!r}'s keys in "
                      f"the accepted operators.yaml (listed: {listed})")


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
                    ttl_hours: float, now: datetime, *, old: str | None, key: str | None = None) -> dict[str, Any]:
    """An approval bound to environment, control, old value, new value and decision record, and the key
    that signed it (SPEC section 7)."""
    expires = now + timedelta(seconds=int(ttl_hours * 3600))
    return {"env": env, "control": control, "old": old, "value": value, "decisionRecord": decision_record,
            "approver": approver, "approverKey": key, "expiresAt": utc(expires)}


def check_approval(approvals: dict[str, Any], approval_id: str | None, env: str, control: str, value: str,
                   decision_record: str, operator: str, now: datetime, *, old: str | None,
                   key: str | None = None) -> None:
    """An approval is bound to one exact change (from `old` to `value`), single-use, expires, and is not
    its approver's: neither by id nor by the key that signed it (`key`: the applier's fingerprint)."""
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
    if key is not None and approval.get("approverKey") == key:
        raise Refused(f"approval {approval_id} was signed by the key {key}, the one applying it: an approval "
                      "cannot be used by the key that signed it, whatever ids are claimed")
    if expired(approval.get("expiresAt"), now):
        raise Refused(f"approval {approval_id} expired at {approval.get('expiresAt')}")

