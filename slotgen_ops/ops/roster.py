"""Who may act: the operators of `operators.yaml`, their roles and their keys (SPEC sections 3 and 7)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..audit.sshsig import KeyFormatError, fingerprint


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Operator(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    name: str = Field(min_length=1)
    roles: tuple[Literal["engineering-owner", "on-call", "approver"], ...] = Field(min_length=1)
    # OpenSSH public key lines ("ssh-ed25519 AAAA... comment"): the keys whose signatures prove this operator.
    keys: tuple[str, ...] = ()

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for line in value:
            line = " ".join(line.split())
            try:
                fingerprint(line)
            except KeyFormatError as exc:
                raise ValueError(f"not a usable OpenSSH public key: {exc}") from None
            out.append(line)
        return tuple(out)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(fingerprint(line) for line in self.keys)


class Roster(_Strict):
    operators: tuple[Operator, ...]

    @field_validator("operators")
    @classmethod
    def _unique(cls, value: tuple[Operator, ...]) -> tuple[Operator, ...]:
        seen: set[str] = set()
        for op in value:
            if op.id in seen:
                raise ValueError(f"operator id {op.id!r} is listed twice")
            seen.add(op.id)
        return value

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
