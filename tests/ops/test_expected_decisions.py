"""Verification holds the runtime to independent expectations (check `expected-decisions`).

The other checks compare the runtime with `decide()`, the code it runs: a gate
that is wrong in both passes them. `runbooks/sample-expectations.json`, written
by a standard-library script from SPEC section 1 alone, is the second opinion.
Real workspace files, the real runtime, a fake OpenAI endpoint on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from slotgen_ops.contract import ROLLOUT_VAR, Controls, decide
from slotgen_ops.policy.authority import Actor
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.verification.samples import run_verification
from slotgen_ops.workspace import Workspace
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

ALLOWLIST = "allowlists/slot-generation-allowlist.v1.json"
NAME = "expected-decisions"


def controls(kill: str = "false", rollout: str = "1", allowlist: str | None = ALLOWLIST,
             feature: str = "true") -> dict[str, str | None]:
    return {"SLOTGEN_AI_KILL": kill, "FEATURE_SLOTGEN_AI": feature, "SLOTGEN_AI_ROLLOUT_PERCENT": rollout,
            "SLOTGEN_AI_ALLOWLIST_PATH": allowlist}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(mode="ok") as fake:
        yield fake


@pytest.fixture
def root(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    path = tmp_path / "ws"
    init_workspace(path, Actor(claimed="owner", operator=None))
    config = path / "slotgen.yaml"
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    for env in doc["environments"].values():
        env["openai"]["baseUrl"] = server.base_url
    config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def verify(root: Path, values: dict[str, str | None]) -> dict[str, Any]:
    return run_verification(Workspace(root).environment("staging"), values)


def check(report: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == NAME)


def failed(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["checks"] if not c["passed"]]


def edit_expectations(root: Path, change) -> None:
    path = root / "runbooks" / "sample-expectations.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


def rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["jobId"]: row for row in doc["jobs"]}


# -- the runtime agrees: each covered state ----------------------------------------------------------


@pytest.mark.parametrize("values, state", [
    (controls(kill="true", rollout="0", allowlist=None, feature="false"), "kill-switch-engaged"),
    (controls(kill="true"), "kill-switch-engaged"),
    (controls(feature="false"), "feature-flag-off"),
    (controls(allowlist=None), "no-allowlist"),
    (controls(allowlist=""), "no-allowlist"),
    (controls(rollout="0"), "live-rollout-0"),
    (controls(rollout="1"), "live-rollout-1"),
    (controls(rollout="5"), "live-rollout-5"),
])
def test_every_state_the_runbook_verifies_in_is_covered_and_passes(root: Path, values, state: str) -> None:
    report = verify(root, values)
    assert report["passed"] is True, report["checks"]
    assert check(report)["detail"] == (f"60 of 60 job(s) took the path and code runbooks/sample-expectations.json "
                                       f"gives for {state}; buckets agree")


# -- the runtime disagrees ---------------------------------------------------------------------------


def test_a_rollout_gate_off_by_one_in_decide_itself_is_caught_only_here(root: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault is in the gate both the runtime and the other checks use: they agree with each other."""
    real = decide

    def bucket_at_most_percent(job: Any, parsed: Controls, allowlist: Any):
        if parsed.rollout:  # "bucket <= percent" instead of "bucket < percent"
            parsed = Controls.from_mapping({**parsed.as_env(), ROLLOUT_VAR: str(parsed.rollout + 1)})
        return real(job, parsed, allowlist)

    monkeypatch.setattr("slotgen_ops.runtime.executor.decide", bucket_at_most_percent)
    monkeypatch.setattr("slotgen_ops.verification.samples.decide", bucket_at_most_percent)
    report = verify(root, controls(rollout="1"))
    assert report["passed"] is False
    assert failed(report) == [NAME]
    detail = check(report)["detail"]
    assert "under state live-rollout-1" in detail
    # sample-0260 and sample-0261 are the bucket-1 jobs; only sample-0260 is admitted by the allowlist.
    assert "sample-0260: expected stub/ROLLOUT_EXCLUDED, the runtime took openai/None" in detail
    assert "sample-0261" not in detail


