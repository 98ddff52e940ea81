"""Judging an environment after a change: sample jobs run through the real engine, executor and
telemetry; and observed verification: the hosts' own telemetry judged by seven checks."""

from ..lazy import exports

_WHERE = {
    "binomial_p_value": "bounds",
    "judge_window": "observed",
    "rate_bounds": "bounds",
    "read_directory": "events",
    "run_verification": "samples",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
