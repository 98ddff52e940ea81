"""Phase 4D, pure: the controls, the allowlist, the bucket function and decide(), STUB or OpenAI and why.
No I/O and no import from any other layer: every runtime and every command judges a job with this."""

from .allowlist import Allowlist, AllowlistInvalid, AllowlistUnavailable, parse_allowlist
from .bucket import bucket
from .controls import (
    ALLOWLIST_VAR,
    CONTROL_VARS,
    FEATURE_VAR,
    KILL_VAR,
    ROLLOUT_VAR,
    Controls,
    describe_controls,
    feature_flag_on,
    kill_switch_engaged,
    rollout_percent,
)
from .decision import PATH_OPENAI, PATH_STUB, Decision, GateVerdict
from .job import job_problem
from .order import (
    FEATURE_DISABLED,
    GATES,
    GATING_CODES,
    KILL_SWITCH,
    NOT_ALLOWLISTED,
    ROLLOUT_EXCLUDED,
    decide,
)

__all__ = [
    "ALLOWLIST_VAR", "CONTROL_VARS", "FEATURE_VAR", "KILL_VAR", "ROLLOUT_VAR",
    "FEATURE_DISABLED", "GATES", "GATING_CODES", "KILL_SWITCH", "NOT_ALLOWLISTED",
    "PATH_OPENAI", "PATH_STUB", "ROLLOUT_EXCLUDED",
    "Allowlist", "AllowlistInvalid", "AllowlistUnavailable", "Controls", "Decision", "GateVerdict",
    "bucket", "decide", "describe_controls", "feature_flag_on", "job_problem",
    "kill_switch_engaged", "parse_allowlist", "rollout_percent",
]
