"""One observed judgement of an environment: its telemetry source, the window since its last change, the checks.

What is expected comes from the log (the state after its head entry): the
controls it records, the version of the allowlist they name, the runbook's
latency bound for the rollout level and its `observed:` parameters. What is
seen comes from the source slotgen.yaml names for the environment
(`environments.<E>.telemetry`, pinned policy): `files: DIR` today.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..clock import now_utc, parse_utc_or_none
from ..contract import Controls
from ..errors import BadInput
from ..runtime.allowlist_file import load_allowlist
from .events import read_directory
from .observed import HOUR, Expected, judge_window

__all__ = ["evidence", "observe", "telemetry_directory"]


def telemetry_directory(env: Any):
    """The environment's telemetry directory; BadInput when observed verification is off or not from files."""
    settings = env.config.telemetry if env.config is not None else None
    if settings is None:
        raise BadInput(f"observed verification is off for {env.name}: slotgen.yaml has no "
                       f"environments.{env.name}.telemetry (files: DIR)")
    if settings.files is None:
        raise BadInput(f"{env.name}: telemetry from Prometheus ({settings.prometheus}) is not read by this "
                       "version; use 'telemetry: {files: DIR}'")
    return env.workspace.root / settings.files


def observe(env: Any, state: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Judge the window of `env` whose log stands at `state` (SPEC section 12), once."""
    now = now or now_utc()
    directory = telemetry_directory(env)
    runbook = env.workspace.runbook
    settings = runbook.observed
    controls = Controls.from_mapping(state["controls"])
    allowlist = load_allowlist(controls.allowlist_path, base=env.workspace.root)
    changed_at = parse_utc_or_none(state.get("lastChangeAt")) or now - HOUR
    expected = Expected(env=env.name, kill_engaged=controls.kill_engaged, feature_on=controls.feature_on,
                        rollout=controls.rollout, allowlist_version=allowlist.version,
                        latency_bound_ms=runbook.latency_bound_ms(controls.rollout or 0), changed_at=changed_at)
    # Only the window's events are kept; when each host was last seen is taken from every line read.
    reading = read_directory(directory, changed_at + timedelta(seconds=settings.propagationSeconds), now)
    judgement = judge_window(reading, expected, settings, now)
    judgement["telemetry"] = str(directory)
    judgement["required"] = settings.required_for(env.name)
    return judgement


def evidence(judgement: Any) -> Any:
    """`judgement` as an audit entry can keep it: canonical JSON has no floats, so each is a decimal string."""
    if isinstance(judgement, float):
        return f"{judgement:.6g}"
    if isinstance(judgement, dict):
        return {key: evidence(value) for key, value in judgement.items()}
    if isinstance(judgement, list):
        return [evidence(value) for value in judgement]
    return judgement
