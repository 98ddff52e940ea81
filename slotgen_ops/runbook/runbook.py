"""The Phase 5 runbook as data: its steps, ladder, soak times and bounds, loaded and checked.

The steps and their order come from `runbooks/beta-enable.yaml` and are
checked against the plan's fixed order (seed 000, "Allowed Change Order
(Strict)": no step may be skipped, reordered, or combined). Judging a change
against the runbook is `judge.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR, rollout_percent
from ..errors import BadInput
from ..policy.fields import Checked, Field, Integer, Items, Mapping, Model, Number, OneOf, Optional, Text

STEP_ORDER = (
    "kill-switch-on", "feature-flag-on", "allowlist-enable", "rollout-canary",
    "verify", "kill-switch-off", "rollout-progression",
)
CHECK_NAMES = ("executor-status-schema", "telemetry-schema", "path-behavior", "error-codes", "expected-decisions",
               "latency")
CONTROLS = (KILL_VAR, FEATURE_VAR, ROLLOUT_VAR, ALLOWLIST_VAR)
REQUIREMENTS = ("kill-switch-engaged", "approval", "verification-passed", "rollout-nonzero", "live",
                "verification-passing", "soak-elapsed")


@dataclass(frozen=True)
class Step:
    id: str
    control: str | None
    value: str | None
    requires: tuple[str, ...]
    title: str = ""

    FIELDS = {
        "id": Field(Text()),
        "title": Field(Text(), ""),
        "control": Field(OneOf(*CONTROLS, None)),
        "value": Field(Optional(Text())),
        "requires": Field(Items(OneOf(*REQUIREMENTS))),
    }

    @property
    def number(self) -> int | None:
        """The step's number in the plan (None for a step down, which is not one of the seven)."""
        return STEP_ORDER.index(self.id) + 1 if self.id in STEP_ORDER else None


@dataclass(frozen=True)
class MinimalCohort:
    maxRules: int
    maxCombinations: int

    FIELDS = {"maxRules": Field(Integer(ge=1)), "maxCombinations": Field(Integer(ge=1))}


@dataclass(frozen=True)
class VerificationSettings:
    sampleJobs: str
    minSamples: dict[str, int]

    FIELDS = {"sampleJobs": Field(Text(min_length=1)),
              "minSamples": Field(Mapping(Integer(), keys=OneOf(*CHECK_NAMES)))}


@dataclass(frozen=True)
class ApprovalSettings:
    ttlHours: float

    FIELDS = {"ttlHours": Field(Number(gt=0, le=168))}


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _required(value: dict[str, bool]) -> dict[str, bool]:
    if "default" not in value:
        raise ValueError("needs a 'default'")
    return value


@dataclass(frozen=True)
class ObservedSettings:
    """Observed verification's parameters (SPEC section 12): the window, the minimum counts, the limits."""

    propagationSeconds: float = 5.0
    minEvents: int = 100
    minGateEvents: int = 100
    minOpenaiEvents: int = 30
    maxErrorRate: float = 0.05
    srmAlpha: float = 0.001
    required: dict[str, bool] = field(default_factory=lambda: {"staging": False, "production": True,
                                                                "default": True})

    FIELDS = {
        "propagationSeconds": Field(Checked(Number(le=3600), _not_negative), 5.0),
        "minEvents": Field(Integer(ge=1), 100),
        "minGateEvents": Field(Integer(ge=1), 100),
        "minOpenaiEvents": Field(Integer(ge=1), 30),
        "maxErrorRate": Field(Number(gt=0, le=1), 0.05),
        "srmAlpha": Field(Number(gt=0, le=0.5), 0.001),
        "required": Field(Checked(Mapping(OneOf(True, False)), _required),
                          {"staging": False, "production": True, "default": True}),
    }

    def required_for(self, env: str) -> bool:
        return self.required.get(env, self.required["default"])