def test_a_runtime_that_leaks_one_job_fails(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = decide

    def leaks_sample_0032(job: Any, parsed: Controls, allowlist: Any):
        if job.get("jobId") == "sample-0032":  # bucket 5: excluded at rollout 5
            parsed = Controls.from_mapping({**parsed.as_env(), ROLLOUT_VAR: "100"})
        return real(job, parsed, allowlist)

    monkeypatch.setattr("slotgen_ops.runtime.executor.decide", leaks_sample_0032)
    report = verify(root, controls(rollout="5"))
    assert NAME in failed(report)
    assert "sample-0032: expected stub/ROLLOUT_EXCLUDED, the runtime took openai/None" in check(report)["detail"]


def test_expectations_that_disagree_with_the_runtime_fail_the_check(root: Path) -> None:
    def wrong(doc: dict[str, Any]) -> None:
        rows(doc)["sample-0178"]["expected"]["live-rollout-5"] = ["openai", None]

    edit_expectations(root, wrong)
    report = verify(root, controls(rollout="5"))
    assert failed(report) == [NAME]
    assert "sample-0178: expected openai, the runtime took stub/NOT_ALLOWLISTED" in check(report)["detail"]


def test_an_openai_failure_is_the_endpoints_not_a_wrong_path(root: Path, server: FakeOpenAIServer) -> None:
    server.set_mode("http500")
    report = verify(root, controls(rollout="5"))
    assert NAME not in failed(report) and "error-codes" in failed(report)


# -- states it does not cover: the buckets still count -----------------------------------------------


@pytest.mark.parametrize("values", [controls(rollout="5%"), controls(kill="TRUE"), controls(rollout="3")])
def test_an_uncovered_state_says_so_and_passes_on_the_buckets(root: Path, values) -> None:
    report = verify(root, values)
    assert report["passed"] is True, report["checks"]
    assert check(report)["detail"] == (
        "not covered: the controls in force match none of its states in runbooks/sample-expectations.json; "
        "the buckets of 60 listed job(s) agree with it (decide() and the runtime)")


def test_an_uncovered_state_fails_when_a_bucket_disagrees(root: Path) -> None:
    edit_expectations(root, lambda doc: rows(doc)["sample-0026"].update(bucket=1))
    report = verify(root, controls(rollout="5%"))
    assert failed(report) == [NAME]
    detail = check(report)["detail"]
    assert "no covered state" in detail
    assert "sample-0026: decide() puts it in bucket 0, the expectations in 1" in detail
    assert "sample-0026: the runtime reports bucket 0, the expectations 1" in detail


def test_another_allowlist_file_is_not_covered(root: Path) -> None:
    path = root / ALLOWLIST
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["rules"][0]["board"] = ["aqa", "AQA"]  # widens the cohort: sample-0287 (board AQA, bucket 4) is admitted
    (root / "allowlists" / "wider.json").write_text(json.dumps(doc), encoding="utf-8")
    report = verify(root, controls(rollout="5", allowlist="allowlists/wider.json"))
    assert report["passed"] is True, report["checks"]
    assert check(report)["detail"].startswith("not covered: the allowlist allowlists/wider.json is not the file the "
                                              "expectations were computed with")
    # The same content under another path is the same state.
    (root / "allowlists" / "copy.json").write_bytes(path.read_bytes())
    assert "gives for live-rollout-5" in check(verify(root, controls(rollout="5", allowlist="allowlists/copy.json")))[
        "detail"]


def test_a_changed_sample_job_is_not_held_to_the_old_expectation(root: Path) -> None:
    samples = root / "runbooks" / "sample-jobs.jsonl"
    lines = samples.read_text(encoding="utf-8").splitlines()
    job = json.loads(lines[0])
    assert job["jobId"] == "sample-0026"
    job["subject"] = "physics"  # now NOT_ALLOWLISTED, where the file says openai at rollout 1
    lines[0] = json.dumps(job)
    samples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = verify(root, controls(rollout="1"))
    assert report["passed"] is True, report["checks"]
    assert check(report)["detail"] == (
        "59 of 60 job(s) took the path and code runbooks/sample-expectations.json gives for live-rollout-1; buckets "
        "agree; not covered: 1 job(s) differ from the ones it was computed for (sample-0026)")


def test_an_unknown_sample_job_is_named(root: Path) -> None:
    samples = root / "runbooks" / "sample-jobs.jsonl"
    job = json.loads(samples.read_text(encoding="utf-8").splitlines()[0])
    job["jobId"] = "extra-0001"
    with samples.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(job) + "\n")
    detail = check(verify(root, controls(rollout="1")))["detail"]
    assert detail.endswith("not covered: 1 job(s) it does not list (extra-0001); regenerate it with "
                           "runbooks/gen_sample_expectations.py")


# -- where the file comes from -------------------------------------------------------------------------


def test_a_workspace_without_the_file_uses_the_shipped_one(root: Path) -> None:
    (root / "runbooks" / "sample-expectations.json").unlink()
    detail = check(verify(root, controls(rollout="5")))["detail"]
    assert detail == ("60 of 60 job(s) took the path and code sample-expectations.json as shipped with slotgen gives "
                      "for live-rollout-5; buckets agree")


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not JSON"),
    ('{"states": []}', "not an expectations file written by runbooks/gen_sample_expectations.py"),
    ('{"states": [{"id": "s", "controls": {}}], "jobs": [{"jobId": "j", "sha256": "x", "bucket": 1, '
     '"expected": {"s": ["sideways", null]}}]}', "not [path, code]"),
])
def test_an_unreadable_file_fails_the_check_closed(root: Path, text: str, problem: str) -> None:
    (root / "runbooks" / "sample-expectations.json").write_text(text, encoding="utf-8")
    report = verify(root, controls(kill="true"))
    assert failed(report) == [NAME]
    assert check(report)["detail"].startswith("runbooks/sample-expectations.json: ")
    assert problem in check(report)["detail"]
