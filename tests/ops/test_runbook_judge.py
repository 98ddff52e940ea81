"""The runbook judge, pure: next_step and judge over the shipped runbook (SPEC section 2).

States are built by applying recorded entries (state.apply), the way the
service builds them, never by hand unless a test says so. Time is simulated:
every call passes `now` explicitly.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from helpers_runbook import (
    APPROVED_ALLOWLIST,
    STEP_CHANGE,
    T0,
    happy_walk,
    shipped_runbook,
)
from slotgen_ops.contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR
from slotgen_ops.errors import BadInput
from slotgen_ops.clock import parse_utc
from slotgen_ops.runbook.judge import judge, next_step, normalise_value, unmet_requirement
from slotgen_ops.runbook.runbook import STEP_ORDER

RUNBOOK = shipped_runbook()
ENV = "staging"
CONTROL_STEPS = [s for s in STEP_ORDER if s != "verify"]

# Next step id and value after each state S0..S7 of the happy walk.
EXPECTED_NEXT = [
    ("kill-switch-on", "true"),
    ("feature-flag-on", "true"),
    ("allowlist-enable", None),
    ("rollout-canary", "1"),
    ("verify", None),
    ("kill-switch-off", "false"),
    ("rollout-progression", "5"),
    (None, None),
]


@pytest.fixture(scope="module")
def walk():
    log, states = happy_walk(ENV)
    return log, states


def at(state) -> object:
    """A `now` comfortably after the state's last change (soak elapsed everywhere)."""
    last = state.get("lastChangeAt")
    return (parse_utc(last) if last else T0) + timedelta(days=1)


def j(state, control, value, env=ENV, now=None):
    return judge(state, RUNBOOK, env, control, value, now if now is not None else at(state))


# -- the shipped runbook ----------------------------------------------------------------


def test_shipped_runbook_is_the_plan():
    assert tuple(s.id for s in RUNBOOK.steps) == STEP_ORDER
    assert RUNBOOK.ladder == (1, 5)
    assert RUNBOOK.soak_minutes("staging") == 0
    assert RUNBOOK.soak_minutes("production") == 30
    assert [s.number for s in RUNBOOK.steps] == list(range(1, 8))


# -- the happy sequence ------------------------------------------------------------------


def test_happy_sequence_next_steps_in_order(walk):
    _, states = walk
    got = [(next_step(s, RUNBOOK).id, next_step(s, RUNBOOK).value) for s in states]
    assert got == EXPECTED_NEXT
    assert [n for n, _ in got[:-1]] == list(STEP_ORDER)
    assert [RUNBOOK.step(n).number for n, _ in got[:-1]] == list(range(1, 8))


def test_happy_sequence_rollout_progression_0_1_5(walk):
    _, states = walk
    assert [s["controls"][ROLLOUT_VAR] for s in states] == ["0", "0", "0", "0", "1", "1", "1", "5"]
    assert [s["controls"][KILL_VAR] for s in states] == ["true"] * 6 + ["false", "false"]
    final = states[-1]["controls"]
    assert final == {KILL_VAR: "false", FEATURE_VAR: "true", ROLLOUT_VAR: "5", ALLOWLIST_VAR: APPROVED_ALLOWLIST}


@pytest.mark.parametrize("env", ["staging", "production"])
def test_happy_sequence_each_step_is_allowed(env):
    _, states = happy_walk(env)
    for index, state in enumerate(states[:-1]):
        step_id, _ = EXPECTED_NEXT[index]
        if step_id == "verify":
            continue  # not a `set`: completed by a recorded passing verify
        control, value = STEP_CHANGE[step_id]
        verdict = j(state, control, value, env=env)
        assert verdict.allowed, (index, verdict)
        assert verdict.step.id == step_id and verdict.kind is None


def test_beta_live_at_top_has_no_next(walk):
    _, states = walk
    assert next_step(states[-1], RUNBOOK).step is None
    assert next_step(states[-1], RUNBOOK).id is None


def test_after_rollback_from_live_next_is_verify_then_kill_off(walk):
    log, _ = walk
    log = copy.deepcopy(log)
    last = parse_utc(log.state["lastChangeAt"])
    log.rollback(last + timedelta(minutes=5))
    assert next_step(log.state, RUNBOOK).id == "verify"
    assert not j(log.state, KILL_VAR, "false").allowed
    log.verify(last + timedelta(minutes=6), True, step="verify")
    assert next_step(log.state, RUNBOOK).id == "kill-switch-off"
    assert j(log.state, KILL_VAR, "false").allowed


