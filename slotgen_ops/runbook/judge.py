"""The judge of one change against the runbook (`runbook.py`): the one step allowed next, the step a
change would be, whether it is allowed (or why not), and the canonical form of the value it sets.

The judge is pure: it sees a state and a change and says which step it is, or why not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR, kill_switch_engaged, rollout_percent
from ..errors import BadInput
from ..clock import parse_utc, until, utc_display
from .runbook import Runbook, Step


@dataclass(frozen=True)
class NextStep:
    """Where an environment stands: the next step and the value it sets."""

    step: Step | None  # None: Beta is live, nothing further
    value: str | None  # the exact value for rollout steps and kill-switch steps
    blocked_by: str | None = None  # a precondition not yet met (e.g. soak)

    @property
    def id(self) -> str | None:
        return self.step.id if self.step else None


def next_step(state: dict[str, Any], runbook: Runbook) -> NextStep:
    """The one step allowed next, derived from the state (never stored)."""
    controls = state["controls"]
    if not state["killConfirmed"]:
        return NextStep(runbook.step("kill-switch-on"), "true")
    rollout = rollout_percent(controls[ROLLOUT_VAR])
    if kill_switch_engaged(controls[KILL_VAR]):
        if controls[FEATURE_VAR] != "true":
            return NextStep(runbook.step("feature-flag-on"), "true")
        if not controls[ALLOWLIST_VAR]:
            return NextStep(runbook.step("allowlist-enable"), None)
        if not rollout:
            return NextStep(runbook.step("rollout-canary"), str(runbook.ladder[0]))
        if not state["stepVerified"]:
            return NextStep(runbook.step("verify"), None)
        return NextStep(runbook.step("kill-switch-off"), "false")
    higher = [rung for rung in runbook.ladder if rollout is not None and rung > rollout]
    if not higher:
        return NextStep(None, None)
    return NextStep(runbook.step("rollout-progression"), str(higher[0]))


@dataclass(frozen=True)
class Judgement:
    """The judge's verdict on one change: the step it is, or why it is refused."""

    step: Step | None
    refusal: str | None = None
    kind: str | None = None  # skipped, reordered, ladder-jump, rollout-zero-live, not-a-step, precondition, done

    @property
    def allowed(self) -> bool:
        return self.refusal is None


# Characters every env-file reader takes literally: no quotes, escapes, `$`, whitespace, or anything
# that some reader splits lines on (\r, \x1c-\x1e, \x85, \u2028, \u2029: str.splitlines() does).
_RUNTIME_SAFE = re.compile(r"[A-Za-z0-9._/+-]*")


def normalise_value(control: str, value: str) -> str:
    """The canonical form of a value an operator sets; BadInput if it is not one."""
    if control in (KILL_VAR, FEATURE_VAR):
        lowered = value.strip().lower()
        if lowered not in ("true", "false"):
            raise BadInput(f"{control}={value!r}: takes true or false")
        return lowered
    if control == ROLLOUT_VAR:
        if rollout_percent(value) is None:
            raise BadInput(f"{control}={value!r}: takes an integer 0..100 in decimal digits")
        return str(int(value))
    if control == ALLOWLIST_VAR:
        value = value.strip()
        if not _RUNTIME_SAFE.fullmatch(value):
            raise BadInput(f"{control}={value!r}: only letters, digits and . _ / + - are allowed, so that slotgen, "
                           "systemd's EnvironmentFile= and docker --env-file read the same path")
        return value
    raise BadInput(f"{control!r} is not a control (one of {KILL_VAR}, {FEATURE_VAR}, {ROLLOUT_VAR}, {ALLOWLIST_VAR})")


REDUCE = "reduce-exposure"


def reduce_step(control: str, value: str) -> Step:
    """Reducing exposure (SPEC section 6): always an allowed, recorded change, not a plan step."""
    return Step(id=REDUCE, title="Reduce exposure", control=control, value=value, requires=())


def needs_approval(step: Step, state: dict[str, Any]) -> bool:
    """Rollout increases need an approval; so does turning the kill-switch off after a rollback
    (SPEC section 6: it re-exposes the current rung)."""
    return "approval" in step.requires or (step.id == "kill-switch-off" and bool(state.get("rolledBack")))


def _reduction(state: dict[str, Any], runbook: Runbook, control: str, value: str) -> Judgement | None:
    """A change that reduces exposure, judged; None if the change does not reduce exposure."""
    controls = state["controls"]
    engaged = kill_switch_engaged(controls[KILL_VAR])
    step = reduce_step(control, value)
    if control == ROLLOUT_VAR:
        current = rollout_percent(controls[ROLLOUT_VAR]) or 0
        wanted = int(value)
        if not 0 < wanted < current:
            return None
        lower = [rung for rung in runbook.ladder if rung < current]
        if current in runbook.ladder and lower and wanted == lower[-1]:
            return Judgement(step)
        if not lower:
            return Judgement(step, f"{current} -> {wanted} is not a rung of the ladder {list(runbook.ladder)}",
                             "not-a-step")
        return Judgement(step, f"the rollout steps down one rung at a time: from {current} the next rung down is "
                         f"{lower[-1]}, not {wanted}", "ladder-jump")
    if control == FEATURE_VAR and value == "false" and controls[FEATURE_VAR] == "true":
        what = "the feature flag off"
    elif control == ALLOWLIST_VAR and value == "" and controls[ALLOWLIST_VAR]:
        what = "the allowlist off"
    else:
        return None
    if not engaged:
        return Judgement(step, f"turning {what} needs the kill-switch engaged first: run 'slotgen rollback', "
                         f"then turn {what}", "precondition")
    return Judgement(step)


