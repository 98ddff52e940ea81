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
        owners: dict[str, str] = {}
        for op in value:
            if op.id in seen:
                raise ValueError(f"operator id {op.id!r} is listed twice")
            seen.add(op.id)
            for fp in op.fingerprints:
                if fp in owners and owners[fp] != op.id:
                    # One key, two ids: its signatures could not say who acted (and four-eyes would be one pair).
                    raise ValueError(f"key {fp} is listed for both {owners[fp]!r} and {op.id!r}; a key proves "
                                     "one operator")
                owners[fp] = op.id
        return value

    def get(self, operator_id: str) -> Operator | None:
        return next((op for op in self.operators if op.id == operator_id), None)

    def owner_of(self, key_fingerprint: str) -> Operator | None:
        return next((op for op in self.operators if key_fingerprint in op.fingerprints), None)
