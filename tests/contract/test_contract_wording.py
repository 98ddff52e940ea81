"""The words the contract gives an operator: each control's meaning, and the JSON type named in a refusal.

`describe_controls` is what `slotgen status` and the change preview print next
to each control; `json_type` names the type a job or allowlist got wrong. Both
are read by people, so every value class is pinned to its exact text.
"""

from __future__ import annotations

import pytest

from contract_helpers import make_controls
from slotgen_ops.contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR, describe_controls, job_problem
from slotgen_ops.contract.job import json_type

STUB_IF_ENGAGED = "every job takes the STUB path"
MAY_REACH = "jobs may reach the AI path if every other gate passes"


@pytest.mark.parametrize(
    ("kill", "meaning"),
    [
        (None, f"unset = off: {MAY_REACH}"),
        ("false", f"off ('false'): {MAY_REACH}"),
        (" FALSE ", f"off (' FALSE '): {MAY_REACH}"),
        ("", f"off (''): {MAY_REACH}"),
        ("true", f"engaged ('true'): {STUB_IF_ENGAGED}"),
        ("garbage", f"engaged ('garbage'): {STUB_IF_ENGAGED}"),
    ],
)
def test_kill_switch_meaning(kill: str | None, meaning: str) -> None:
    assert describe_controls(make_controls(kill=kill))[KILL_VAR] == meaning


@pytest.mark.parametrize(
    ("feature", "meaning"),
    [
        ("true", "on: the AI path is enabled"),
        (" TRUE ", "on: the AI path is enabled"),
        (None, "off: every job takes the STUB path (FEATURE_DISABLED)"),
        ("false", "off: every job takes the STUB path (FEATURE_DISABLED)"),
        ("yes", "off: every job takes the STUB path (FEATURE_DISABLED)"),
    ],
)
def test_feature_flag_meaning(feature: str | None, meaning: str) -> None:
    assert describe_controls(make_controls(feature=feature))[FEATURE_VAR] == meaning


@pytest.mark.parametrize(
    ("rollout", "meaning"),
    [
        (None, "unset is not an integer 0..100: fails closed, every job ROLLOUT_EXCLUDED"),
        ("abc", "'abc' is not an integer 0..100: fails closed, every job ROLLOUT_EXCLUDED"),
        ("101", "'101' is not an integer 0..100: fails closed, every job ROLLOUT_EXCLUDED"),
        ("", "'' is not an integer 0..100: fails closed, every job ROLLOUT_EXCLUDED"),
        ("0", "0 = gate disabled: every allowlisted job passes"),
        ("000", "0 = gate disabled: every allowlisted job passes"),
        ("1", "1 = allowlisted jobs with bucket < 1 pass"),
        ("99", "99 = allowlisted jobs with bucket < 99 pass"),
        ("100", "100 = every allowlisted job passes"),
        ("0100", "100 = every allowlisted job passes"),
    ],
)
def test_rollout_meaning(rollout: str | None, meaning: str) -> None:
    assert describe_controls(make_controls(rollout=rollout))[ROLLOUT_VAR] == meaning


@pytest.mark.parametrize(
    ("path", "meaning"),
    [
        (None, "unset: no job is allowlisted (NOT_ALLOWLISTED)"),
        ("", "unset: no job is allowlisted (NOT_ALLOWLISTED)"),
        ("allowlists/x.json", "allowlists/x.json: jobs matching one of its rules are allowlisted"),
    ],
)
def test_allowlist_meaning(path: str | None, meaning: str) -> None:
    assert describe_controls(make_controls(allowlist_path=path))[ALLOWLIST_VAR] == meaning


def test_every_control_is_described_once() -> None:
    text = describe_controls(make_controls(kill=None, feature=None, rollout=None))
    assert list(text) == [KILL_VAR, FEATURE_VAR, ROLLOUT_VAR, ALLOWLIST_VAR]


class Other:
    pass


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (False, "boolean"),
        (0, "number"),
        (1.5, "number"),
        ("", "string"),
        ([], "array"),
        ({}, "object"),
        ((1,), "tuple"),
        (Other(), "Other"),
    ],
)
def test_json_type_names(value: object, name: str) -> None:
    assert json_type(value) == name


@pytest.mark.parametrize(
    ("job", "problem"),
    [
        (None, "(job): must be a JSON object, got null"),
        ([1], "(job): must be a JSON object, got array"),
        ({"jobId": True}, "jobId: must be a string, got boolean"),
        ({"jobId": {}}, "jobId: must be a string, got object"),
        ({"jobId": 7}, "jobId: must be a string, got number"),
    ],
)
def test_job_problems_name_the_json_type(job: object, problem: str) -> None:
    assert job_problem(job) == problem
