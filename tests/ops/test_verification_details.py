"""What each of the six checks says, word for word, and how the endpoint's calls were counted
(verification/samples.py, through the real runtime and a fake endpoint on 127.0.0.1).

The detail of a check is what the operator reads in `slotgen verify` and in the
audit trail, so a passing run in each kind of state is pinned to its text.
Latencies are measured, so only their shape is asserted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers_runbook import set_openai
from slotgen_ops.contract import GATES, Controls, Decision, decide
from slotgen_ops.policy.authority import Actor
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.verification import checks as v
from slotgen_ops.verification.samples import run_verification
from slotgen_ops.runtime.executor import Execution
from slotgen_ops.runtime.schemas import schema_errors
from slotgen_ops.workspace import Workspace
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

ALLOWLIST = "allowlists/slot-generation-allowlist.v1.json"
EXPECTATIONS = "runbooks/sample-expectations.json"
SERVER_NOTE = "server counter: counted by the endpoint's own /_calls counter"


def controls(kill: str = "true", rollout: str = "1") -> dict[str, str | None]:
    return {"SLOTGEN_AI_KILL": kill, "FEATURE_SLOTGEN_AI": "true", "SLOTGEN_AI_ROLLOUT_PERCENT": rollout,
            "SLOTGEN_AI_ALLOWLIST_PATH": ALLOWLIST}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(mode="ok", delay_s=0.2) as fake:
        yield fake


@pytest.fixture
def root(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    path = tmp_path / "ws"
    init_workspace(path, Actor(claimed="owner", operator=None))
    set_openai(path, baseUrl=server.base_url)
    return path


def verify(root: Path, values: dict[str, str | None], **kw: Any) -> tuple[dict[str, Any], dict[str, str]]:
    report = run_verification(Workspace(root).environment("staging"), values, **kw)
    return report, {c["name"]: c["detail"] for c in report["checks"]}


def test_a_blocked_state_in_words(root: Path) -> None:
    report, detail = verify(root, controls())
    assert report["passed"] is True
    assert detail["executor-status-schema"] == "60 of 60 executor statuses valid"
    assert detail["telemetry-schema"] == ("60 events for 60 jobs, one each, all valid; appended to "
                                          "telemetry/staging.jsonl")
    assert detail["path-behavior"] == ("blocked state: 0 OpenAI calls expected, 0 received; all 60 jobs took the "
                                       f"stub path with their gating code ({SERVER_NOTE})")
    assert detail["error-codes"] == "as expected for this state: KILL_SWITCH×60"
    assert detail["expected-decisions"] == (f"60 of 60 job(s) took the path and code {EXPECTATIONS} gives for "
                                            "kill-switch-engaged; buckets agree")
    assert re.fullmatch(r"p95 \d+ ms over 60 executions: within the 3000 ms bound for rollout 1",
                        detail["latency"]), detail["latency"]
    assert (report["callCounter"], report["openaiCalls"], report["rollout"], report["latencyBoundMs"]) == (
        "server", 0, 1, 3000)
    assert report["codes"] == report["expectedCodes"] == {"KILL_SWITCH": 60}
    assert type(report["durationMs"]) is int and report["durationMs"] >= 0
    assert type(report["p95Ms"]) is int


def test_a_live_canary_in_words(root: Path, server: FakeOpenAIServer) -> None:
    report, detail = verify(root, controls(kill="false"))
    assert report["passed"] is True and server.calls == 2
    assert detail["path-behavior"] == (
        "2 job(s) on the OpenAI path, exactly those whose gates all pass; 58 on the stub path with no AI call; the "
        f"endpoint received 2 call(s) = 2 attempt(s) ({SERVER_NOTE})")
    assert detail["error-codes"] == ("as expected for this state: COMPLETED×2, NOT_ALLOWLISTED×35, "
                                     "ROLLOUT_EXCLUDED×23")
    assert re.fullmatch(r"p95 \d+ ms over 60 executions; OpenAI path: p95 (\d+) ms, max \1 ms over 2: within the "
                        r"3000 ms bound for rollout 1", detail["latency"]), detail["latency"]
    assert report["codes"] == {"COMPLETED": 2, "NOT_ALLOWLISTED": 35, "ROLLOUT_EXCLUDED": 23}
    assert report["openaiCalls"] == 2 and report["cause"] is None and report["causeKind"] is None
    again, _ = verify(root, controls(kill="false"))  # the counter now starts at 2: only this run's calls count
    assert again["passed"] is True and again["openaiCalls"] == 2 and server.calls == 4


def test_a_runtime_that_raises_fails_closed_and_names_the_job(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_decide = decide

    def raising(job: Any, parsed: Controls, allowlist: Any) -> Decision:
        if job.get("jobId") in ("sample-0026", "sample-0054"):
            raise RuntimeError(f"boom {job['jobId']}")
        return real_decide(job, parsed, allowlist)

    monkeypatch.setattr("slotgen_ops.runtime.executor.decide", raising)
    report, detail = verify(root, controls())
    assert report["passed"] is False
    assert (report["cause"], report["causeKind"]) == (
        "the runtime raised on 2 job(s) (first, sample-0026: RuntimeError: boom sample-0026)", "runtime")
    assert detail["executor-status-schema"].startswith(
        "2 of 60 executor statuses invalid: sample-0026: no status, the runtime raised RuntimeError: boom sample-0026; "
        "sample-0054: no status, the runtime raised RuntimeError: boom sample-0054; cause: ")
    assert report["codes"]["RUNTIME_ERROR"] == 2
    assert {c["name"]: c["passed"] for c in report["checks"] if c["passed"] is not True} == {
        "executor-status-schema": False, "telemetry-schema": False, "path-behavior": False, "error-codes": False,
        "expected-decisions": False, "latency": False}
    assert detail["path-behavior"].startswith(
        "sample-0026: the runtime raised RuntimeError: boom sample-0026; sample-0054: the runtime raised RuntimeError: "
        "boom sample-0054 (server counter: ")
    assert detail["telemetry-schema"].startswith(
        "telemetry not as required: 58 events for 60 jobs; sample-0026: 0 events; sample-0054: 0 events; cause: ")


def test_an_invalid_rollout_in_words(root: Path) -> None:
    report, detail = verify(root, controls(kill="false", rollout="x"))
    assert report["passed"] is True and report["rollout"] is None and report["latencyBoundMs"] == 2000
    assert detail["expected-decisions"] == (
        f"not covered: the controls in force match none of its states in {EXPECTATIONS}; the buckets of 60 listed "
        "job(s) agree with it (decide() and the runtime)")
    assert re.fullmatch(r"p95 \d+ ms over 60 executions: within the 2000 ms bound for an invalid rollout \(bound of "
                        r"level 0\)", detail["latency"]), detail["latency"]


def test_progress_counts_from_zero_to_every_job(root: Path) -> None:
    seen: list[tuple[int, int]] = []
    verify(root, controls(), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 60) for i in range(61)]


def test_an_endpoint_without_a_counter_is_counted_by_attempts(root: Path) -> None:
    set_openai(root, baseUrl="http://127.0.0.1:9/v1", maxRetries=0)
    report, detail = verify(root, controls())
    assert report["callCounter"] == "attempts"
    assert detail["path-behavior"].endswith(
        "(attempts counter: the endpoint offers no call counter; counted the executor's reported attempts (not an "
        "independent observer))")


def test_without_a_key_nothing_is_sent_and_the_counter_is_not_asked(root: Path) -> None:
    set_openai(root, baseUrl="https://api.example.invalid/v1")
    report, detail = verify(root, controls())
    assert report["callCounter"] == "attempts" and report["openaiCalls"] == 0
    assert detail["path-behavior"].endswith(
        "(attempts counter: no API key, so nothing was sent to the endpoint and its counter was not asked; counted "
        "the executor's reported attempts)")


def test_a_counter_that_goes_away_during_the_run_is_said(root: Path, server: FakeOpenAIServer) -> None:
    def stop_at_the_end(done: int, total: int) -> None:
        if done == total:
            server.stop()

    report, detail = verify(root, controls(), progress=stop_at_the_end)
    assert report["callCounter"] == "attempts"
    assert detail["path-behavior"].endswith(
        "(attempts counter: the endpoint's counter became unreadable during the run; the endpoint offers no call "
        "counter; counted the executor's reported attempts (not an independent observer))")


def test_exactly_the_minimum_number_of_samples_is_enough(root: Path) -> None:
    runbook = root / "runbooks" / "beta-enable.yaml"
    doc = yaml.safe_load(runbook.read_text(encoding="utf-8"))
    doc["verification"]["minSamples"].update({"latency": 60, "error-codes": 60})
    runbook.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    report, detail = verify(root, controls())
    assert report["passed"] is True
    assert detail["error-codes"] == "as expected for this state: KILL_SWITCH×60"


# -- the schema checks, fed statuses and events the runtime would never produce ------------------------------


def test_an_invalid_status_is_named_with_its_first_schema_error(root: Path) -> None:
    runbook = Workspace(root).runbook
    good = {"jobId": "job-0"}
    bad_status = {"jobId": "job-1", "path": "nowhere"}
    run = v._Run(jobs=[{"jobId": "job-0"}, {"jobId": "job-1"}, {}], decisions=[], events_per_job=[], events=[],
                 executions=[Execution(None, good, {}, 1), Execution(None, bad_status, {}, 1), None],  # type: ignore[arg-type]
                 crashes={2: "KeyError: 'x'"})
    errors = [schema_errors("executor-status", good), schema_errors("executor-status", bad_status)]
    assert errors[0] and errors[1]
    check = v._check_status_schema(runbook, run)
    assert check["name"] == "executor-status-schema" and check["passed"] is False
    assert check["detail"].endswith(
        f"3 of 3 executor statuses invalid: job-0: {errors[0][0]}; job-1: {errors[1][0]}; sample #3: no status, the "
        "runtime raised KeyError: 'x'")


def test_invalid_events_are_named_by_position_and_job(root: Path) -> None:
    runbook = Workspace(root).runbook
    events = [{"jobId": "job-0"}, ["not", "an", "event"]]
    errors = [schema_errors("telemetry-event", e) for e in events]
    mismatched = Execution(None, {"jobId": "job-1"}, {"jobId": "job-9"}, 1)  # type: ignore[arg-type]
    run = v._Run(jobs=[{"jobId": "job-0"}, {"jobId": "job-1"}, {"jobId": "job-2"}], decisions=[],
                 executions=[None, mismatched, None], events_per_job=[1, 1, 0], events=events,
                 telemetry_error="cannot append to t.jsonl: OSError: full")
    check = v._check_telemetry(runbook, run)
    assert check["name"] == "telemetry-schema" and check["passed"] is False
    assert check["detail"].endswith(
        "telemetry not as required: cannot append to t.jsonl: OSError: full; 2 events for 3 jobs; job-2: 0 events; "
        "and 3 more")
    run.telemetry_error = None
    run.events_per_job = [1, 1, 1]
    run.events = [*events, {"jobId": "job-2"}][:3]
    errors.append(schema_errors("telemetry-event", run.events[2]))
    assert v._check_telemetry(runbook, run)["detail"].endswith(
        f"telemetry not as required: event 1 (job-0): {errors[0][0]}; event 2 (?): {errors[1][0]}; "
        f"event 3 (job-2): {errors[2][0]}; and 1 more")
    run.events = []
    run.events_per_job = [0, 0, 0]
    assert v._check_telemetry(runbook, run)["detail"].endswith(
        "telemetry not as required: 0 events for 3 jobs; job-0: 0 events; job-1: 0 events; and 2 more")
    run.executions = [None, None, mismatched]
    run.events_per_job = [1, 1, 1]
    run.events = []
    assert v._check_telemetry(runbook, run)["detail"].endswith(
        "telemetry not as required: 0 events for 3 jobs; job-2: the event's jobId differs from the status's")


def test_a_wrong_path_and_a_telemetry_disagreement_are_named(root: Path) -> None:
    runbook = Workspace(root).runbook
    on_openai = Decision(None, None, None, len(GATES))  # type: ignore[arg-type]
    statuses = [
        ({"path": "stub", "outcome": "STUB", "code": "KILL_SWITCH", "attempts": 0}, {"path": "openai"}),
        ({"path": "openai", "outcome": "STUB", "code": None, "attempts": "2"}, {"path": "openai"}),
        ({"path": "openai", "outcome": "COMPLETED", "code": None, "attempts": 1}, {"path": "openai"}),
    ]
    run = v._Run(jobs=[{"jobId": f"job-{i}"} for i in range(3)], decisions=[on_openai] * 3,
                 executions=[Execution(on_openai, s, e, 1) for s, e in statuses], events_per_job=[1, 1, 1],
                 events=[], calls=1, counter="attempts", counter_note="as reported")
    check = v._check_path_behavior(runbook, run)
    assert check["name"] == "path-behavior" and check["passed"] is False
    assert check["detail"].endswith(
        "job-0: every gate passes, expected the OpenAI path, got stub/STUB/KILL_SWITCH after 0 attempt(s); job-0: "
        "telemetry says path openai, the status stub; job-1: every gate passes, expected the OpenAI path, got "
        "openai/STUB/None after 2 attempt(s) (attempts counter: as reported)")
