"""The shipped allowlist and the sample population that `slotgen verify` runs."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest

from contract_helpers import COHORT, ROOT, SAMPLE_JOBS, SHIPPED_ALLOWLIST, load_json, load_jsonl, make_controls, validator
from slotgen_ops.contract import (
    FEATURE_DISABLED,
    GATING_CODES,
    KILL_SWITCH,
    NOT_ALLOWLISTED,
    PATH_OPENAI,
    PATH_STUB,
    ROLLOUT_EXCLUDED,
    bucket,
    decide,
    job_problem,
    parse_allowlist,
)
from slotgen_ops.runtime.allowlist_file import load_allowlist

GENERATOR = ROOT / "runbooks" / "gen_sample_jobs.py"
JOBS = load_jsonl(SAMPLE_JOBS)
ALLOWLIST = load_allowlist(str(SHIPPED_ALLOWLIST))


def _run(kill="false", feature="true", rollout="5", allowlist=ALLOWLIST):
    controls = make_controls(kill, feature, rollout)
    return [decide(job, controls, allowlist) for job in JOBS]


def _counts(decisions) -> Counter:
    return Counter(d.code or PATH_OPENAI for d in decisions)


def _opted_in(job) -> bool:
    return job.get("metadata", {}).get("allowAI") is True


def _in_cohort(job) -> bool:
    return all(job[k] == v for k, v in COHORT.items())


# ------------------------------------------------- the shipped allowlist
def test_the_shipped_allowlist_is_the_beta_minimal_cohort():
    doc = load_json(SHIPPED_ALLOWLIST)
    assert validator("allowlist").is_valid(doc)
    allowlist = parse_allowlist(doc)
    assert (doc["schemaVersion"], allowlist.version, allowlist.enabled) == (1, "v1", True)
    assert [r.id for r in allowlist.rules] == ["beta-minimal-cohort"]
    assert allowlist.cohort_size == 1
    assert {k: doc["rules"][0][k] for k in COHORT} == COHORT
    assert ALLOWLIST.available and ALLOWLIST.version == "v1"


# ------------------------------------------------- the sample jobs
def test_every_sample_job_is_valid_and_ids_are_unique():
    job_schema = validator("job")
    assert 50 <= len(JOBS) <= 80
    for job in JOBS:
        assert list(job_schema.iter_errors(job)) == [], job["jobId"]
        assert job_problem(job) is None
        assert re.fullmatch(r"sample-\d{4}", job["jobId"])
        assert type(job["payload"]) is dict and job["payload"]
    assert len({j["jobId"] for j in JOBS}) == len(JOBS)


def test_the_file_is_the_generator_output():
    out = subprocess.run([sys.executable, str(GENERATOR)], capture_output=True, check=True).stdout
    assert out == SAMPLE_JOBS.read_bytes()


def test_the_runbook_readme_carries_the_generator_table():
    table = subprocess.run([sys.executable, str(GENERATOR), "--table"], capture_output=True, check=True).stdout
    readme = (ROOT / "runbooks" / "README.md").read_text(encoding="utf-8")
    assert table.decode("utf-8").strip() in readme


def test_rollout_1_sends_at_least_two_jobs_down_the_openai_path():
    decisions = _run(rollout="1")
    openai = [d.job["jobId"] for d in decisions if d.path == PATH_OPENAI]
    assert len(openai) >= 2
    assert all(bucket(i) == 0 for i in openai)


def test_rollout_5_sends_at_least_five_and_excludes_at_least_ten():
    counts = _counts(_run(rollout="5"))
    assert counts[PATH_OPENAI] >= 5
    assert counts[ROLLOUT_EXCLUDED] >= 10
    assert counts[PATH_OPENAI] > _counts(_run(rollout="1"))[PATH_OPENAI]


def test_every_ladder_value_has_an_openai_job_once_live():
    import yaml

    runbook = ROOT / "runbooks" / "beta-enable.yaml"
    assert runbook.is_file(), f"the shipped runbook is missing: {runbook}"
    ladder = yaml.safe_load(runbook.read_text(encoding="utf-8"))["ladder"]
    assert ladder
    for percent in ladder:
        assert _counts(_run(rollout=str(percent)))[PATH_OPENAI] >= 1, percent


def test_every_gating_code_occurs_across_the_standard_states():
    states = {
        "safe (kill on, feature off, rollout 0, no allowlist)": dict(kill="true", feature=None, rollout="0", allowlist=load_allowlist(None)),
        "feature on, kill on": dict(kill="true", feature="true", rollout="0", allowlist=load_allowlist(None)),
        "canary, kill on": dict(kill="true", feature="true", rollout="1"),
        "kill off, feature off": dict(kill="false", feature="false", rollout="1"),
        "live at 1": dict(rollout="1"),
        "live at 5": dict(rollout="5"),
    }
    seen: Counter = Counter()
    for state in states.values():
        seen.update(_counts(_run(**state)))
    assert set(GATING_CODES) | {PATH_OPENAI} == set(seen)
    assert _counts(_run(kill="true")) == {KILL_SWITCH: len(JOBS)}
    assert _counts(_run(feature="false")) == {FEATURE_DISABLED: len(JOBS)}


def test_every_not_allowlisted_cause_is_in_the_sample_and_blocked_when_live():
    live = {d.job["jobId"]: d for d in _run(rollout="5")}
    causes = {
        "no metadata": [j for j in JOBS if "metadata" not in j],
        "metadata without allowAI": [j for j in JOBS if "metadata" in j and "allowAI" not in j["metadata"]],
        "allowAI false": [j for j in JOBS if j.get("metadata", {}).get("allowAI") is False],
    }
    for name in COHORT:  # exactly one field outside the cohort, opted in
        causes[f"{name} mismatch"] = [
            j for j in JOBS
            if _opted_in(j) and [k for k in COHORT if j[k] != COHORT[k]] == [name]
        ]
    for cause, jobs in causes.items():
        assert jobs, cause
        for job in jobs:
            decision = live[job["jobId"]]
            assert (decision.path, decision.code) == (PATH_STUB, NOT_ALLOWLISTED), job["jobId"]
            assert decision.decided_by == (3 if _opted_in(job) else 2)
        # at least one of them would be inside the canary if the order were wrong
        assert any(bucket(j["jobId"]) < 5 for j in jobs), cause


def test_a_subject_mismatch_job_carries_non_ascii_text():
    subject_mismatch = [j for j in JOBS if j["subject"] != COHORT["subject"]]
    assert any(not repr(j["payload"]).isascii() for j in subject_mismatch)


def test_eligible_jobs_are_exactly_the_opted_in_cohort_jobs():
    eligible = {j["jobId"] for j in JOBS if _opted_in(j) and _in_cohort(j)}
    at_100 = {d.job["jobId"] for d in _run(rollout="100") if d.path == PATH_OPENAI}
    at_0 = {d.job["jobId"] for d in _run(rollout="0") if d.path == PATH_OPENAI}
    assert eligible == at_100 == at_0
    at_5 = {d.job["jobId"] for d in _run(rollout="5") if d.path == PATH_OPENAI}
    assert at_5 == {i for i in eligible if bucket(i) < 5}
