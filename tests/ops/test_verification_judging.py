"""Two checks judged on runs made by hand (`verification/samples.py`): expected-decisions and latency.

`test_expected_decisions.py` and `test_verification.py` drive the real
runtime against a fake endpoint; a real runtime cannot be made to report a
wrong bucket, crash on one job, or answer in exactly the bound. Here the
checks get the 60 shipped sample jobs with `decide()`'s decisions and
executions reported as a (wrong) runtime would, so each rule of the check is
shown to fail on the one job that breaks it, wherever that job sits.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from slotgen_ops.contract import PATH_OPENAI, Controls, decide
from slotgen_ops.verification import samples as v
from slotgen_ops.verification import checks as vchecks
from slotgen_ops.policy.authority import Actor
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.policy.samples import load_sample_jobs
from slotgen_ops.workspace import Workspace
from slotgen_ops.runtime.allowlist_file import load_allowlist

ALLOWLIST = "allowlists/slot-generation-allowlist.v1.json"
LIVE_5 = {"SLOTGEN_AI_KILL": "false", "FEATURE_SLOTGEN_AI": "true", "SLOTGEN_AI_ROLLOUT_PERCENT": "5",
          "SLOTGEN_AI_ALLOWLIST_PATH": ALLOWLIST}
UNCOVERED = {**LIVE_5, "SLOTGEN_AI_ROLLOUT_PERCENT": "3"}


@pytest.fixture
def env(tmp_path: Path):
    root = tmp_path / "ws"
    init_workspace(root, Actor(claimed="owner", operator=None))
    return Workspace(root).environment("staging")


def honest_run(env, values: dict[str, Any], jobs: list[Any] | None = None) -> vchecks._Run:
    """The run a correct runtime makes: each status says what decide() says."""
    if jobs is None:
        jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    parsed = Controls.from_mapping(values)
    allowlist = load_allowlist(parsed.allowlist_path, base=env.workspace.root)
    decisions = [decide(job, parsed, allowlist) for job in jobs]
    executions = [SimpleNamespace(status={"path": d.path, "code": d.code, "bucket": d.bucket, "latencyMs": 5})
                  for d in decisions]
    return vchecks._Run(jobs=list(jobs), decisions=decisions, executions=executions, events_per_job=[1] * len(jobs),
                        events=[])


def judged(env, run: vchecks._Run, values: dict[str, Any]) -> dict[str, Any]:
    return vchecks._check_expected_decisions(env, env.workspace.runbook, run, values)


def index_of(run: vchecks._Run, job_id: str) -> int:
    return next(i for i, job in enumerate(run.jobs) if job.get("jobId") == job_id)


def openai_index(run: vchecks._Run) -> int:
    return next(i for i, d in enumerate(run.decisions) if d.path == PATH_OPENAI)


def test_an_honest_run_passes(env):
    check = judged(env, honest_run(env, LIVE_5), LIVE_5)
    assert check["passed"] is True
    assert check["detail"].startswith("60 of 60 job(s) took the path and code runbooks/sample-expectations.json "
                                      "gives for live-rollout-5")


def test_an_openai_job_that_reports_a_gate_code_disagrees(env):
    run = honest_run(env, LIVE_5)
    at = openai_index(run)
    run.executions[at].status["code"] = "ROLLOUT_EXCLUDED"  # the OpenAI path with a stub's code
    check = judged(env, run, LIVE_5)
    label = run.jobs[at]["jobId"]
    assert check["passed"] is False
    assert f"{label}: expected openai, the runtime took openai/ROLLOUT_EXCLUDED" in check["detail"]


def test_an_openai_job_that_took_the_stub_path_disagrees(env):
    run = honest_run(env, LIVE_5)
    at = openai_index(run)
    run.executions[at].status.update(path="stub", code=None)
    assert f"{run.jobs[at]['jobId']}: expected openai, the runtime took stub/None" in judged(env, run, LIVE_5)["detail"]


def _last_bad(run: vchecks._Run) -> str:
    """Make the last job disagree (a stub job reported on the OpenAI path); return what the check must say."""
    last = len(run.jobs) - 1
    assert run.decisions[last].path != PATH_OPENAI
    want = f"{run.decisions[last].path}/{run.decisions[last].code}"
    run.executions[last].status.update(path=PATH_OPENAI, code=None)
    return f"{run.jobs[last]['jobId']}: expected {want}, the runtime took openai/None"


def test_a_crash_is_named_with_what_was_raised_and_the_jobs_after_it_still_judged(env):
    run = honest_run(env, LIVE_5)
    run.executions[0] = None
    run.crashes[0] = "RuntimeError: boom"
    later = _last_bad(run)
    detail = judged(env, run, LIVE_5)["detail"]
    want = f"{run.decisions[0].path}/{run.decisions[0].code}" if run.decisions[0].code else run.decisions[0].path
    assert f"{run.jobs[0]['jobId']}: expected {want}, the runtime raised RuntimeError: boom" in detail
    assert later in detail


def test_a_changed_job_is_left_out_and_the_jobs_after_it_still_judged(env):
    jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    jobs[0] = {**jobs[0], "subject": "physics"}
    run = honest_run(env, LIVE_5, jobs)
    later = _last_bad(run)
    detail = judged(env, run, LIVE_5)["detail"]
    assert later in detail
    assert detail.endswith(f"; not covered: 1 job(s) differ from the ones it was computed for ({jobs[0]['jobId']})")


def test_unlisted_jobs_are_named_and_the_jobs_after_them_still_judged(env):
    jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    jobs = [{**jobs[0], "jobId": "extra-0001"}, ["not", "a", "job"], {"subject": "maths"}, *jobs]
    run = honest_run(env, LIVE_5, jobs)
    later = _last_bad(run)
    detail = judged(env, run, LIVE_5)["detail"]
    assert later in detail
    assert "not covered: 3 job(s) it does not list (extra-0001; sample #2; sample #3)" in detail


def test_both_kinds_of_uncovered_job_are_listed_in_one_tail(env):
    jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    jobs = [{**jobs[0], "subject": "physics"}, *jobs[1:], {**jobs[1], "jobId": "extra-0001"}]
    check = judged(env, honest_run(env, LIVE_5, jobs), LIVE_5)
    assert check["passed"] is True
    assert check["detail"].endswith(
        f"; not covered: 1 job(s) differ from the ones it was computed for ({jobs[0]['jobId']}); 1 job(s) it does "
        "not list (extra-0001); regenerate it with runbooks/gen_sample_expectations.py")


def test_an_uncovered_state_counts_only_the_listed_jobs(env):
    jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    jobs = [*jobs, {**jobs[0], "jobId": "extra-0001"}]
    check = judged(env, honest_run(env, UNCOVERED, jobs), UNCOVERED)
    assert check["passed"] is True
    assert check["detail"].startswith("not covered: the controls in force match none of its states in "
                                      "runbooks/sample-expectations.json; the buckets of 60 listed job(s) agree")


def test_an_unreadable_expectations_file_fails_closed(env):
    (env.workspace.root / "runbooks" / "sample-expectations.json").write_text("{not json", encoding="utf-8")
    check = judged(env, honest_run(env, LIVE_5), LIVE_5)
    assert check["passed"] is False and "not JSON" in check["detail"]


# -- latency -----------------------------------------------------------------------------------------------


def latency(env, run: vchecks._Run, overall: int, on_openai: int, bound: int = 100, measured: int | None = None):
    for i, (d, e) in enumerate(zip(run.decisions, run.executions)):
        e.status["latencyMs"] = on_openai if d.path == PATH_OPENAI else overall
    values = [e.status["latencyMs"] for e in run.executions][:measured]
    return vchecks._check_latency(env.workspace.runbook, run, values, overall, bound, 5)


@pytest.mark.parametrize(("overall", "on_openai", "within"), [
    (100, 100, True),   # exactly the bound is within it
    (101, 100, False),
    (100, 101, False),  # a slow endpoint fails even when the other jobs keep the overall p95 low
    (99, 250, False),
    (250, 99, False),
])
def test_latency_is_within_the_bound_only_on_both_measures(env, overall, on_openai, within):
    run = honest_run(env, LIVE_5)
    check = latency(env, run, overall, on_openai)
    assert check["passed"] is within
    verdict = "within" if within else "OVER"
    count = sum(1 for d in run.decisions if d.path == PATH_OPENAI)
    assert check["detail"] == (f"p95 {overall} ms over 60 executions; OpenAI path: p95 {on_openai} ms, max "
                               f"{on_openai} ms over {count}: {verdict} the 100 ms bound for rollout 5")


def test_unmeasured_executions_fail_latency_and_are_said_after_the_figures(env):
    run = honest_run(env, LIVE_5)
    check = latency(env, run, 10, 10, measured=58)
    assert check["passed"] is False
    assert check["detail"].startswith("p95 10 ms over 58 executions; OpenAI path: ")
    assert check["detail"].endswith("within the 100 ms bound for rollout 5; 2 execution(s) not measured "
                                    "(the runtime raised)")


def test_the_api_key_comes_from_the_variable_the_environment_names(env, monkeypatch):
    name = env.config.openai.apiKeyEnv
    monkeypatch.setenv(name, "sk-local-test")
    assert v.executor_config_for(env).api_key == "sk-local-test"
    monkeypatch.setenv(name, "")
    assert v.executor_config_for(env).api_key is None


def test_the_shipped_expectations_list_every_sample_job():
    root = Path(__file__).resolve().parents[2] / "runbooks"
    listed = {row["jobId"] for row in json.loads((root / "sample-expectations.json").read_text())["jobs"]}
    assert {job["jobId"] for job in load_sample_jobs(root / "sample-jobs.jsonl")} == listed


# -- the endpoint's own counter ----------------------------------------------------------------------------


def test_the_endpoint_counter_is_read_from_its_origin_past_any_proxy(monkeypatch):
    from openai import OpenAI

    from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with FakeOpenAIServer("ok") as server:
        client = OpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        for name in ("http_proxy", "HTTP_PROXY"):  # a proxy that is not there: a loopback endpoint bypasses it
            monkeypatch.setenv(name, "http://127.0.0.1:9")
        assert v.read_server_counter(server.base_url) == 1


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1/v1", "http:///v1", "not a url", "http://[::1/v1"])
def test_no_counter_is_asked_of_an_address_that_is_not_http(url):
    assert v.read_server_counter(url) is None


def test_a_verification_reports_how_long_it_took(env):
    import time

    values = {**LIVE_5, "SLOTGEN_AI_KILL": "true"}
    start = time.perf_counter()
    report = v.run_verification(env, values)
    elapsed_ms = (time.perf_counter() - start) * 1000
    assert type(report["durationMs"]) is int and 1 <= report["durationMs"] <= elapsed_ms + 1