def _order(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    if tuple(s.id for s in steps) != STEP_ORDER:
        raise ValueError(f"the steps must be exactly, in order: {', '.join(STEP_ORDER)}")
    return steps


def _ladder(ladder: tuple[int, ...]) -> tuple[int, ...]:
    if any(not 1 <= v <= 100 for v in ladder) or list(ladder) != sorted(set(ladder)):
        raise ValueError("the ladder must rise strictly, each rung 1..100")
    return ladder


def _soak(soak: dict[str, int]) -> dict[str, int]:
    if "default" not in soak or any(v < 0 for v in soak.values()):
        raise ValueError("needs a 'default' and non-negative minutes")
    return soak


def _latency(bounds: dict[str, int]) -> dict[str, int]:
    if not bounds:
        raise ValueError("at least one bound is required")
    for level, bound in bounds.items():
        if rollout_percent(level) is None or bound < 1:
            raise ValueError(f"level {level!r} must be 0..100 with a bound of at least 1 ms")
    return bounds


@dataclass(frozen=True)
class Runbook:
    schemaVersion: int
    id: str
    steps: tuple[Step, ...]
    ladder: tuple[int, ...]
    minimalCohort: MinimalCohort
    soakMinutes: dict[str, int]
    latencyP95Ms: dict[str, int]
    verification: VerificationSettings
    approvals: ApprovalSettings
    observed: ObservedSettings = ObservedSettings()
    title: str = ""
    path: Path | None = None  # where it was read from (not a key of the file)

    FIELDS = {
        "schemaVersion": Field(OneOf(1)),
        "id": Field(Text(min_length=1)),
        "title": Field(Text(), ""),
        "steps": Field(Checked(Items(Model(Step)), _order)),
        "ladder": Field(Checked(Items(Integer(), min_length=1), _ladder)),
        "minimalCohort": Field(Model(MinimalCohort)),
        "soakMinutes": Field(Checked(Mapping(Integer()), _soak)),
        "latencyP95Ms": Field(Checked(Mapping(Integer()), _latency)),
        "verification": Field(Model(VerificationSettings)),
        "approvals": Field(Model(ApprovalSettings)),
        "observed": Field(Model(ObservedSettings), ObservedSettings()),
    }

    @classmethod
    def load(cls, path: Path, check_schema: bool = False) -> "Runbook":
        """Load and validate a runbook file; `check_schema` also runs the JSON schema."""
        from ..policy.yamlfile import load_yaml_model

        if check_schema:
            check_runbook_schema(path)
        runbook = load_yaml_model(path, cls)
        return replace(runbook, path=path)

    def step(self, step_id: str) -> Step:
        return self.steps[STEP_ORDER.index(step_id)]

    def soak_minutes(self, env: str) -> int:
        return self.soakMinutes.get(env, self.soakMinutes["default"])

    def latency_bound_ms(self, rollout: int) -> int:
        """The bound of the highest level not above `rollout` (the lowest level if none is)."""
        levels = sorted((int(k), v) for k, v in self.latencyP95Ms.items())
        bound = levels[0][1]
        for level, value in levels:
            if level <= rollout:
                bound = value
        return bound

    def min_samples(self, check: str) -> int:
        return self.verification.minSamples.get(check, 1)

    @property
    def sample_jobs_path(self) -> Path:
        base = self.path.parent if self.path is not None else Path(".")
        return base / self.verification.sampleJobs


def check_runbook_schema(path: Path) -> None:
    """Validate a runbook file against schemas/runbook.schema.json (imports jsonschema)."""
    import yaml

    from ..policy.yamlfile import read_config_text, safe_load

    from ..runtime.schemas import schema_errors

    try:
        doc = safe_load(read_config_text(path))
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: cannot read runbook ({exc.__class__.__name__})") from None
    errors = schema_errors("runbook", doc)
    if errors:
        raise BadInput(f"{path}: runbook breaks its schema: {errors[0]}")
