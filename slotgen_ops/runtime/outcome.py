"""What an executor hands back: the outcome of one job, in the words both executors share.

Owns the vocabulary of an execution (the outcomes STUB, COMPLETED, FAILED, the executor names)
and `ExecutorOutcome`, the record the stub (`executor`) and the OpenAI executor
(`openai_executor`) return and the Runtime turns into the executor status; and `one_line`,
how a detail is kept to one UTF-8-safe line. The OpenAI path's own codes and failure kinds
live with it, in `openai_executor`. Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OUTCOME_STUB = "STUB"
OUTCOME_COMPLETED = "COMPLETED"
OUTCOME_FAILED = "FAILED"

EXECUTOR_STUB = "stub"
EXECUTOR_OPENAI = "openai"

# A detail is one line; longer ones are cut short.
_MAX_DETAIL = 240


@dataclass(frozen=True, slots=True)
class ExecutorOutcome:
    """What an executor did with one job; the Runtime turns it into the executor status."""

    executor: str  # "stub" | "openai"
    outcome: str  # STUB | COMPLETED | FAILED
    code: str | None
    result: dict[str, Any] | None
    attempts: int  # HTTP requests sent to the endpoint
    model: str | None
    detail: str
    failure: str | None = None  # FAILURE_*: why a FAILED outcome failed
    http_status: int | None = None  # with FAILURE_HTTP: the status the endpoint answered


def clean_text(value: Any) -> str:
    """A string field, made UTF-8 safe; anything else becomes ''."""
    if not isinstance(value, str):
        return ""
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def one_line(text: str) -> str:
    """`text` on one UTF-8-safe line of at most _MAX_DETAIL characters."""
    line = clean_text(" ".join(str(text).split()))
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"
