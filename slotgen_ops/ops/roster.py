"""Who may act: the operators of `operators.yaml` (SPEC section 3)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Operator(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    name: str = Field(min_length=1)
    roles: tuple[Literal["engineering-owner", "on-call", "approver"], ...] = Field(min_length=1)


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

    def get(self, operator_id: str) -> Operator | None:
        return next((op for op in self.operators if op.id == operator_id), None)
