"""The verification after every change (SPEC section 4; seed 000, "Verification After Each Change").

The runbook's sample jobs run through the real runtime (gating engine,
executor, telemetry) under the controls given, and six checks judge what
happened (`checks`); a failed verification names its cause (`cause`). This
module owns running the samples and the verification's report: what ran, how
the endpoint's calls were counted, and the document `run_verification`
returns. Named for its source of jobs: a verification observed in fleet
telemetry is another source, and another module, judged by the same checks.

Calls to the OpenAI endpoint are counted by the endpoint itself when it
offers a counter (the fake server answers `GET <origin>/_calls`): it is the
one observer that does not trust the executor's own account. A real endpoint
has none; then the executor's reported attempts are used and the check's
detail says so (the `OpenAIExecutor` takes no injected HTTP client, so a
client-side hook is not available).

Never raises on executor trouble: anything that goes wrong while running the
jobs becomes a failed check, because a crash here would leave a change
applied with neither a verification nor a rollback. The only exception is an
unreadable sample file (BadInput): that is the workspace's fault, not the
environment's.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from ..contract import Controls, Decision, decide
from ..runtime.allowlist_file import load_allowlist
from ..runtime.executor import Execution, Runtime
from ..runtime.outcome import OUTCOME_COMPLETED
from ..runtime.telemetry import JsonlTelemetrySink, MemoryTelemetrySink
from ..runbook.runbook import CHECK_NAMES
from ..policy.samples import decision_digest, load_sample_jobs, shadow_exposure
from ..policy.yamlfile import validation_summary
from .cause import CAUSE_CONFIGURATION, _one_line, failure_cause
from .checks import (
    COUNTER_ATTEMPTS,
    COUNTER_SERVER,
    _check_error_codes,
    _check_expected_decisions,
    _check_latency,
    _check_path_behavior,
    _check_status_schema,
    _check_telemetry,
    _Run,
    percentile95,
)

Progress = Callable[[int, int], None]

# Reading the endpoint's counter must never hold a verification up for long.
_PROBE_TIMEOUT_S = 1.5


class _TeeSink:
    """Telemetry into memory (for the checks) and appended to the environment's JSONL file.

    A failing file write is remembered, not raised: it fails telemetry-schema
    ("telemetry is emitted") instead of aborting the verification.
    """

    def __init__(self, path: Path) -> None:
        self.memory = MemoryTelemetrySink()
        self.file = JsonlTelemetrySink(path)
        self.error: str | None = None

    def emit(self, event: dict[str, Any]) -> None:
        self.memory.emit(event)
        if self.error is None:
            try:
                self.file.emit(event)
            except (OSError, ValueError) as exc:
                self.error = f"cannot append to {self.file.path}: {exc.__class__.__name__}: {exc}"

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass


def executor_config_for(env: Any) -> Any:
    """The ExecutorConfig of an environment's `openai` settings (raises pydantic's ValidationError)."""
    from ..runtime.config import ExecutorConfig

    settings = env.config.openai
    values: dict[str, Any] = {
        "model": settings.model,
        "base_url": settings.baseUrl or None,  # None: the SDK's OPENAI_BASE_URL applies
        "api_key": os.environ.get(settings.apiKeyEnv) or None,
        "timeout_s": settings.timeoutSeconds,
        "max_retries": settings.maxRetries,
    }
    if settings.promptTemplate:
        values["prompt_template"] = settings.promptTemplate
    return ExecutorConfig(**values)


def read_server_counter(base_url: str) -> int | None:
    """The endpoint's own count of completion requests (`GET <origin>/_calls`), or None if it has none."""
    try:
        parts = urlsplit(base_url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    from ..runtime.config import is_loopback_url

    # A proxy from the environment must not stand between us and a local endpoint.
    handlers = [urllib.request.ProxyHandler({})] if is_loopback_url(base_url) else []
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(f"{parts.scheme}://{parts.netloc}/_calls", headers={"Accept": "application/json"})
    try:
        with opener.open(request, timeout=_PROBE_TIMEOUT_S) as response:
            doc = json.loads(response.read(4096))
    except Exception:  # no counter there (404, not JSON, unreachable): fall back, never fail
        return None
    calls = doc.get("calls") if isinstance(doc, dict) else None
    return calls if type(calls) is int and calls >= 0 else None


def run_verification(env: Any, controls: Mapping[str, str | None], *,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Run the sample jobs through the real runtime under `controls` and judge them (SPEC section 4)."""
    start = time.perf_counter()
    runbook = env.workspace.runbook
    jobs = load_sample_jobs(runbook.sample_jobs_path)
    parsed = Controls.from_mapping(dict(controls))
    allowlist = load_allowlist(parsed.allowlist_path, base=env.workspace.root)
    decisions = [decide(job, parsed, allowlist) for job in jobs]
    shadow = shadow_exposure(jobs, dict(controls), allowlist, decisions)
    rollout = parsed.rollout
    bound = runbook.latency_bound_ms(rollout if rollout is not None else 0)
    expected_codes = Counter(d.code or OUTCOME_COMPLETED for d in decisions)
    base = {"shadowExposure": shadow, "samples": len(jobs), "expectedCodes": dict(sorted(expected_codes.items())),
            "latencyBoundMs": int(bound), "rollout": rollout, "decisionDigest": decision_digest(jobs, decisions)}
    try:
        config = executor_config_for(env)
    except ValidationError as exc:  # a bad promptTemplate, say: fail the checks, never crash mid-change
        why = (f"not run: slotgen.yaml environments.{env.name}.openai is invalid: "
               f"{' '.join(validation_summary(exc).split())}")
        checks = [{"name": name, "passed": False, "detail": why} for name in CHECK_NAMES]
        return {"passed": False, "cause": _one_line(why), "causeKind": CAUSE_CONFIGURATION, "checks": checks, **base,
                "openaiCalls": 0, "p95Ms": 0, "codes": {}, "durationMs": _ms_since(start),
                "callCounter": COUNTER_ATTEMPTS}

    run = _execute(env, parsed, allowlist, config, jobs, decisions, progress)
    statuses = [e.status if e is not None else None for e in run.executions]
    observed = Counter(_code_key(s) for s in statuses)
    latencies = [s["latencyMs"] for s in statuses if s is not None and type(s.get("latencyMs")) is int]
    p95 = percentile95(latencies)
    checks = [
        _check_status_schema(runbook, run),
        _check_telemetry(runbook, run),
        _check_path_behavior(runbook, run),
        _check_error_codes(runbook, len(jobs), observed, expected_codes),
        _check_expected_decisions(env, runbook, run, controls),
        _check_latency(runbook, run, latencies, p95, bound, rollout),
    ]
    passed = all(c["passed"] for c in checks)
    cause, kind = (None, None) if passed else failure_cause(env, config, run, checks, bound)
    return {"passed": passed, "cause": cause, "causeKind": kind, "checks": checks, **base,
            "openaiCalls": int(run.calls), "p95Ms": int(p95), "codes": dict(sorted(observed.items())),
            "durationMs": _ms_since(start), "callCounter": run.counter}


def _execute(env: Any, controls: Controls, allowlist: Any, config: Any, jobs: list[Any], decisions: list[Decision],
             progress: Progress | None) -> _Run:
    """Run every sample job once, counting endpoint calls around the whole run."""
    sink = _TeeSink(env.workspace.root / "telemetry" / f"{env.name}.jsonl")
    runtime = Runtime(controls, allowlist, config, sink, env.name)
    run = _Run(jobs=jobs, decisions=decisions, executions=[], events_per_job=[], events=sink.memory.events,
               telemetry_file=f"telemetry/{env.name}.jsonl")
    base_url = config.resolved_base_url()
    # No key: the executor sends nothing, so there is nothing to count, and no request goes to that endpoint.
    keyless = config.resolved_api_key() is None
    before = None if keyless else read_server_counter(base_url)
    total = len(jobs)
    if progress is not None:
        progress(0, total)
    try:
        for index, job in enumerate(jobs):
            emitted = len(sink.memory.events)
            try:
                execution: Execution | None = runtime.execute(job)
            except Exception as exc:  # the runtime promises never to raise; if it does, the checks fail
                execution = None
                run.crashes[index] = f"{exc.__class__.__name__}: {exc}"
            run.executions.append(execution)
            run.events_per_job.append(len(sink.memory.events) - emitted)
            if progress is not None:
                progress(index + 1, total)
    finally:
        sink.close()
    run.telemetry_error = sink.error
    after = read_server_counter(base_url) if before is not None else None
    if before is not None and after is not None:
        run.calls, run.counter = after - before, COUNTER_SERVER
        run.counter_note = "counted by the endpoint's own /_calls counter"
    else:
        run.calls = sum(e.status["attempts"] for e in run.executions if e is not None)
        run.counter = COUNTER_ATTEMPTS
        run.counter_note = ("the endpoint offers no call counter; counted the executor's reported attempts "
                            "(not an independent observer)")
        if before is not None:
            run.counter_note = "the endpoint's counter became unreadable during the run; " + run.counter_note
        elif keyless:
            run.counter_note = ("no API key, so nothing was sent to the endpoint and its counter was not asked; "
                                "counted the executor's reported attempts")
    return run


# --- helpers ---------------------------------------------------------------------------------------------------


def _code_key(status: dict[str, Any] | None) -> str:
    """How an execution counts in the code distribution: its code, or COMPLETED, or RUNTIME_ERROR."""
    if status is None:
        return "RUNTIME_ERROR"
    return status.get("code") or str(status.get("outcome"))


def _ms_since(start: float) -> int:
    return int(round((time.perf_counter() - start) * 1000))
