"""The sample jobs' independent expectations (runbooks/sample-expectations.json): generated once by a
standard-library script that re-implements SPEC section 1, checked in, and shipped with the package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import Counter

import pytest

from contract_helpers import ROOT, SAMPLE_JOBS, SHIPPED_ALLOWLIST, load_jsonl
from slotgen_ops.contract import Controls, decide
from slotgen_ops.runbook.expectations import job_sha256, load_expectations
from slotgen_ops.runtime.allowlist_file import load_allowlist

GENERATOR = ROOT / "runbooks" / "gen_sample_expectations.py"
EXPECTATIONS = ROOT / "runbooks" / "sample-expectations.json"
JOBS = load_jsonl(SAMPLE_JOBS)


def test_the_file_is_the_generators_output_byte_for_byte():
    out = subprocess.run([sys.executable, str(GENERATOR)], capture_output=True, check=True, cwd=ROOT.parent).stdout
    assert out == EXPECTATIONS.read_bytes()


def test_the_generator_imports_the_standard_library_only():
    tree = ast.parse(GENERATOR.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert not any("slotgen_ops" in name for name in imported)


def test_it_runs_with_nothing_but_the_standard_library_on_the_path(tmp_path):
    """-I -S: no site-packages (so no slotgen_ops, installed or not), no script directory tricks."""
    out = subprocess.run([sys.executable, "-I", "-S", str(GENERATOR)], capture_output=True, check=True,
                         cwd=tmp_path).stdout
    assert out == EXPECTATIONS.read_bytes()


def test_it_covers_every_sample_job_and_the_states_verification_runs():
    doc = json.loads(EXPECTATIONS.read_text(encoding="utf-8"))
    assert [row["jobId"] for row in doc["jobs"]] == [job["jobId"] for job in JOBS]
    assert doc["count"] == len(JOBS) == 60
    ids = [state["id"] for state in doc["states"]]
    assert ids == ["kill-switch-engaged", "feature-flag-off", "no-allowlist", "live-rollout-0", "live-rollout-1",
                   "live-rollout-5", "live-rollout-100"]
    for row, job in zip(doc["jobs"], JOBS):
        assert row["sha256"] == job_sha256(job)
        assert set(row["expected"]) == set(ids)


def test_the_distribution_is_the_one_the_runbook_readme_publishes():
    doc = json.loads(EXPECTATIONS.read_text(encoding="utf-8"))

    def counts(state):
        return Counter(code or path for path, code in (row["expected"][state] for row in doc["jobs"]))

    assert counts("kill-switch-engaged") == {"KILL_SWITCH": 60}
    assert counts("feature-flag-off") == {"FEATURE_DISABLED": 60}
    assert counts("no-allowlist") == {"NOT_ALLOWLISTED": 60}
    assert counts("live-rollout-0") == counts("live-rollout-100") == {"openai": 25, "NOT_ALLOWLISTED": 35}
    assert counts("live-rollout-1") == {"openai": 2, "ROLLOUT_EXCLUDED": 23, "NOT_ALLOWLISTED": 35}
    assert counts("live-rollout-5") == {"openai": 7, "ROLLOUT_EXCLUDED": 18, "NOT_ALLOWLISTED": 35}


@pytest.mark.parametrize("state_id", ["kill-switch-engaged", "feature-flag-off", "no-allowlist", "live-rollout-0",
                                      "live-rollout-1", "live-rollout-5", "live-rollout-100"])
def test_the_two_implementations_agree_on_every_job(state_id):
    expectations = load_expectations(SAMPLE_JOBS)
    state = next(s for s in expectations.states if s["id"] == state_id)
    controls = {k: v for k, v in state["controls"].items() if v is not None}
    allowlist = load_allowlist(str(SHIPPED_ALLOWLIST) if "SLOTGEN_AI_ALLOWLIST_PATH" in controls else None)
    parsed = Controls.from_mapping(controls)
    for job in JOBS:
        decision = decide(job, parsed, allowlist)
        known = expectations.jobs[job["jobId"]]
        assert (decision.path, decision.code) == known.expected[state_id], job["jobId"]
        assert decision.bucket == known.bucket


def test_the_file_is_shipped_and_copied_into_a_workspace(tmp_path):
    from slotgen_ops.data import data_path
    from slotgen_ops.policy.authority import Actor
    from slotgen_ops.workspace.init import init_workspace

    assert data_path("runbooks", "sample-expectations.json").read_bytes() == EXPECTATIONS.read_bytes()
    init_workspace(tmp_path / "ws", Actor(claimed="owner", operator=None))
    assert (tmp_path / "ws" / "runbooks" / "sample-expectations.json").read_bytes() == EXPECTATIONS.read_bytes()
