"""`slotgen decide` through the real CLI: SPEC section 1 semantics and section 5 output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import assert_one_line_error, slotgen

ALLOWLIST = {"schemaVersion": 1, "version": "v1", "enabled": True, "rules": [
    {"id": "r1", "kind": "question-slots", "subject": "mathematics", "level": "gcse", "board": "aqa",
     "specVersion": "8300"}]}
LIVE = {"SLOTGEN_AI_KILL": "false", "FEATURE_SLOTGEN_AI": "true", "SLOTGEN_AI_ROLLOUT_PERCENT": "5"}


def job(job_id: str = "job-000001", **extra) -> dict:
    doc = {"jobId": job_id, "kind": "question-slots", "subject": "mathematics", "level": "gcse", "board": "aqa",
           "specVersion": "8300", "metadata": {"allowAI": True}}
    doc.update(extra)
    return doc


@pytest.fixture
def files(tmp_path: Path):
    allowlist = tmp_path / "allowlist.json"
    allowlist.write_text(json.dumps(ALLOWLIST))
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job()))
    return tmp_path, allowlist, job_file


def test_openai_path_with_every_gate_passing(files):
    tmp, allowlist, job_file = files
    run = slotgen("decide", str(job_file), "--json", env={**LIVE, "SLOTGEN_AI_ALLOWLIST_PATH": str(allowlist)})
    assert run.code == 0, run.stderr
    doc = run.json()
    assert (doc["jobId"], doc["path"], doc["code"], doc["bucket"]) == ("job-000001", "openai", None, 4)
    assert [g["gate"] for g in doc["gates"]] == ["kill-switch", "feature-flag", "job-opt-in", "allowlist", "rollout"]
    assert all(set(g) >= {"gate", "verdict", "detail"} for g in doc["gates"])
    assert all(g["verdict"] == "pass" for g in doc["gates"])


@pytest.mark.parametrize("override, code", [
    ("SLOTGEN_AI_KILL=true", "KILL_SWITCH"),
    ("SLOTGEN_AI_KILL=garbage", "KILL_SWITCH"),
    ("FEATURE_SLOTGEN_AI=1", "FEATURE_DISABLED"),
    ("SLOTGEN_AI_ROLLOUT_PERCENT=abc", "ROLLOUT_EXCLUDED"),
    ("SLOTGEN_AI_ROLLOUT_PERCENT=4", "ROLLOUT_EXCLUDED"),
    ("SLOTGEN_AI_ALLOWLIST_PATH=/nonexistent/allowlist.json", "NOT_ALLOWLISTED"),
])
def test_with_is_a_what_if_for_one_control(files, override, code):
    tmp, allowlist, job_file = files
    run = slotgen("decide", str(job_file), "--json", "--with", override,
                  env={**LIVE, "SLOTGEN_AI_ALLOWLIST_PATH": str(allowlist)})
    assert run.code == 0, run.stderr
    doc = run.json()
    assert (doc["path"], doc["code"]) == ("stub", code)
    decisive = [g for g in doc["gates"] if g["decisive"]]
    assert len(decisive) == 1 and decisive[0]["verdict"] == "fail"


def test_rollout_zero_admits_every_allowlisted_job(files):
    tmp, allowlist, _ = files
    job_file = tmp / "j.json"
    job_file.write_text(json.dumps(job("job-000123")))  # bucket 69
    env = {**LIVE, "SLOTGEN_AI_ALLOWLIST_PATH": str(allowlist)}
    assert slotgen("decide", str(job_file), "--json", env=env).json()["code"] == "ROLLOUT_EXCLUDED"
    doc = slotgen("decide", str(job_file), "--json", "--with", "SLOTGEN_AI_ROLLOUT_PERCENT=0", env=env).json()
    assert doc["path"] == "openai" and doc["bucket"] == 69


def test_untrusted_control_is_warned_about_on_stderr(files):
    tmp, allowlist, job_file = files
    run = slotgen("decide", str(job_file), "--json", "--with", "SLOTGEN_AI_ROLLOUT_PERCENT= 5",
                  env={**LIVE, "SLOTGEN_AI_ALLOWLIST_PATH": str(allowlist)})
    assert run.code == 0
    assert run.json()["code"] == "ROLLOUT_EXCLUDED"
    assert "warning: SLOTGEN_AI_ROLLOUT_PERCENT=' 5' is not an integer 0..100" in run.stderr


def test_human_output_names_the_decisive_gate(files):
    tmp, allowlist, job_file = files
    run = slotgen("decide", str(job_file), env={"SLOTGEN_AI_KILL": "true"})
    assert run.code == 0
    assert "STUB (KILL_SWITCH)" in run.stdout and "decides" in run.stdout


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not JSON"),
    (json.dumps({"kind": "x"}), "jobId: required field is missing"),
    (json.dumps(job(jobId="")), "jobId: must not be empty"),
    (json.dumps(job(metadata={"allowAI": "true"})), "metadata.allowAI: must be true or false"),
    (json.dumps(job(subject=5)), "subject: must be a string"),
    (json.dumps([1, 2]), "must be a JSON object"),
    (json.dumps(job(extra=1)), "extra: unknown field"),
])
def test_bad_job_is_one_line_exit_2(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    run = slotgen("decide", str(path))
    assert_one_line_error(run, 2)
    assert fragment in run.stderr and str(path) in run.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--with", "NOPE=1"], "'NOPE' is not a control"),
    (["--with", "SLOTGEN_AI_KILL"], "expected KEY=VALUE"),
    (["--with", "SLOTGEN_AI_KILL=true", "--with", "SLOTGEN_AI_KILL=false"], "given twice"),
    (["--bogus"], "No such option"),
])
def test_bad_arguments_are_one_line_exit_2(files, args, fragment):
    tmp, _, job_file = files
    run = slotgen("decide", str(job_file), *args)
    assert_one_line_error(run, 2)
    assert fragment in run.stderr


def test_missing_job_file_and_stdin(files):
    tmp, _, job_file = files
    assert_one_line_error(slotgen("decide", str(tmp / "none.json")), 2)
    run = slotgen("decide", "-", "--json", stdin=job_file.read_text())
    assert run.code == 0 and run.json()["code"] == "FEATURE_DISABLED"


def test_decide_reads_an_environment_of_a_workspace(tmp_path):
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job()))
    doc = slotgen("decide", str(path), "--env", "staging", "--workspace", str(ws), "--json").json()
    assert (doc["path"], doc["code"]) == ("stub", "KILL_SWITCH")
    what_if = slotgen("decide", str(path), "--env", "staging", "--workspace", str(ws), "--json",
                      "--with", "SLOTGEN_AI_KILL=false").json()
    assert what_if["code"] == "FEATURE_DISABLED"
