"""Judging an environment after a change: sample jobs run through the real engine, executor and
telemetry, each check passed or failed with its cause. Observed verification lands here next."""

from ..lazy import exports

_WHERE = {
    "run_verification": "samples",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
