"""The six checks of a verification, and the run they judge (SPEC section 4; seed 000).

Owns `_Run`, everything one pass over the jobs produced (the decisions, the
executions, the telemetry, the endpoint's call count), and the checks that
judge it: executor-status-schema, telemetry-schema, path-behavior,
error-codes, expected-decisions and latency. What is *expected* is never
hand-written: it is `contract.decide` run over the same jobs, so the checks
stay right for every state the runbook can reach; and, so that the runtime is
not judged only by the code it runs, `expected-decisions` holds it to the
independent expectations of `runbooks/sample-expectations.json` (see
`runbook.expectations`).

Kept apart from how the jobs are run (`samples` runs the runbook's sample
jobs through the real runtime), so that runs from another source, such as a
verification observed in fleet telemetry, can be judged by the same checks.
A check never raises: what it finds wrong is in its detail.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..contract import PATH_OPENAI, PATH_STUB, Decision
from ..runtime.executor import Execution
from ..runtime.openai_executor import OPENAI_CODES
from ..runtime.outcome import OUTCOME_COMPLETED, OUTCOME_FAILED, OUTCOME_STUB
from ..runtime.schemas import schema_errors
from ..runbook.expectations import ExpectationsUnreadable, load_expectations, job_sha256
from ..policy.samples import job_label

# How many offending jobs a check's detail names before summarising.
_MAX_NAMED = 3

COUNTER_SERVER = "server"
COUNTER_CLIENT = "client"  # reserved: an httpx hook, once the executor accepts an http client
COUNTER_ATTEMPTS = "attempts"


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


# --- helpers ---------------------------------------------------------------------------------------------------


def percentile95(values: list[int]) -> int:
    """The 95th percentile by nearest rank (a value that was observed, never interpolated); 0 for none."""
    if not values:
        return 0
    ordered = sorted(values)
    return int(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])


def _fmt_codes(codes: Mapping[str, int]) -> str:
    return ", ".join(f"{code}×{count}" for code, count in sorted(codes.items())) or "none"


def _named(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_NAMED])
    return shown + (f"; and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")