# -- skipped -----------------------------------------------------------------------------


def _later_attempts():
    for index, (nxt, _) in enumerate(EXPECTED_NEXT[:-1]):
        here = STEP_ORDER.index(nxt)
        for step_id in CONTROL_STEPS:
            if STEP_ORDER.index(step_id) > here:
                yield index, step_id


@pytest.mark.parametrize(("index", "attempt"), list(_later_attempts()))
def test_every_later_step_attempted_early_is_skipped(walk, index, attempt):
    _, states = walk
    control, value = STEP_CHANGE[attempt]
    verdict = j(states[index], control, value)
    assert not verdict.allowed
    if index == 3 and attempt == "rollout-progression":
        # At the canary step, 0 -> 5 is the canary with the wrong value: a ladder jump.
        assert verdict.kind == "ladder-jump"
    else:
        assert verdict.kind == "skipped", verdict
        assert "skips step" in verdict.refusal


# -- reordered ---------------------------------------------------------------------------

# Repeating a done step is "reordered", except where another rule comes first:
# - the kill-switch-on confirmation once live is not a step (rollback engages it);
# - at the ladder top every change is refused as "done";
# - repeating the canary value (rollout 1) after the canary: its own test below
#   (regression: it was once reported as "skipped" / "ladder-jump 1 -> 1").
def _done_attempts():
    for index, (nxt, _) in enumerate(EXPECTED_NEXT):
        here = STEP_ORDER.index(nxt) if nxt else len(STEP_ORDER)
        for step_id in CONTROL_STEPS:
            if STEP_ORDER.index(step_id) < here:
                yield index, step_id


REORDER_EXCEPTIONS = {
    (6, "kill-switch-on"): "not-a-step",
}
CANARY_REPEATS = {(4, "rollout-canary"), (5, "rollout-canary"), (6, "rollout-canary")}
# Live at 5, "ROLLOUT=1" is one rung down: reducing exposure, allowed (SPEC section 6).
STEP_DOWNS = {(7, "rollout-canary")}


@pytest.mark.parametrize(("index", "attempt"), list(_done_attempts()))
def test_every_done_step_attempted_again_is_refused(walk, index, attempt):
    _, states = walk
    control, value = STEP_CHANGE[attempt]
    verdict = j(states[index], control, value)
    if (index, attempt) in STEP_DOWNS:
        assert verdict.allowed and verdict.step.id == "reduce-exposure", verdict
        return
    assert not verdict.allowed
    if index == 7:
        assert verdict.kind == "done"
    elif (index, attempt) in CANARY_REPEATS:
        pass  # refused; its kind is checked by test_repeating_the_canary_is_reordered
    else:
        assert verdict.kind == REORDER_EXCEPTIONS.get((index, attempt), "reordered"), verdict


@pytest.mark.parametrize("index", sorted(i for i, _ in CANARY_REPEATS))
def test_repeating_the_canary_is_reordered(walk, index):
    # Regression: a rollout change was classified by the current rollout, not by the change.
    _, states = walk
    verdict = j(states[index], ROLLOUT_VAR, "1")
    assert not verdict.allowed and verdict.kind == "reordered", verdict
    assert "already 1" in verdict.refusal


def test_kill_switch_on_again_while_engaged_is_reordered(walk):
    _, states = walk
    for index in range(1, 6):
        verdict = j(states[index], KILL_VAR, "true")
        assert verdict.kind == "reordered"
        assert "already confirmed" in verdict.refusal


# -- ladder -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["5", "100", "2"])
def test_ladder_jump_from_zero(walk, value):
    _, states = walk
    verdict = j(states[3], ROLLOUT_VAR, value)
    assert not verdict.allowed and verdict.kind == "ladder-jump"
    assert "next rung is 1" in verdict.refusal


def test_ladder_jump_past_the_next_rung_when_live():
    runbook = replace(shipped_runbook(), ladder=(1, 5, 10))
    _, states = happy_walk(ENV)
    live_at_1 = states[6]
    verdict = judge(live_at_1, runbook, ENV, ROLLOUT_VAR, "10", at(live_at_1))
    assert verdict.kind == "ladder-jump" and "next rung is 5" in verdict.refusal


