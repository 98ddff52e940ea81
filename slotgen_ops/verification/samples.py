"""The verification after every change (SPEC section 4; seed 000, "Verification After Each Change").

The runbook's sample jobs run through the real runtime (gating engine,
executor, telemetry) under the controls given, and six checks judge what
happened. What is *expected* is never hand-written: it is `contract.decide`
run over the same samples, so the checks stay right for every state the
runbook can reach; and, so that the runtime is not judged only by the code it
runs, `expected-decisions` holds it to the independent expectations of
`runbooks/sample-expectations.json` (see `expectations`).

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

A failed verification names its `cause`: one line an operator can act on
("no OpenAI API key: set OPENAI_API_KEY ...", "nothing listens at
http://127.0.0.1:9/v1 (connection refused) ...", "model behaviour: 2 of 2
answers are not JSON"), and `causeKind`: `configuration` (no key, no endpoint,
refused, DNS, timeout, a key or address the endpoint rejects), `endpoint`
(it failed or was slow), `model` (what the model answered) or `runtime`
(slotgen's own side). Each failing check's detail ends with the cause too.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from ..contract import PATH_OPENAI, PATH_STUB, Controls, Decision, decide
from ..runtime.allowlist_file import load_allowlist
from ..runtime import openai_executor as ex
from ..runtime.executor import Execution, Runtime
from ..runtime.openai_executor import OPENAI_CODES
from ..runtime.outcome import OUTCOME_COMPLETED, OUTCOME_FAILED, OUTCOME_STUB
from ..runtime.schemas import schema_errors
from ..runtime.telemetry import JsonlTelemetrySink, MemoryTelemetrySink
from ..runbook.expectations import ExpectationsUnreadable, load_expectations, job_sha256
from ..runbook.runbook import CHECK_NAMES
from ..policy.samples import decision_digest, job_label, load_sample_jobs, shadow_exposure
from ..policy.yamlfile import validation_summary

Progress = Callable[[int, int], None]

# Reading the endpoint's counter must never hold a verification up for long.
_PROBE_TIMEOUT_S = 1.5
# How many offending jobs a check's detail names before summarising.
_MAX_NAMED = 3

COUNTER_SERVER = "server"
COUNTER_CLIENT = "client"  # reserved: an httpx hook, once the executor accepts an http client
COUNTER_ATTEMPTS = "attempts"

CAUSE_CONFIGURATION = "configuration"
CAUSE_ENDPOINT = "endpoint"
CAUSE_MODEL = "model"
CAUSE_RUNTIME = "runtime"
# A cause is one line; a model's or endpoint's own words in it are cut short.
_MAX_CAUSE = 400
_MAX_QUOTED = 120


@dataclass
class _Run:
    """Everything one pass over the samples produced, for the checks to judge."""

    jobs: list[Any]
    decisions: list[Decision]            # what the gates say, computed independently of the runtime
    executions: list[Execution | None]   # None: the runtime raised on that job
    events_per_job: list[int]
    events: list[dict[str, Any]]
    telemetry_file: str = ""
    crashes: dict[int, str] = field(default_factory=dict)
    telemetry_error: str | None = None
    calls: int = 0
    counter: str = COUNTER_ATTEMPTS
    counter_note: str = ""


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


# --- the six checks -------------------------------------------------------------------------------------------


def _check(name: str, passed: bool, detail: str, runbook: Any, samples: int) -> dict[str, Any]:
    """A check's record; fewer samples than the runbook's minimum fails it, whatever else it saw."""
    minimum = runbook.min_samples(name)
    if samples < minimum:
        return {"name": name, "passed": False,
                "detail": f"too few samples: {samples}, the runbook requires at least {minimum} for {name}; {detail}"}
    return {"name": name, "passed": passed, "detail": detail}


def _check_status_schema(runbook: Any, run: _Run) -> dict[str, Any]:
    bad = []
    for index, execution in enumerate(run.executions):
        if execution is None:
            bad.append(f"{job_label(run.jobs[index], index)}: no status, the runtime raised {run.crashes[index]}")
            continue
        errors = schema_errors("executor-status", execution.status)
        if errors:
            bad.append(f"{job_label(run.jobs[index], index)}: {errors[0]}")
    n = len(run.executions)
    if bad:
        return _check("executor-status-schema", False, f"{len(bad)} of {n} executor statuses invalid: {_named(bad)}",
                      runbook, n)
    return _check("executor-status-schema", True, f"{n} of {n} executor statuses valid", runbook, n)


def _check_telemetry(runbook: Any, run: _Run) -> dict[str, Any]:
    n = len(run.jobs)
    bad = []
    for index, count in enumerate(run.events_per_job):
        if count != 1:
            bad.append(f"{job_label(run.jobs[index], index)}: {count} events")
    for index, event in enumerate(run.events):
        errors = schema_errors("telemetry-event", event)
        if errors:
            bad.append(f"event {index + 1} ({event.get('jobId') if isinstance(event, dict) else '?'}): {errors[0]}")
    for index, execution in enumerate(run.executions):
        if execution is not None and execution.event.get("jobId") != execution.status.get("jobId"):
            bad.append(f"{job_label(run.jobs[index], index)}: the event's jobId differs from the status's")
    if len(run.events) != n:
        bad.insert(0, f"{len(run.events)} events for {n} jobs")
    if run.telemetry_error:
        bad.insert(0, run.telemetry_error)
    if bad:
        return _check("telemetry-schema", False, f"telemetry not as required: {_named(bad)}", runbook, n)
    return _check("telemetry-schema", True, f"{n} events for {n} jobs, one each, all valid; appended to "
                  f"{run.telemetry_file}", runbook, n)


def _check_path_behavior(runbook: Any, run: _Run) -> dict[str, Any]:
    n = len(run.jobs)
    bad = []
    openai_jobs = 0
    openai_attempts = 0
    for index, (decision, execution) in enumerate(zip(run.decisions, run.executions)):
        label = job_label(run.jobs[index], index)
        if execution is None:
            bad.append(f"{label}: the runtime raised {run.crashes[index]}")
            continue
        st = execution.status
        got = f"{st['path']}/{st['outcome']}/{st['code']} after {st['attempts']} attempt(s)"
        if decision.path == PATH_STUB:
            if (st["path"], st["outcome"], st["code"], st["attempts"]) != (PATH_STUB, OUTCOME_STUB, decision.code, 0):
                bad.append(f"{label}: blocked by {decision.code}, expected stub with no AI call, got {got}")
        else:
            openai_jobs += 1
            openai_attempts += st["attempts"] if type(st["attempts"]) is int else 0
            if st["path"] != PATH_OPENAI or st["outcome"] not in (OUTCOME_COMPLETED, OUTCOME_FAILED):
                bad.append(f"{label}: every gate passes, expected the OpenAI path, got {got}")
        if execution.event.get("path") != st["path"]:
            bad.append(f"{label}: telemetry says path {execution.event.get('path')}, the status {st['path']}")
    source = f"{run.counter} counter: {run.counter_note}"
    if run.calls != openai_attempts:
        bad.append(f"the endpoint received {run.calls} call(s), expected {openai_attempts} "
                   f"(the attempts of the {openai_jobs} job(s) on the OpenAI path)")
    if bad:
        return _check("path-behavior", False, f"{_named(bad)} ({source})", runbook, n)
    stubs = n - openai_jobs
    if openai_jobs == 0:
        detail = (f"blocked state: 0 OpenAI calls expected, {run.calls} received; all {stubs} jobs took the stub "
                  f"path with their gating code ({source})")
    else:
        detail = (f"{openai_jobs} job(s) on the OpenAI path, exactly those whose gates all pass; {stubs} on the stub "
                  f"path with no AI call; the endpoint received {run.calls} call(s) = {openai_attempts} attempt(s) "
                  f"({source})")
    return _check("path-behavior", True, detail, runbook, n)


def _check_error_codes(runbook: Any, samples: int, observed: Counter[str], expected: Counter[str]) -> dict[str, Any]:
    failures = Counter({code: count for code, count in observed.items() if code in OPENAI_CODES})
    if observed == expected:
        return _check("error-codes", True, f"as expected for this state: {_fmt_codes(expected)}", runbook, samples)
    parts = []
    if failures:
        parts.append(f"OpenAI path failures: {_fmt_codes(failures)}")
    unexpected = observed - expected - failures
    if unexpected:
        parts.append(f"unexpected: {_fmt_codes(unexpected)}")
    missing = expected - observed
    if missing:
        parts.append(f"missing: {_fmt_codes(missing)}")
    detail = "; ".join(parts) + f" (expected {_fmt_codes(expected)}, observed {_fmt_codes(observed)})"
    return _check("error-codes", False, detail, runbook, samples)


def _check_expected_decisions(env: Any, runbook: Any, run: _Run, controls: Mapping[str, str | None]) -> dict[str, Any]:
    """The runtime's path and code for each sample job against the independent expectations for the controls in
    force; in a state they do not cover, the buckets alone (decide()'s and the runtime's)."""
    name, n = "expected-decisions", len(run.jobs)
    root = env.workspace.root
    try:
        expectations = load_expectations(runbook.sample_jobs_path, root)
    except ExpectationsUnreadable as exc:
        return _check(name, False, str(exc), runbook, n)
    state, why = expectations.state_in_force(controls, root)
    bad: list[str] = []
    unknown: list[str] = []
    changed: list[str] = []
    covered = 0
    for index, (job, decision, execution) in enumerate(zip(run.jobs, run.decisions, run.executions)):
        label = job_label(job, index)
        known = expectations.jobs.get(job.get("jobId")) if isinstance(job, dict) else None
        if known is None:
            unknown.append(label)
            continue
        status = execution.status if execution is not None else None
        if decision.bucket != known.bucket:
            bad.append(f"{label}: decide() puts it in bucket {decision.bucket}, the expectations in {known.bucket}")
        if status is not None and status.get("bucket") != known.bucket:
            bad.append(f"{label}: the runtime reports bucket {status.get('bucket')}, the expectations "
                       f"{known.bucket}")
        if job_sha256(job) != known.sha256:
            changed.append(label)
            continue
        if state is None:
            continue
        path, code = known.expected[state]
        want = f"{path}/{code}" if code else path
        if status is None:
            bad.append(f"{label}: expected {want}, the runtime raised {run.crashes.get(index)}")
            continue
        if path == PATH_OPENAI:
            # The OpenAI path taken; how the call went (COMPLETED or an OPENAI_* failure) is error-codes' to judge.
            agrees = status.get("path") == PATH_OPENAI and status.get("code") in (None, *OPENAI_CODES)
        else:
            agrees = (status.get("path"), status.get("code")) == (path, code)
        if agrees:
            covered += 1
        else:
            bad.append(f"{label}: expected {want}, the runtime took {status.get('path')}/{status.get('code')}")
    source = expectations.source
    notes = []
    if changed:
        notes.append(f"{len(changed)} job(s) differ from the ones it was computed for ({_named(changed)})")
    if unknown:
        notes.append(f"{len(unknown)} job(s) it does not list ({_named(unknown)}); regenerate it with "
                     "runbooks/gen_sample_expectations.py")
    tail = f"; not covered: {'; '.join(notes)}" if notes else ""
    where = f"state {state}" if state is not None else f"no covered state ({why})"
    if bad:
        return _check(name, False, f"disagrees with {source} under {where}: {_named(bad)}{tail}", runbook, n)
    listed = n - len(unknown)
    if state is None:
        detail = (f"not covered: {why} in {source}; the buckets of {listed} listed job(s) agree with it "
                  f"(decide() and the runtime){tail}")
    else:
        detail = (f"{covered} of {n} job(s) took the path and code {source} gives for {state}; buckets agree{tail}")
    return _check(name, True, detail, runbook, n)


def _check_latency(runbook: Any, run: _Run, latencies: list[int], p95: int, bound: int,
                   rollout: int | None) -> dict[str, Any]:
    level = f"rollout {rollout}" if rollout is not None else "an invalid rollout (bound of level 0)"
    openai = [e.status["latencyMs"] for d, e in zip(run.decisions, run.executions)
              if e is not None and d.path == PATH_OPENAI]
    # Judged on both: over every execution (the plan's wording), and on the OpenAI path alone, because
    # at a 1% canary the few OpenAI executions cannot move the overall p95 and a slow endpoint would pass.
    openai_p95 = percentile95(openai)
    within = p95 <= bound and openai_p95 <= bound
    extra = f"; OpenAI path: p95 {openai_p95} ms, max {max(openai)} ms over {len(openai)}" if openai else ""
    verdict = "within" if within else "OVER"
    detail = f"p95 {p95} ms over {len(latencies)} executions{extra}: {verdict} the {bound} ms bound for {level}"
    unmeasured = len(run.jobs) - len(latencies)
    if unmeasured:
        detail += f"; {unmeasured} execution(s) not measured (the runtime raised)"
    return _check("latency", within and not unmeasured, detail, runbook, len(latencies))


# --- the cause of a failure -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """Where the OpenAI path was pointed, and which setting pointed it there (so the operator knows what to change)."""

    env: str
    url: str            # as shown: no credentials, no query
    source: str         # "from OPENAI_BASE_URL", ...
    configured: bool    # False: neither baseUrl nor OPENAI_BASE_URL, the SDK's default endpoint
    loopback: bool
    port: int | None
    key_hint: str       # which variable to set for a key
    timeout_s: float
    model: str


def _target(env: Any, config: Any) -> _Target:
    from ..runtime.config import is_loopback_url

    settings = env.config.openai
    url = config.resolved_base_url()
    if config.base_url:
        source, configured = f"from environments.{env.name}.openai.baseUrl in slotgen.yaml", True
    elif os.environ.get("OPENAI_BASE_URL"):
        source, configured = "from OPENAI_BASE_URL", True
    else:
        source, configured = "the SDK's default: neither OPENAI_BASE_URL nor a baseUrl in slotgen.yaml is set", False
    key_env = settings.apiKeyEnv
    key_hint = (key_env if key_env == "OPENAI_API_KEY"
                else f"{key_env} (environments.{env.name}.openai.apiKeyEnv) or OPENAI_API_KEY")
    try:
        port = urlsplit(url).port
    except ValueError:
        port = None
    return _Target(env=env.name, url=shown_url(url), source=source, configured=configured,
                   loopback=is_loopback_url(url), port=port, key_hint=key_hint, timeout_s=float(config.timeout_s),
                   model=config.model)


def shown_url(url: str) -> str:
    """scheme://host[:port]/path of an endpoint URL: never its credentials or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid endpoint URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def failure_cause(env: Any, config: Any, run: _Run, checks: list[dict[str, Any]],
                  bound: int) -> tuple[str, str]:
    """(cause, kind) of a failed verification, and each failing check's detail told the cause."""
    cause, kind, own = _cause(_target(env, config), run, checks, bound)
    cause = _one_line(cause)
    for check in checks:
        if not check["passed"] and check["name"] != own:
            check["detail"] = f"{check['detail']}; cause: {cause}"
    return cause, kind


