"""Shared builders for the runtime tests (plain functions, usable from hypothesis)."""

from __future__ import annotations

from typing import Any

from slotgen_ops.contract import Allowlist, Controls, parse_allowlist

COHORT = {"kind": "question-slots", "subject": "mathematics", "level": "gcse", "board": "aqa", "specVersion": "8300"}

# Every gate open: kill-switch off, feature on, rollout gate disabled (0).
OPEN = {"SLOTGEN_AI_KILL": "false", "FEATURE_SLOTGEN_AI": "true", "SLOTGEN_AI_ROLLOUT_PERCENT": "0"}


def make_allowlist(enabled: bool = True, **rule: Any) -> Allowlist:
    """A one-rule allowlist admitting COHORT (fields overridable)."""
    return parse_allowlist(
        {"schemaVersion": 1, "version": "v1", "enabled": enabled, "rules": [{"id": "r1", **COHORT, **rule}]}
    )


def make_controls(**overrides: str | None) -> Controls:
    """OPEN controls with some env vars replaced (None: unset)."""
    env = dict(OPEN)
    env.update(overrides)
    return Controls.from_mapping({k: v for k, v in env.items() if v is not None})


def make_job(job_id: str = "job-000001", allow_ai: Any = True, **fields: Any) -> dict[str, Any]:
    """A job in the cohort, opted in; it passes every gate under OPEN controls."""
    return {
        "jobId": job_id,
        **COHORT,
        "metadata": {"allowAI": allow_ai},
        "payload": {"topic": "fractions", "count": 2},
        **fields,
    }