@pytest.mark.parametrize("index", [6, 7])
def test_rollout_zero_while_live_is_refused(walk, index):
    _, states = walk
    verdict = j(states[index], ROLLOUT_VAR, "0")
    assert not verdict.allowed and verdict.kind == "rollout-zero-live"
    assert "0 disables the rollout gate" in verdict.refusal


def test_rollout_one_rung_down_while_live_is_allowed():
    # A three-rung ladder so that a step down live is neither 0 nor from the top.
    runbook = replace(shipped_runbook(), ladder=(1, 5, 10))
    _, states = happy_walk(ENV)
    live_at_5 = states[7]
    assert next_step(live_at_5, runbook).value == "10"
    verdict = judge(live_at_5, runbook, ENV, ROLLOUT_VAR, "1", at(live_at_5))
    assert verdict.allowed and verdict.step.id == "reduce-exposure" and verdict.step.number is None


def test_rollout_two_rungs_down_is_a_ladder_jump():
    runbook = replace(shipped_runbook(), ladder=(1, 5, 10))
    _, states = happy_walk(ENV)
    live_at_5 = states[7]
    at_10 = {**live_at_5, "controls": {**live_at_5["controls"], ROLLOUT_VAR: "10"}}
    verdict = judge(at_10, runbook, ENV, ROLLOUT_VAR, "1", at(at_10))
    assert not verdict.allowed and verdict.kind == "ladder-jump"
    assert "next rung down is 5" in verdict.refusal
    assert judge(at_10, runbook, ENV, ROLLOUT_VAR, "5", at(at_10)).allowed


def test_rollout_one_rung_down_from_the_top_is_allowed(walk):
    _, states = walk
    verdict = j(states[7], ROLLOUT_VAR, "1")
    assert verdict.allowed and verdict.step.id == "reduce-exposure"


def test_rollout_one_rung_down_with_the_kill_switch_engaged_is_allowed(walk):
    _, states = walk
    at_5_engaged = {**states[7], "controls": {**states[7]["controls"], KILL_VAR: "true"}}
    assert j(at_5_engaged, ROLLOUT_VAR, "1").allowed


@pytest.mark.parametrize("index", [4, 5])
def test_rollout_decrease_with_kill_switch_on_is_refused(walk, index):
    _, states = walk
    assert not j(states[index], ROLLOUT_VAR, "0").allowed


@pytest.mark.parametrize("index", [4, 5])
def test_rollout_to_zero_says_it_admits_everyone(walk, index):
    # Regression: this was reported as "skipped: step 7 (rollout-progression) skips step 5 (verify)".
    _, states = walk
    verdict = j(states[index], ROLLOUT_VAR, "0")
    assert verdict.kind == "not-a-step" and "0 disables the rollout gate" in verdict.refusal, verdict


# -- not a step ----------------------------------------------------------------------------


# Which states have the control on to turn off (feature from step 2, allowlist from step 3), kill engaged (< 6).
@pytest.mark.parametrize("index", range(8))
@pytest.mark.parametrize(("control", "value", "on_from"), [(FEATURE_VAR, "false", 2), (ALLOWLIST_VAR, "", 3)])
def test_feature_off_and_allowlist_unset(walk, index, control, value, on_from):
    """SPEC section 6: with the kill-switch engaged, turning them off reduces exposure and is allowed;
    live, it needs a rollback first; when already off it is no step at all."""
    _, states = walk
    verdict = j(states[index], control, value)
    if index < on_from:
        assert not verdict.allowed and verdict.kind == "not-a-step" and verdict.step is None, verdict
        assert "slotgen rollback" in verdict.refusal
    elif index < 6:
        assert verdict.allowed and verdict.step.id == "reduce-exposure", verdict
    else:
        assert not verdict.allowed and verdict.kind == "precondition", verdict
        assert "kill-switch engaged first" in verdict.refusal and "slotgen rollback" in verdict.refusal


def test_kill_switch_on_while_live_below_top_is_not_a_step(walk):
    _, states = walk
    verdict = j(states[6], KILL_VAR, "true")
    assert not verdict.allowed and verdict.kind == "not-a-step"
    assert "rollback" in verdict.refusal


# -- kill-switch-off preconditions ---------------------------------------------------------