def step_for_change(state: dict[str, Any], runbook: Runbook, control: str, value: str) -> Step | None:
    """Which runbook step a change to `control` = `value` would be, if any."""
    current = state["controls"]
    if control == KILL_VAR:
        return runbook.step("kill-switch-on" if value == "true" else "kill-switch-off")
    if control == FEATURE_VAR:
        return runbook.step("feature-flag-on") if value == "true" else None
    if control == ALLOWLIST_VAR:
        return runbook.step("allowlist-enable") if value else None
    if control == ROLLOUT_VAR:
        now = rollout_percent(current[ROLLOUT_VAR]) or 0
        return runbook.step("rollout-canary" if now == 0 else "rollout-progression")
    return None


def judge(state: dict[str, Any], runbook: Runbook, env: str, control: str, value: str,
          now: datetime) -> Judgement:
    """Is `control` = `value` the next step, with its preconditions met? (Pure.)"""
    nxt = next_step(state, runbook)
    step = step_for_change(state, runbook, control, value)
    controls = state["controls"]
    if control == ROLLOUT_VAR and value == "0" and not kill_switch_engaged(controls[KILL_VAR]):
        return Judgement(step, "a rollout of 0 while the kill-switch is off would admit every allowlisted job "
                         "(0 disables the rollout gate)", "rollout-zero-live")
    reduction = _reduction(state, runbook, control, value)
    if reduction is not None:
        return reduction
    if nxt.step is None:
        return Judgement(step, "Beta is live at the top of the ladder; the runbook has no further step "
                         f"(to reduce exposure: one rung down, {ROLLOUT_VAR}={_rung_below(runbook, controls)}, "
                         "or 'slotgen rollback')", "done")
    if control == ROLLOUT_VAR:
        current = rollout_percent(controls[ROLLOUT_VAR]) or 0
        wanted = int(value)
        if wanted == current and current != 0:
            done_step = runbook.step("rollout-canary" if current == runbook.ladder[0] else "rollout-progression")
            return Judgement(done_step, f"the rollout is already {current}; running its step again reorders the runbook",
                             "reordered")
        if wanted == 0 and current == 0:
            return Judgement(None, f"{control}=0 is not a runbook step (the rollout is already 0; the canary sets "
                             f"{runbook.ladder[0]})", "not-a-step")
        if wanted < current:
            return Judgement(step, f"{current} -> {value} would admit every allowlisted job (0 disables the "
                             "rollout gate); to reduce exposure step down one rung or use 'slotgen rollback'",
                             "not-a-step")
    if step is None:
        return Judgement(None, f"{control}={value or '(unset)'} is not a runbook step "
                         "(to switch the AI path off use 'slotgen rollback')", "not-a-step")
    if control == KILL_VAR and value == "true" and state["killConfirmed"]:
        return Judgement(step, "the kill-switch is already confirmed on (to engage it from a live state use 'slotgen rollback')",
                         "reordered" if kill_switch_engaged(controls[KILL_VAR]) else "not-a-step")
    if step.number < nxt.step.number:
        return Judgement(step, f"step {step.number} ({step.id}) is already done; running it again reorders the runbook",
                         "reordered")
    if step.number > nxt.step.number:
        return Judgement(step, f"step {step.number} ({step.id}) skips step {nxt.step.number} ({nxt.step.id})", "skipped")
    if nxt.value is not None and value != nxt.value:
        if control == ROLLOUT_VAR:
            return Judgement(step, f"{controls[ROLLOUT_VAR]} -> {value} jumps the ladder {list(runbook.ladder)}; "
                             f"the next rung is {nxt.value}", "ladder-jump")
        return Judgement(step, f"step {step.id} sets {control}={nxt.value}, not {value!r}", "not-a-step")
    unmet = unmet_requirement(step, state, runbook, env, now, skip=("approval",))
    if unmet is not None:
        return Judgement(step, unmet, "precondition")
    return Judgement(step)


def _rung_below(runbook: Runbook, controls: dict[str, Any]) -> str:
    current = rollout_percent(controls[ROLLOUT_VAR]) or 0
    lower = [rung for rung in runbook.ladder if rung < current]
    return str(lower[-1]) if lower else "(none)"


def unmet_requirement(step: Step, state: dict[str, Any], runbook: Runbook, env: str, now: datetime,
                      skip: tuple[str, ...] = ()) -> str | None:
    """The first precondition of `step` not met, in words, or None."""
    controls = state["controls"]
    for requirement in step.requires:
        if requirement in skip:
            continue
        if requirement == "kill-switch-engaged" and not kill_switch_engaged(controls[KILL_VAR]):
            return f"step {step.id} needs the kill-switch on"
        if requirement == "verification-passed" and not state["stepVerified"]:
            return (f"step {step.id} needs a recorded passing 'slotgen verify' since the last change "
                    "(step 5, verify)")
        if requirement == "rollout-nonzero" and not rollout_percent(controls[ROLLOUT_VAR]):
            return f"step {step.id} needs a rollout other than 0 (0 admits every allowlisted job)"
        if requirement == "live" and kill_switch_engaged(controls[KILL_VAR]):
            return f"step {step.id} needs the kill-switch off"
        if requirement == "verification-passing" and state["verificationPassing"] is not True:
            return f"step {step.id} needs the latest verification to have passed (run 'slotgen verify')"
        if requirement == "soak-elapsed":
            ready = soak_ready_at(state, runbook, env)
            if ready is not None and now < ready:
                return (f"step {step.id} needs the soak time to elapse: allowed {until(now, ready)} "
                        f"(from {utc_display(ready)})")
    return None


def soak_ready_at(state: dict[str, Any], runbook: Runbook, env: str) -> datetime | None:
    last = state.get("lastChangeAt")
    if not last:
        return None
    return parse_utc(last) + timedelta(minutes=runbook.soak_minutes(env))
