"""SPEC section 1, the control table: every value class of every control."""

from __future__ import annotations

import pytest

from contract_helpers import ids_in_buckets, make_allowlist, make_controls, make_job
from slotgen_ops.contract import (
    FEATURE_DISABLED,
    KILL_SWITCH,
    PATH_OPENAI,
    PATH_STUB,
    ROLLOUT_EXCLUDED,
    Controls,
    decide,
    describe_controls,
    feature_flag_on,
    kill_switch_engaged,
    rollout_percent,
)

BUCKET0_ID = ids_in_buckets({0}, 1, "job-")[0]

KILL_OFF = [None, "", "false", " FALSE ", "False\n", "FaLsE", "\tfalse\t"]
KILL_ENGAGED = ["true", "1", "TRUE", "yes", "no", "0", "garbage", "off", "f", "falsey", "false false", "on", "null", "fals"]

FEATURE_ON = ["true", " TRUE ", "True", "tRuE\n"]
FEATURE_OFF = [None, "", "1", "yes", "on", "false", "t", "truee", "enabled"]

ROLLOUT_OK = [(str(n), n) for n in range(101)] + [("007", 7), ("000", 0), ("0100", 100), ("0" * 5000 + "5", 5)]
ROLLOUT_FAIL_CLOSED = [
    None, "", "-1", "101", "1.5", "+5", " 5", "5 ", "5\n", "abc", "１", "٥", "²", "1e1", "0x5", "5%",
    "1000", "1" * 5000,
]


@pytest.mark.parametrize("raw", KILL_OFF)
def test_kill_switch_off_values(raw):
    assert kill_switch_engaged(raw) is False
    # and with every other gate passing, the job reaches the OpenAI path
    decision = decide(make_job(), make_controls(kill=raw), make_allowlist())
    assert decision.path == PATH_OPENAI


@pytest.mark.parametrize("raw", KILL_ENGAGED)
def test_kill_switch_engaged_values_fail_safe(raw):
    assert kill_switch_engaged(raw) is True
    decision = decide(make_job(), make_controls(kill=raw), make_allowlist())
    assert (decision.path, decision.code) == (PATH_STUB, KILL_SWITCH)


@pytest.mark.parametrize("raw", FEATURE_ON)
def test_feature_flag_on_values(raw):
    assert feature_flag_on(raw) is True
    assert decide(make_job(), make_controls(feature=raw), make_allowlist()).path == PATH_OPENAI


@pytest.mark.parametrize("raw", FEATURE_OFF)
def test_feature_flag_off_values(raw):
    assert feature_flag_on(raw) is False
    decision = decide(make_job(), make_controls(feature=raw), make_allowlist())
    assert (decision.path, decision.code) == (PATH_STUB, FEATURE_DISABLED)


@pytest.mark.parametrize(("raw", "expected"), ROLLOUT_OK, ids=lambda v: repr(v)[:20])
def test_rollout_valid_values(raw, expected):
    assert rollout_percent(raw) == expected


@pytest.mark.parametrize("raw", ROLLOUT_FAIL_CLOSED, ids=lambda v: repr(v)[:20])
def test_rollout_invalid_values_fail_closed(raw):
    assert rollout_percent(raw) is None
    # Even a bucket-0 job is excluded: an untrusted percent admits nobody.
    job = make_job(BUCKET0_ID)
    decision = decide(job, make_controls(rollout=raw), make_allowlist())
    assert (decision.path, decision.code) == (PATH_STUB, ROLLOUT_EXCLUDED)
    assert decision.decided_by == 4


def test_from_mapping_reads_the_four_variables_and_treats_missing_as_unset():
    controls = Controls.from_mapping({})
    assert (controls.kill_engaged, controls.feature_on, controls.rollout, controls.allowlist_path) == (
        False,
        False,
        None,
        None,
    )
    controls = Controls.from_mapping(
        {
            "SLOTGEN_AI_KILL": "false",
            "FEATURE_SLOTGEN_AI": "true",
            "SLOTGEN_AI_ROLLOUT_PERCENT": "5",
            "SLOTGEN_AI_ALLOWLIST_PATH": "allowlists/x.json",
            "UNRELATED": "true",
        }
    )
    assert (controls.kill_engaged, controls.feature_on, controls.rollout, controls.allowlist_path) == (
        False,
        True,
        5,
        "allowlists/x.json",
    )
    assert Controls.from_mapping({"SLOTGEN_AI_ALLOWLIST_PATH": ""}).allowlist_path is None
    # as_env round-trips through a fresh parse
    assert Controls.from_mapping(controls.as_env()) == controls


def test_describe_controls_names_every_variable_and_the_fail_closed_cases():
    text = describe_controls(make_controls(kill="yes", feature=None, rollout="abc"))
    assert set(text) == {"SLOTGEN_AI_KILL", "FEATURE_SLOTGEN_AI", "SLOTGEN_AI_ROLLOUT_PERCENT", "SLOTGEN_AI_ALLOWLIST_PATH"}
    assert "engaged" in text["SLOTGEN_AI_KILL"]
    assert "fails closed" in text["SLOTGEN_AI_ROLLOUT_PERCENT"]
    assert "NOT_ALLOWLISTED" in text["SLOTGEN_AI_ALLOWLIST_PATH"]
    assert "every allowlisted job passes" in describe_controls(make_controls(rollout="0"))["SLOTGEN_AI_ROLLOUT_PERCENT"]
