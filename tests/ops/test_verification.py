"""The verification after every change (SPEC section 4), against the real runtime.

Real files in tmp_path (a workspace from `slotgen init`), a real fake OpenAI
endpoint on 127.0.0.1. Every check is driven to pass and to fail. Expected
numbers come from the published sample set (runbooks/README.md): rollout 1
sends sample-0026 and sample-0054 down the OpenAI path, rollout 5 adds five
more; 35 jobs are NOT_ALLOWLISTED whatever the rollout. No test asserts
wall-clock time: the slow test only relies on the server sleeping at least
its delay.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from slotgen_ops.contract import Controls, Decision, decide, parse_allowlist
from slotgen_ops.errors import BadInput
from slotgen_ops.policy.authority import Actor
from slotgen_ops.changes.verifying import verification_summary
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.runbook.runbook import CHECK_NAMES
from slotgen_ops.policy.samples import decision_digest_for
from slotgen_ops.verification.checks import percentile95
from slotgen_ops.verification.samples import run_verification
from slotgen_ops.workspace import Workspace
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

ALLOWLIST = "allowlists/slot-generation-allowlist.v1.json"
ROLLOUT_1_JOBS = ["sample-0026", "sample-0054"]
ROLLOUT_5_JOBS = [*ROLLOUT_1_JOBS, "sample-0260", "sample-0047", "sample-0082", "sample-0079", "sample-0117"]
SAMPLES = 60

# Where the runbook stands after `slotgen init`: every control safe.
SAFE = {"SLOTGEN_AI_KILL": "true", "FEATURE_SLOTGEN_AI": "false", "SLOTGEN_AI_ROLLOUT_PERCENT": "0",
        "SLOTGEN_AI_ALLOWLIST_PATH": None}


def blocked(rollout: str = "1") -> dict[str, str | None]:
    """Step 5 (verify): feature on, allowlist enabled, canary set, kill-switch still on."""
    return {"SLOTGEN_AI_KILL": "true", "FEATURE_SLOTGEN_AI": "true", "SLOTGEN_AI_ROLLOUT_PERCENT": rollout,
            "SLOTGEN_AI_ALLOWLIST_PATH": ALLOWLIST}


def live(rollout: str) -> dict[str, str | None]:
    return {**blocked(rollout), "SLOTGEN_AI_KILL": "false"}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(mode="ok", delay_s=0.2) as fake:
        yield fake


@pytest.fixture
def root(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    """A fresh workspace whose environments call the fake server."""
    path = tmp_path / "ws"
    init_workspace(path, Actor(claimed="owner", operator=None))
    edit_yaml(path / "slotgen.yaml", lambda doc: [env["openai"].update(baseUrl=server.base_url)
                                                  for env in doc["environments"].values()])
    return path


def edit_yaml(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def staging(root: Path):
    """A fresh Workspace each time: its runbook and config are cached per instance."""
    return Workspace(root).environment("staging")


def use_runbook_copy(root: Path, change: Any, samples: list[str] | None = None) -> None:
    """Point the workspace at a changed copy of its runbook (and optionally its own sample file)."""
    source = root / "runbooks" / "beta-enable.yaml"
    copy = root / "runbooks" / "test-copy.yaml"
    copy.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    edit_yaml(copy, change)
    if samples is not None:
        (root / "runbooks" / "test-samples.jsonl").write_text("\n".join(samples) + "\n", encoding="utf-8")
        edit_yaml(copy, lambda doc: doc["verification"].update(sampleJobs="test-samples.jsonl"))
    edit_yaml(root / "slotgen.yaml", lambda doc: doc.update(runbook="runbooks/test-copy.yaml"))


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == name)


def failed(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["checks"] if not c["passed"]]


# -- every check passes --------------------------------------------------------


def test_blocked_state_passes_with_no_ai_call_and_says_so(root: Path, server: FakeOpenAIServer) -> None:
    report = run_verification(staging(root), blocked("1"))
    assert report["passed"] is True, report["checks"]
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    assert "blocked state: 0 OpenAI calls expected, 0 received" in check(report, "path-behavior")["detail"]
    assert report["openaiCalls"] == 0 and server.calls == 0
    assert report["callCounter"] == "server"
    assert report["codes"] == report["expectedCodes"] == {"KILL_SWITCH": SAMPLES}
    assert report["samples"] == SAMPLES


@pytest.mark.parametrize("rollout, jobs", [("1", ROLLOUT_1_JOBS), ("5", ROLLOUT_5_JOBS)])
def test_live_passes_and_the_endpoint_received_one_call_per_openai_job(
    root: Path, server: FakeOpenAIServer, rollout: str, jobs: list[str]
) -> None:
    report = run_verification(staging(root), live(rollout))
    assert report["passed"] is True, report["checks"]
    assert report["openaiCalls"] == server.calls == len(jobs)
    assert report["callCounter"] == "server"
    assert report["codes"] == report["expectedCodes"] == {
        "COMPLETED": len(jobs), "NOT_ALLOWLISTED": 35, "ROLLOUT_EXCLUDED": 25 - len(jobs)}
    assert report["rollout"] == int(rollout)
    assert report["latencyBoundMs"] == 3000
    assert f"{len(jobs)} job(s) on the OpenAI path" in check(report, "path-behavior")["detail"]
    # Live, nothing more would be exposed by the kill-switch: it is already off.
    assert report["shadowExposure"] == {"jobs": jobs, "count": len(jobs), "now": len(jobs), "more": 0}


def test_the_endpoint_can_come_from_the_sdk_environment_variables(
    root: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit_yaml(root / "slotgen.yaml", lambda doc: doc["environments"]["staging"]["openai"].update(baseUrl=None))
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    report = run_verification(staging(root), live("1"))
    assert report["passed"] is True, report["checks"]
    assert report["openaiCalls"] == server.calls == 2


def test_an_invalid_rollout_fails_closed_and_uses_the_level_0_bound(root: Path, server: FakeOpenAIServer) -> None:
    report = run_verification(staging(root), live("5%"))
    assert report["passed"] is True, report["checks"]
    assert report["rollout"] is None and report["latencyBoundMs"] == 2000
    assert report["codes"] == {"NOT_ALLOWLISTED": 35, "ROLLOUT_EXCLUDED": 25}
    assert server.calls == 0


def test_report_values_for_the_audit_log_are_integers(root: Path) -> None:
    report = run_verification(staging(root), live("5"))
    for key in ("samples", "openaiCalls", "p95Ms", "latencyBoundMs", "durationMs"):
        assert type(report[key]) is int, key
    summary = verification_summary(report)
    assert summary == {"passed": True, "checks": dict.fromkeys(CHECK_NAMES, True), "failed": [],
                       "samples": SAMPLES, "openaiCalls": 7, "p95Ms": report["p95Ms"]}


def test_telemetry_is_appended_to_the_environment_file(root: Path) -> None:
    env = staging(root)
    run_verification(env, blocked())
    run_verification(env, live("1"))
    lines = (root / "telemetry" / "staging.jsonl").read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 2 * SAMPLES
    assert {e["env"] for e in events} == {"staging"}
    assert sum(e["path"] == "openai" for e in events) == 2


def test_progress_reports_every_job(root: Path) -> None:
    seen: list[tuple[int, int]] = []
    run_verification(staging(root), blocked(), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, SAMPLES) for i in range(SAMPLES + 1)]


# -- shadow exposure -----------------------------------------------------------


@pytest.mark.parametrize("controls, jobs", [
    (SAFE, []),                            # feature off, no allowlist: nothing would move
    (blocked("1"), ROLLOUT_1_JOBS),
    (blocked("5"), ROLLOUT_5_JOBS),
])
def test_shadow_exposure_with_the_kill_switch_on(root: Path, server: FakeOpenAIServer,
                                                 controls: dict[str, str | None], jobs: list[str]) -> None:
    report = run_verification(staging(root), controls)
    assert report["passed"] is True, report["checks"]
    assert report["shadowExposure"] == {"jobs": jobs, "count": len(jobs), "now": 0, "more": len(jobs)}
    assert server.calls == 0


# -- each check driven to fail -------------------------------------------------


@pytest.mark.parametrize("mode, code", [
    ("schema_invalid", "OPENAI_SCHEMA_INVALID"),
    ("http500", "OPENAI_HTTP_ERROR"),
    ("nonjson", "OPENAI_NON_JSON"),
])
def test_openai_failures_fail_error_codes_and_name_the_code(root: Path, server: FakeOpenAIServer,
                                                            mode: str, code: str) -> None:
    server.set_mode(mode)
    report = run_verification(staging(root), live("5"))
    assert report["passed"] is False
    assert failed(report) == ["error-codes"]
    assert code in check(report, "error-codes")["detail"]
    assert report["codes"][code] == 7 and "COMPLETED" not in report["codes"]
    assert report["expectedCodes"]["COMPLETED"] == 7
    # Retries included, the endpoint saw exactly what the executor sent.
    assert report["openaiCalls"] == server.calls >= 7


def test_a_slow_endpoint_fails_latency(root: Path, server: FakeOpenAIServer) -> None:
    use_runbook_copy(root, lambda doc: doc.update(latencyP95Ms={"0": 50, "1": 50, "5": 50}))
    server.set_mode("slow", delay_s=0.2)  # under the 10 s timeout: COMPLETED, just slow
    report = run_verification(staging(root), live("5"))
    assert failed(report) == ["latency"]
    assert report["latencyBoundMs"] == 50
    assert report["p95Ms"] > 50  # the server slept 200 ms for 7 of 60 jobs, more than the top 5%
    assert "OVER the 50 ms bound for rollout 5" in check(report, "latency")["detail"]
    assert report["codes"]["COMPLETED"] == 7


def test_an_ai_call_while_blocked_fails_path_behavior(root: Path, server: FakeOpenAIServer) -> None:
    def rogue_client(done: int, total: int) -> None:
        # Someone else reaches the endpoint during a kill-switch-on verification.
        if done == 1:
            request = urllib.request.Request(f"{server.base_url}/chat/completions", method="POST",
                                             data=b'{"model": "x", "messages": []}',
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=5).read()

    report = run_verification(staging(root), blocked(), progress=rogue_client)
    assert report["passed"] is False
    assert failed(report) == ["path-behavior"]
    assert "the endpoint received 1 call(s), expected 0" in check(report, "path-behavior")["detail"]
    assert report["openaiCalls"] == 1


def test_a_runtime_with_the_wrong_gate_order_fails_error_codes_and_path_behavior(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_decide = decide

    def feature_before_kill(job: Any, controls: Controls, allowlist: Any) -> Decision:
        if not controls.feature_on:
            return Decision(job, controls, allowlist, 1)  # FEATURE_DISABLED before KILL_SWITCH: wrong
        return real_decide(job, controls, allowlist)

    monkeypatch.setattr("slotgen_ops.runtime.executor.decide", feature_before_kill)
    report = run_verification(staging(root), SAFE)
    # The telemetry schema ties killSwitch=true to decidedBy=kill-switch, so it may object too.
    assert {"path-behavior", "error-codes"} <= set(failed(report))
    assert "blocked by KILL_SWITCH, expected stub with no AI call, got stub/STUB/FEATURE_DISABLED" in (
        check(report, "path-behavior")["detail"])
    detail = check(report, "error-codes")["detail"]
    assert "unexpected: FEATURE_DISABLED×60" in detail and "missing: KILL_SWITCH×60" in detail


def test_a_runtime_that_ignores_the_allowlist_leaks_jobs_and_fails(root: Path, server: FakeOpenAIServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    everything = parse_allowlist({"schemaVersion": 1, "version": "leaky", "enabled": True, "rules": [{
        "id": "all", "kind": ["question-slots", "mark-scheme", "question-slot", "worked-example"],
        "subject": "mathematics", "level": ["gcse", "GCSE", "a-level", "ks3"],
        "board": ["aqa", "AQA", "ocr", "edexcel", "*", "wjec"],
        "specVersion": ["8300", "8301", "8300 ", "1MA1"]}]})
    monkeypatch.setattr("slotgen_ops.runtime.executor.decide", lambda job, c, _a: decide(job, c, everything))
    report = run_verification(staging(root), live("5"))
    assert {"path-behavior", "error-codes"} <= set(failed(report))
    assert "expected stub with no AI call, got openai/COMPLETED" in check(report, "path-behavior")["detail"]
    assert report["codes"]["COMPLETED"] > 7 and server.calls == report["codes"]["COMPLETED"]


def test_broken_telemetry_fails_telemetry_schema(root: Path) -> None:
    (root / "telemetry" / "staging.jsonl").mkdir(parents=True)  # a directory where the file should be
    report = run_verification(staging(root), blocked())
    assert failed(report) == ["telemetry-schema"]
    assert "cannot append to" in check(report, "telemetry-schema")["detail"]


@pytest.mark.parametrize("controls", [blocked(), live("5")])
def test_too_few_samples_fails_every_check_never_passes(root: Path, controls: dict[str, str | None]) -> None:
    use_runbook_copy(root, lambda doc: doc["verification"].update(minSamples=dict.fromkeys(CHECK_NAMES, SAMPLES + 1)))
    report = run_verification(staging(root), controls)
    assert report["passed"] is False
    assert failed(report) == list(CHECK_NAMES)
    for c in report["checks"]:
        assert f"too few samples: {SAMPLES}, the runbook requires at least {SAMPLES + 1}" in c["detail"]


def test_the_minimum_is_per_check(root: Path) -> None:
    use_runbook_copy(root, lambda doc: doc["verification"]["minSamples"].update(latency=SAMPLES + 1))
    assert failed(run_verification(staging(root), blocked())) == ["latency"]


def test_a_small_sample_file_fails_against_the_shipped_minimum(root: Path) -> None:
    lines = (root / "runbooks" / "sample-jobs.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    use_runbook_copy(root, lambda doc: None, samples=lines)
    report = run_verification(staging(root), blocked())
    assert report["samples"] == 3 and failed(report) == list(CHECK_NAMES)


def test_an_empty_sample_file_fails(root: Path) -> None:
    use_runbook_copy(root, lambda doc: None, samples=[])
    report = run_verification(staging(root), blocked())
    assert report["samples"] == 0 and report["passed"] is False and failed(report) == list(CHECK_NAMES)


# -- endpoint without a counter, bad configuration, bad input -------------------


def test_without_an_endpoint_counter_attempts_are_counted_and_said(root: Path) -> None:
    edit_yaml(root / "slotgen.yaml", lambda doc: doc["environments"]["staging"]["openai"].update(
        baseUrl="http://127.0.0.1:9/v1", maxRetries=0))  # discard port: nothing listens
    env = staging(root)
    quiet = run_verification(env, blocked())
    assert quiet["passed"] is True and quiet["callCounter"] == "attempts"
    assert "offers no call counter" in check(quiet, "path-behavior")["detail"]
    broken = run_verification(env, live("1"))  # the runtime never raises: the failure is a check
    assert broken["callCounter"] == "attempts" and failed(broken) == ["error-codes"]
    assert broken["codes"]["OPENAI_HTTP_ERROR"] == 2 and broken["openaiCalls"] == 2


def test_an_invalid_prompt_template_fails_every_check_without_raising(root: Path, server: FakeOpenAIServer) -> None:
    edit_yaml(root / "slotgen.yaml", lambda doc: doc["environments"]["staging"]["openai"].update(
        promptTemplate="Generate {jobid}"))
    report = run_verification(staging(root), blocked())
    assert report["passed"] is False and failed(report) == list(CHECK_NAMES)
    for c in report["checks"]:
        assert c["detail"].startswith("not run: slotgen.yaml environments.staging.openai is invalid")
        assert "unknown placeholder {jobid}" in c["detail"]
    assert server.calls == 0
    # The report keeps its whole shape: the recorded summary, the post-commit check and --json read it.
    assert sorted(report) == sorted(["passed", "cause", "causeKind", "checks", "shadowExposure", "samples",
                                     "expectedCodes", "latencyBoundMs", "rollout", "decisionDigest", "openaiCalls",
                                     "p95Ms", "codes", "durationMs", "callCounter"])
    assert report["cause"].startswith("not run: slotgen.yaml environments.staging.openai is invalid")
    assert "unknown placeholder {jobid}" in report["cause"] and "\n" not in report["cause"]
    assert (report["causeKind"], report["openaiCalls"], report["p95Ms"], report["codes"], report["callCounter"]) == (
        "configuration", 0, 0, {}, "attempts")
    assert type(report["durationMs"]) is int and report["durationMs"] >= 0
    assert report["decisionDigest"] == decision_digest_for(staging(root), blocked())


@pytest.mark.parametrize("bad_line, problem", [
    ("{not json", "not JSON"),
    ('{"jobId": "x"}', "not a valid job"),
])
def test_a_bad_sample_line_is_bad_input_naming_file_and_line(root: Path, bad_line: str, problem: str) -> None:
    lines = (root / "runbooks" / "sample-jobs.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    use_runbook_copy(root, lambda doc: None, samples=[*lines, "", bad_line])
    with pytest.raises(BadInput, match=rf"test-samples\.jsonl:4: {problem}"):
        run_verification(staging(root), blocked())


def test_a_missing_sample_file_is_bad_input(root: Path) -> None:
    (root / "runbooks" / "sample-jobs.jsonl").unlink()
    with pytest.raises(BadInput, match="sample jobs file not found"):
        run_verification(staging(root), blocked())


def test_percentile95_is_nearest_rank() -> None:
    assert percentile95([]) == 0
    assert percentile95([7]) == 7
    assert percentile95(list(range(1, 21))) == 19
    assert percentile95([1] * 57 + [500] * 3) == 1
    assert percentile95([1] * 56 + [500] * 4) == 500