def _cause(target: _Target, run: _Run, checks: list[dict[str, Any]], bound: int) -> tuple[str, str, str | None]:
    """(cause, kind, the check it was taken from or None): the OpenAI path's failures first, the commonest one
    named; then what only the runtime can get wrong; then the first failing check's own words."""
    failed = [(e, d) for e, d in zip(run.executions, run.decisions)
              if e is not None and d.path == PATH_OPENAI and e.status.get("outcome") == OUTCOME_FAILED]
    if failed:
        on_openai = sum(1 for d in run.decisions if d.path == PATH_OPENAI)
        kinds = Counter(e.failure or ex.FAILURE_SDK for e, _ in failed)
        top = kinds.most_common(1)[0][0]
        first = next(e for e, _ in failed if (e.failure or ex.FAILURE_SDK) == top)
        count = kinds[top]
        cause, kind = _failure_words(target, top, first, count, on_openai)
        others = [f"{_FAILURE_NAMES.get(k, k)}×{n}" for k, n in sorted(kinds.items()) if k != top]
        if others:
            cause += f" (also: {', '.join(others)})"
        return cause, kind, None
    if run.crashes:
        index = min(run.crashes)
        return (f"the runtime raised on {len(run.crashes)} job(s) (first, "
                f"{job_label(run.jobs[index], index)}: {_quoted(run.crashes[index])})", CAUSE_RUNTIME, None)
    if run.telemetry_error:
        return f"telemetry could not be written: {run.telemetry_error}", CAUSE_RUNTIME, None
    by_name = {c["name"]: c for c in checks}
    latency = by_name.get("latency")
    if latency is not None and not latency["passed"] and all(c["passed"] for c in checks if c["name"] != "latency"):
        slow = [e.status["latencyMs"] for e, d in zip(run.executions, run.decisions)
                if e is not None and d.path == PATH_OPENAI]
        if slow and percentile95(slow) > bound:
            return (f"the endpoint is too slow: p95 {percentile95(slow)} ms on the OpenAI path, over the {bound} ms "
                    f"bound ({target.url}, {target.source})", CAUSE_ENDPOINT, None)
    first = next(c for c in checks if not c["passed"])
    return f"{first['name']}: {first['detail']}", CAUSE_RUNTIME, first["name"]