def test_kill_switch_off_needs_a_recorded_passing_verify(walk):
    _, states = walk
    after_canary = states[4]  # its after-change verification passed, but that is not step 5
    assert after_canary["verificationPassing"] is True and after_canary["stepVerified"] is False
    verdict = j(after_canary, KILL_VAR, "false")
    assert not verdict.allowed and verdict.kind == "skipped"
    assert "step 5 (verify)" in verdict.refusal


def test_kill_switch_off_after_a_failed_verify_is_refused(walk):
    log, _ = walk
    log = copy.deepcopy(log)
    # Rewind to the canary state and record a failing explicit verify.
    log.entries = log.entries[:9]
    assert next_step(log.state, RUNBOOK).id == "verify"
    log.verify(T0 + timedelta(hours=5), False, step="verify")
    assert log.state["stepVerified"] is False
    assert not j(log.state, KILL_VAR, "false").allowed


def test_a_change_after_the_verify_undoes_it(walk):
    log, _ = walk
    log = copy.deepcopy(log)
    log.entries = log.entries[:10]  # step 5 done
    assert next_step(log.state, RUNBOOK).id == "kill-switch-off"
    log.rollback(T0 + timedelta(hours=5))
    assert log.state["stepVerified"] is False
    assert next_step(log.state, RUNBOOK).id == "verify"
    assert not j(log.state, KILL_VAR, "false").allowed


def test_kill_switch_off_with_rollout_zero_is_impossible(walk):
    _, states = walk
    at_canary = states[3]
    verdict = j(at_canary, KILL_VAR, "false")
    assert not verdict.allowed and verdict.kind == "skipped"
    # Even a state claiming step 5 done with rollout 0 (hand-built: the service never makes one).
    forged = copy.deepcopy(at_canary)
    forged["stepVerified"] = True
    forged["verificationPassing"] = True
    assert not j(forged, KILL_VAR, "false").allowed
    assert next_step(forged, RUNBOOK).id == "rollout-canary"
    # The precondition itself, as status/next report it.
    unmet = unmet_requirement(RUNBOOK.step("kill-switch-off"), forged, RUNBOOK, ENV, at(forged))
    assert unmet is not None and "rollout other than 0" in unmet


# -- rollout-progression preconditions ---------------------------------------------------


def test_progression_waits_for_the_production_soak():
    _, states = happy_walk("production")
    live = states[6]
    last = parse_utc(live["lastChangeAt"])
    early = judge(live, RUNBOOK, "production", ROLLOUT_VAR, "5", last + timedelta(minutes=30) - timedelta(seconds=1))
    assert not early.allowed and early.kind == "precondition" and "soak" in early.refusal
    assert "allowed in 1 s (from " in early.refusal, early.refusal
    too_early = judge(live, RUNBOOK, "production", ROLLOUT_VAR, "5", last)
    assert not too_early.allowed and too_early.kind == "precondition"
    assert "allowed in 30 min (from " in too_early.refusal, "an operator reads how long, not only when"
    a_minute_in = judge(live, RUNBOOK, "production", ROLLOUT_VAR, "5", last + timedelta(seconds=61))
    assert "allowed in 29 min" in a_minute_in.refusal
    ready = judge(live, RUNBOOK, "production", ROLLOUT_VAR, "5", last + timedelta(minutes=30))
    assert ready.allowed and ready.step.id == "rollout-progression"
    later = judge(live, RUNBOOK, "production", ROLLOUT_VAR, "5", last + timedelta(minutes=31))
    assert later.allowed


def test_progression_in_staging_has_no_soak():
    _, states = happy_walk("staging")
    live = states[6]
    last = parse_utc(live["lastChangeAt"])
    assert judge(live, RUNBOOK, "staging", ROLLOUT_VAR, "5", last).allowed


def test_unknown_environment_uses_the_default_soak():
    _, states = happy_walk("qa")
    live = states[6]
    last = parse_utc(live["lastChangeAt"])
    assert not judge(live, RUNBOOK, "qa", ROLLOUT_VAR, "5", last + timedelta(minutes=29)).allowed
    assert judge(live, RUNBOOK, "qa", ROLLOUT_VAR, "5", last + timedelta(minutes=30)).allowed


def test_progression_refused_while_the_latest_verification_failed(walk):
    log, _ = walk
    log = copy.deepcopy(log)
    log.entries = log.entries[:12]  # live at 1, after-change verify passed
    assert next_step(log.state, RUNBOOK).id == "rollout-progression"
    log.verify(parse_utc(log.state["lastChangeAt"]) + timedelta(hours=2), False)
    verdict = j(log.state, ROLLOUT_VAR, "5")
    assert not verdict.allowed and verdict.kind == "precondition"
    assert "latest verification" in verdict.refusal


