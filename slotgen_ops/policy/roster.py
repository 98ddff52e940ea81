"""Who may act: the operators of `operators.yaml`, their roles and their keys (SPEC sections 3 and 7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..audit.sshkey import KeyFormatError, fingerprint
from .fields import Checked, Field, Items, Model, OneOf, Text, build

ROLES = ("engineering-owner", "on-call", "approver")


def _key_line(line: str) -> str:
    """An OpenSSH public key line with its whitespace normalised; ValueError if it is not a usable key."""
    line = " ".join(line.split())
    try:
        fingerprint(line)
    except KeyFormatError as exc:
        raise ValueError(f"not a usable OpenSSH public key: {exc}") from None
    return line


@dataclass(frozen=True)
class Operator:
    id: str
    name: str
    roles: tuple[str, ...]
    # OpenSSH public key lines ("ssh-ed25519 AAAA... comment"): the keys whose signatures prove this operator.
    keys: tuple[str, ...] = ()

    FIELDS = {
        "id": Field(Text(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")),
        "name": Field(Text(min_length=1)),
        "roles": Field(Items(OneOf(*ROLES), min_length=1)),
        "keys": Field(Items(Checked(Text(), _key_line)), ()),
    }

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(fingerprint(line) for line in self.keys)


def _unique(value: tuple[Operator, ...]) -> tuple[Operator, ...]:
    seen: set[str] = set()
    for op in value:
        if op.id in seen:
            raise ValueError(f"operator id {op.id!r} is listed twice")
        seen.add(op.id)
    return value


@dataclass(frozen=True)
class Roster:
    operators: tuple[Operator, ...]

    FIELDS = {"operators": Field(Checked(Items(Model(Operator)), _unique))}

    @classmethod
    def from_doc(cls, doc: Any) -> "Roster":
        """operators.yaml's document as a Roster; fields.Invalid (a ValueError) naming each problem."""
        return build(cls, doc)

    def as_doc(self) -> dict[str, Any]:
        """The roster as JSON data (what a policy snapshot pins): every field, in order, keys normalised."""
        return {"operators": [{"id": op.id, "name": op.name, "roles": list(op.roles), "keys": list(op.keys)}
                              for op in self.operators]}

    def shared_keys(self) -> dict[str, list[str]]:
        """{fingerprint: operator ids} for each key listed under more than one id. Allowed, but such a key
        proves only that one of them acted, and an approval it signed cannot be used by any of them."""
        owners: dict[str, list[str]] = {}
        for op in self.operators:
            for fp in dict.fromkeys(op.fingerprints):
                owners.setdefault(fp, []).append(op.id)
        return {fp: ids for fp, ids in owners.items() if len(ids) > 1}

    def get(self, operator_id: str) -> Operator | None:
        return next((op for op in self.operators if op.id == operator_id), None)

    def owners_of(self, key_fingerprint: str) -> list[Operator]:
        return [op for op in self.operators if key_fingerprint in op.fingerprints]