_FAILURE_NAMES = {
    ex.FAILURE_NO_API_KEY: "no API key", ex.FAILURE_REFUSED: "connection refused", ex.FAILURE_DNS: "DNS",
    ex.FAILURE_CONNECTION: "connection failed", ex.FAILURE_TIMEOUT: "timeout", ex.FAILURE_HTTP: "HTTP error",
    ex.FAILURE_NO_CONTENT: "no content", ex.FAILURE_MODEL_REFUSAL: "model refused", ex.FAILURE_NON_JSON: "not JSON",
    ex.FAILURE_SCHEMA_INVALID: "schema invalid", ex.FAILURE_SDK: "SDK error",
}


def _failure_words(t: _Target, failure: str, first: Execution, count: int, of: int) -> tuple[str, str]:
    """One line for the commonest failure of the OpenAI path, and whether it is configuration or the model."""
    detail = _quoted(str(first.status.get("detail") or ""))
    share = f"{count} of {of} job(s) on the OpenAI path"
    rehearse = ("" if t.configured else "; to rehearse without it, start a local endpoint with `slotgen endpoint "
                "serve` and set the OPENAI_BASE_URL and OPENAI_API_KEY it prints")
    if failure == ex.FAILURE_NO_API_KEY:
        if not t.configured:
            return (f"no OpenAI API key: set {t.key_hint}; no endpoint is configured either, so the OpenAI path "
                    f"went to {t.url}; to rehearse, start a local one with `slotgen endpoint serve` and set the "
                    "OPENAI_BASE_URL and OPENAI_API_KEY it prints", CAUSE_CONFIGURATION)
        return f"no OpenAI API key for {t.url} ({t.source}): set {t.key_hint}", CAUSE_CONFIGURATION
    if failure == ex.FAILURE_REFUSED:
        if t.loopback:
            port = f" --port {t.port}" if t.port else ""
            return (f"nothing listens at {t.url} (connection refused; {t.source}): start one with "
                    f"`slotgen endpoint serve{port}`", CAUSE_CONFIGURATION)
        return (f"nothing listens at {t.url} (connection refused; {t.source}): is the endpoint up, and is that "
                f"its address?{rehearse}", CAUSE_CONFIGURATION)
    if failure == ex.FAILURE_DNS:
        host = urlsplit(t.url).hostname or t.url
        return (f"the host {host} of {t.url} does not resolve (DNS; {t.source}): check the address{rehearse}",
                CAUSE_CONFIGURATION)
    if failure == ex.FAILURE_CONNECTION:
        return f"cannot connect to {t.url} ({t.source}): {detail}{rehearse}", CAUSE_CONFIGURATION
    if failure == ex.FAILURE_TIMEOUT:
        return (f"{t.url} did not answer within {t.timeout_s:g}s ({share}; environments.{t.env}.openai."
                f"timeoutSeconds): the endpoint is down, hung or overloaded{rehearse}", CAUSE_CONFIGURATION)
    if failure == ex.FAILURE_HTTP:
        return _http_words(t, first.http_status, detail, share)
    if failure == ex.FAILURE_NON_JSON:
        return f"model behaviour: {share} got an answer from {t.model} that is not JSON ({detail})", CAUSE_MODEL
    if failure == ex.FAILURE_SCHEMA_INVALID:
        return (f"model behaviour: {share} got an answer from {t.model} that breaks the result schema ({detail})",
                CAUSE_MODEL)
    if failure == ex.FAILURE_MODEL_REFUSAL:
        return f"model behaviour: {t.model} refused {share} ({detail})", CAUSE_MODEL
    if failure == ex.FAILURE_NO_CONTENT:
        return f"model behaviour: {t.model} answered {share} with no message content", CAUSE_MODEL
    return f"the OpenAI SDK failed on {share}: {detail}", CAUSE_RUNTIME