def test_progression_refused_without_a_verification_since_the_change(walk):
    log, _ = walk
    log = copy.deepcopy(log)
    log.entries = log.entries[:11]  # live at 1, no verification recorded since
    assert log.state["verificationPassing"] is None
    verdict = j(log.state, ROLLOUT_VAR, "5")
    assert not verdict.allowed and verdict.kind == "precondition"


# -- after the top -----------------------------------------------------------------------


@pytest.mark.parametrize(("control", "value"), [
    (KILL_VAR, "true"), (KILL_VAR, "false"), (FEATURE_VAR, "true"), (FEATURE_VAR, "false"),
    (ROLLOUT_VAR, "5"), (ROLLOUT_VAR, "100"), (ROLLOUT_VAR, "1"),
    (ALLOWLIST_VAR, APPROVED_ALLOWLIST), (ALLOWLIST_VAR, "allowlists/other.json"), (ALLOWLIST_VAR, ""),
])
def test_nothing_after_the_ladder_top(walk, control, value):
    _, states = walk
    verdict = j(states[7], control, value)
    if (control, value) == (ROLLOUT_VAR, "1"):  # one rung down: allowed (tested above)
        assert verdict.allowed
        return
    assert not verdict.allowed and verdict.kind in ("done", "precondition")
    assert "rollback" in verdict.refusal


# -- the judge is pure ---------------------------------------------------------------------


def test_judge_does_not_mutate_the_state(walk):
    _, states = walk
    for state in states:
        before = copy.deepcopy(state)
        for step_id in CONTROL_STEPS:
            control, value = STEP_CHANGE[step_id]
            j(state, control, value)
        next_step(state, RUNBOOK)
        assert state == before


# -- normalise_value ---------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("true", "true"), ("TRUE", "true"), (" false ", "false"),
                                               ("False", "false"), ("\ttrue\n", "true")])
@pytest.mark.parametrize("control", [KILL_VAR, FEATURE_VAR])
def test_normalise_boolean_accepts(control, raw, expected):
    assert normalise_value(control, raw) == expected


@pytest.mark.parametrize("raw", ["yes", "1", "0", "on", "", " ", "truee", "no"])
def test_normalise_kill_switch_refuses(raw):
    with pytest.raises(BadInput):
        normalise_value(KILL_VAR, raw)


@pytest.mark.parametrize(("raw", "expected"), [("0", "0"), ("1", "1"), ("5", "5"), ("100", "100"), ("05", "5")])
def test_normalise_rollout_accepts(raw, expected):
    assert normalise_value(ROLLOUT_VAR, raw) == expected


@pytest.mark.parametrize("raw", ["abc", "101", "-1", " 5", "5 ", "+5", "1.0", "", "١", "1000"])
def test_normalise_rollout_refuses(raw):
    with pytest.raises(BadInput):
        normalise_value(ROLLOUT_VAR, raw)


def test_normalise_allowlist_trims_and_unknown_control_refused():
    assert normalise_value(ALLOWLIST_VAR, f"  {APPROVED_ALLOWLIST} ") == APPROVED_ALLOWLIST
    with pytest.raises(BadInput):
        normalise_value("OPENAI_API_KEY", "x")


# Regression: 0 -> 0 with the kill-switch on was judged a ladder jump or a skipped canary.
@pytest.mark.parametrize("index", range(4))
def test_rollout_zero_when_already_zero_is_not_a_step(walk, index):
    _, states = walk
    verdict = j(states[index], ROLLOUT_VAR, "0")
    assert not verdict.allowed
    assert verdict.kind == "not-a-step", verdict


@pytest.mark.parametrize(("seconds", "words"), [(0, "now"), (-5, "now"), (1, "in 1 s"), (59, "in 59 s"),
                                                (60, "in 1 min"), (61, "in 2 min"), (3599, "in 1 h"),
                                                (3600, "in 1 h"), (3660, "in 1 h 1 min"), (90000, "in 25 h")])
def test_waits_are_said_in_words_rounded_up(seconds, words):
    from slotgen_ops.clock import until

    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    assert until(now, now + timedelta(seconds=seconds)) == words
