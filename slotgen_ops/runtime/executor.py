"""Executing a job: the gating decision, then the stub or the OpenAI executor.

Seed 004: STUB produces no AI call, ever; COMPLETED means the OpenAI call
succeeded and its output validated against the result schema; FAILED means
the OpenAI path was taken and failed with one of the OPENAI_* codes. Every
execution yields one executor status and one telemetry event, both
schema-valid.

This module owns the Runtime (decide, execute on the chosen path, emit one
telemetry event), the stub executor and the executor status; the OpenAI
executor is in `openai_executor` and the outcome both return in `outcome`.
Neither `openai` nor `jsonschema` (nor pydantic) is imported at module level:
the stub path needs none of them, and the CLI's fast paths import this module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..contract import PATH_OPENAI, Allowlist, AllowlistUnavailable, Controls, Decision, decide
from .openai_executor import OpenAIExecutor
from .outcome import EXECUTOR_STUB, OUTCOME_STUB, ExecutorOutcome, clean_text, one_line
from .telemetry import MemoryTelemetrySink, TelemetrySink, telemetry_event, utc_timestamp

if TYPE_CHECKING:  # pragma: no cover
    from .config import ExecutorConfig


class StubExecutor:
    """The STUB path: a deterministic, schema-valid placeholder result. No network, ever."""

    name = EXECUTOR_STUB

    def run(self, job: Any, code: str, detail: str) -> ExecutorOutcome:
        """The stub result for `job` (any value at all), blocked with gating `code`."""
        return ExecutorOutcome(
            executor=EXECUTOR_STUB,
            outcome=OUTCOME_STUB,
            code=code,
            result=stub_result(job, code),
            attempts=0,
            model=None,
            detail=one_line(detail),
        )


def stub_result(job: Any, code: str) -> dict[str, Any]:
    """The same job and code always give the same result; fields that are not
    strings (a bad job) become empty strings so the result stays schema-valid."""
    fields = job if isinstance(job, dict) else {}
    names = ("jobId", "kind", "subject", "level", "board", "specVersion")
    text = {name: clean_text(fields.get(name)) for name in names}
    title = " ".join(part for part in (text["subject"], text["level"]) if part) or "slot"
    return {
        "jobId": text["jobId"],
        "slots": [
            {
                "slotId": "stub-1",
                "title": title,
                "content": (
                    f"Placeholder {text['kind'] or 'slot'} for {title}"
                    f" (board {text['board'] or '-'}, spec {text['specVersion'] or '-'}):"
                    f" the AI path was not taken ({code})."
                ),
            }
        ],
        "notes": f"stub: {code}",
    }


@dataclass(frozen=True, slots=True)
class Execution:
    """One job run through the runtime: the decision, the executor status, the telemetry event."""

    decision: Decision
    status: dict[str, Any]
    event: dict[str, Any]
    latency_ms: int
    failure: str | None = None  # FAILURE_*: why the OpenAI path failed (None unless FAILED)
    http_status: int | None = None

    @property
    def outcome(self) -> str:
        return self.status["outcome"]

    @property
    def code(self) -> str | None:
        return self.status["code"]


class Runtime:
    """The real runtime: gating engine, executor, telemetry (SPEC sections 1 and 4).

    `execute` never raises on a job, whatever it is: a bad job takes the STUB
    path. Latency is wall time from the decision to the executor's answer, in
    whole milliseconds rounded up (a latency bound is never met by rounding
    down; any real call reports at least 1 ms). Not counted: the one-time setup
    of the OpenAI executor (SDK import, client, schema) and the telemetry write.
    """

    def __init__(
        self,
        controls: Controls,
        allowlist: Allowlist | AllowlistUnavailable,
        executor_config: ExecutorConfig | None = None,
        telemetry: TelemetrySink | None = None,
        env: str | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.controls = controls
        self.allowlist = allowlist
        self.executor_config = executor_config
        self.telemetry: TelemetrySink = telemetry if telemetry is not None else MemoryTelemetrySink()
        self.env = env
        self.stub = StubExecutor()
        self._clock = clock
        self._openai: OpenAIExecutor | None = None  # built on first use: the SDK loads only then

    @property
    def openai(self) -> OpenAIExecutor:
        """The OpenAI executor (created, and the SDK imported, on first use)."""
        if self._openai is None:
            self._openai = OpenAIExecutor(self.executor_config)
        return self._openai

    def execute(self, job: Any) -> Execution:
        """Decide, execute on the chosen path, emit one telemetry event."""
        start = time.perf_counter()
        decision = decide(job, self.controls, self.allowlist)
        if decision.path == PATH_OPENAI:
            # One-time setup (importing the SDK takes about a second) is not the job's latency.
            paused = time.perf_counter()
            executor = self.openai
            executor.prepare()
            start += time.perf_counter() - paused
            outcome = executor.run(job)
        else:
            outcome = self.stub.run(job, decision.code or "", _deciding_detail(decision))
        latency_ms = math.ceil((time.perf_counter() - start) * 1000)
        status = executor_status(decision, outcome, latency_ms)
        ts = utc_timestamp(self._clock() if self._clock is not None else None)
        event = telemetry_event(decision, status, self.env, ts)
        self.telemetry.emit(event)
        return Execution(decision=decision, status=status, event=event, latency_ms=latency_ms,
                         failure=outcome.failure, http_status=outcome.http_status)


def executor_status(decision: Decision, outcome: ExecutorOutcome, latency_ms: int) -> dict[str, Any]:
    """The executor status document (schemas/executor-status.schema.json)."""
    return {
        "jobId": usable_job_id(decision),
        "path": decision.path,
        "outcome": outcome.outcome,
        "code": outcome.code,
        "bucket": decision.bucket,
        "executor": outcome.executor,
        "attempts": outcome.attempts,
        "latencyMs": latency_ms,
        "model": outcome.model,
        "result": outcome.result,
        "detail": outcome.detail,
    }


def usable_job_id(decision: Decision) -> str | None:
    """The jobId for records: None when missing, not a string, or not UTF-8 encodable
    (a lone surrogate would break every JSON-lines writer downstream)."""
    job_id = decision.job_id
    if job_id is None or job_id.isascii():
        return job_id
    try:
        job_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return job_id


def _deciding_detail(decision: Decision) -> str:
    try:
        return decision.gates()[decision.decided_by].detail
    except Exception:  # the detail is for humans; never let it break an execution
        return f"STUB: {decision.code}"