def _http_words(t: _Target, status: int | None, detail: str, share: str) -> tuple[str, str]:
    if status == 401:
        return (f"the endpoint answered HTTP 401 (unauthorized): {t.url} refused the API key; check {t.key_hint}",
                CAUSE_CONFIGURATION)
    if status == 403:
        return (f"the endpoint answered HTTP 403 (forbidden): the API key may not use {t.model} at {t.url}; check "
                f"{t.key_hint} and environments.{t.env}.openai.model", CAUSE_CONFIGURATION)
    if status == 404:
        return (f"the endpoint answered HTTP 404 (not found): is {t.url} ({t.source}) the API's base URL, usually "
                f"ending in /v1, and {t.model} a model it serves?", CAUSE_CONFIGURATION)
    if status == 429:
        return f"the endpoint answered HTTP 429 (rate limit or quota) for {share} at {t.url}", CAUSE_ENDPOINT
    if status is not None and status >= 500:
        return f"the endpoint answered HTTP {status} (a server error at {t.url}) for {share}", CAUSE_ENDPOINT
    shown = f"HTTP {status}" if status is not None else "an HTTP error"
    return f"the endpoint answered {shown} for {share}: {detail}", CAUSE_ENDPOINT


def _quoted(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_QUOTED else line[: _MAX_QUOTED - 1] + "…"


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_CAUSE else line[: _MAX_CAUSE - 1] + "…"


# --- helpers ---------------------------------------------------------------------------------------------------


def percentile95(values: list[int]) -> int:
    """The 95th percentile by nearest rank (a value that was observed, never interpolated); 0 for none."""
    if not values:
        return 0
    ordered = sorted(values)
    return int(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])


def _code_key(status: dict[str, Any] | None) -> str:
    """How an execution counts in the code distribution: its code, or COMPLETED, or RUNTIME_ERROR."""
    if status is None:
        return "RUNTIME_ERROR"
    return status.get("code") or str(status.get("outcome"))


def _fmt_codes(codes: Mapping[str, int]) -> str:
    return ", ".join(f"{code}×{count}" for code, count in sorted(codes.items())) or "none"


def _named(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_NAMED])
    return shown + (f"; and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")


def _ms_since(start: float) -> int:
    return int(round((time.perf_counter() - start) * 1000))
