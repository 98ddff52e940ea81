"""Runtime controls, parsed exactly as the Phase 4D contract says (SPEC section 1).

Every parser is total: any string (or None for unset) maps to a verdict, and
every doubt resolves towards the STUB path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

KILL_VAR = "SLOTGEN_AI_KILL"
FEATURE_VAR = "FEATURE_SLOTGEN_AI"
ROLLOUT_VAR = "SLOTGEN_AI_ROLLOUT_PERCENT"
ALLOWLIST_VAR = "SLOTGEN_AI_ALLOWLIST_PATH"

CONTROL_VARS: tuple[str, ...] = (KILL_VAR, FEATURE_VAR, ROLLOUT_VAR, ALLOWLIST_VAR)

# ASCII digits only: str.isdigit() would accept "١" or "²".
_ROLLOUT_RE = re.compile(r"[0-9]+\Z")


def kill_switch_engaged(raw: str | None) -> bool:
    """Fail safe: engaged unless unset, empty or `false` (trimmed, any case)."""
    if raw is None:
        return False
    value = raw.strip().lower()
    return not (value == "" or value == "false")


def feature_flag_on(raw: str | None) -> bool:
    """On only when the value is `true` (trimmed, any case). Default off."""
    return raw is not None and raw.strip().lower() == "true"


def rollout_percent(raw: str | None) -> int | None:
    """An integer 0..100 in decimal digits, else None (the gate fails closed).

    No trimming and no sign: the contract asks for decimal digits, and a value
    that is not exactly that is not trusted (README: "Choices").
    """
    if raw is None or not _ROLLOUT_RE.match(raw):
        return None
    # int() refuses strings over 4300 digits (ValueError); stay total.
    digits = raw.lstrip("0")
    if len(digits) > 3:
        return None
    value = int(digits) if digits else 0
    return value if value <= 100 else None


@dataclass(frozen=True, slots=True)
class Controls:
    """The four runtime controls: the raw values and what they mean."""

    kill_raw: str | None
    feature_raw: str | None
    rollout_raw: str | None
    allowlist_path: str | None
    kill_engaged: bool
    feature_on: bool
    rollout: int | None  # None: not a valid percent, the rollout gate fails closed

    @classmethod
    def from_mapping(cls, env: Mapping[str, str | None]) -> "Controls":
        """Read the controls from an environment-like mapping (missing = unset)."""
        kill = env.get(KILL_VAR)
        feature = env.get(FEATURE_VAR)
        rollout = env.get(ROLLOUT_VAR)
        allowlist = env.get(ALLOWLIST_VAR)
        return cls(
            kill_raw=kill,
            feature_raw=feature,
            rollout_raw=rollout,
            allowlist_path=allowlist if allowlist else None,
            kill_engaged=kill_switch_engaged(kill),
            feature_on=feature_flag_on(feature),
            rollout=rollout_percent(rollout),
        )

    def as_env(self) -> dict[str, str | None]:
        """The raw values, keyed by env var name (None = unset)."""
        return {
            KILL_VAR: self.kill_raw,
            FEATURE_VAR: self.feature_raw,
            ROLLOUT_VAR: self.rollout_raw,
            ALLOWLIST_VAR: self.allowlist_path,
        }


def describe_controls(controls: Controls) -> dict[str, str]:
    """What each control means, in plain words an operator reads at 3 a.m."""
    if controls.kill_engaged:
        kill = f"engaged ({controls.kill_raw!r}): every job takes the STUB path"
    elif controls.kill_raw is None:
        kill = "unset = off: jobs may reach the AI path if every other gate passes"
    else:
        kill = f"off ({controls.kill_raw!r}): jobs may reach the AI path if every other gate passes"
    feature = (
        "on: the AI path is enabled"
        if controls.feature_on
        else "off: every job takes the STUB path (FEATURE_DISABLED)"
    )
    if controls.rollout is None:
        shown = "unset" if controls.rollout_raw is None else repr(controls.rollout_raw)
        rollout = f"{shown} is not an integer 0..100: fails closed, every job ROLLOUT_EXCLUDED"
    elif controls.rollout == 0:
        rollout = "0 = gate disabled: every allowlisted job passes"
    elif controls.rollout == 100:
        rollout = "100 = every allowlisted job passes"
    else:
        rollout = f"{controls.rollout} = allowlisted jobs with bucket < {controls.rollout} pass"
    allowlist = (
        "unset: no job is allowlisted (NOT_ALLOWLISTED)"
        if controls.allowlist_path is None
        else f"{controls.allowlist_path}: jobs matching one of its rules are allowlisted"
    )
    return {KILL_VAR: kill, FEATURE_VAR: feature, ROLLOUT_VAR: rollout, ALLOWLIST_VAR: allowlist}
