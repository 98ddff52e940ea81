"""What the `slotgen audit` sub-commands share: the environment they open, the checks of --since,
--until, --action and --control values (a typo is exit 2, never an empty table), and the --control and
--decision-record options of `show` and `export`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ..errors import BadInput


def open_environment(workspace, env):
    from ..workspace import Workspace

    return Workspace.locate(workspace).environment(env)


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time (UTC when no offset is given), or a duration back from now: 30m, 1h, 2d, 1w."""
    from datetime import timedelta
    import re

    from ..clock import now_utc, parse_utc

    if value is None:
        return None
    match = re.fullmatch(r"\s*([0-9]+)\s*([smhdw])\s*", value)
    if match:
        try:
            return now_utc() - timedelta(seconds=int(match.group(1)) * _DURATION[match.group(2)])
        except (OverflowError, ValueError):  # before year 1, or more days than a timedelta holds
            raise BadInput(f"{name} {value!r}: a duration that reaches back before the year 1; "
                           "give a shorter one (30m, 1h, 2d, 1w) or a time") from None
    try:
        return parse_utc(value.strip())
    except ValueError:
        raise BadInput(f"{name} {value!r}: expected an ISO 8601 time (2026-11-22T13:00:00Z) or a duration back "
                       "from now (30m, 1h, 2d, 1w)") from None


def checked_action(value: str | None) -> str | None:
    """--action checked against the actions the log records: a typo is exit 2, never an empty table."""
    from ..runbook.state import ACTIONS

    if value is None or value in ACTIONS:
        return value
    import difflib

    near = difflib.get_close_matches(value, ACTIONS, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise BadInput(f"--action {value!r} is not an action{hint}; one of: {', '.join(ACTIONS)}")


def checked_control(value: str | None) -> str | None:
    """--control checked against the control names (and `policy`): a typo is exit 2, never an empty table."""
    from ..audit.timeline import CONTROL_NAMES

    if value is None or value in CONTROL_NAMES:
        return value
    import difflib

    near = difflib.get_close_matches(value.upper(), CONTROL_NAMES, n=1, cutoff=0.6)
    if not near:
        near = [name for name in CONTROL_NAMES if value.strip() and value.strip().lower() in name.lower()][:1]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise BadInput(f"--control {value!r} is not a control{hint}; one of: {', '.join(CONTROL_NAMES)}")


ControlOpt = Annotated[str | None, typer.Option(
    "--control", help="Only changes of this control (SLOTGEN_AI_KILL, FEATURE_SLOTGEN_AI, "
    "SLOTGEN_AI_ROLLOUT_PERCENT, SLOTGEN_AI_ALLOWLIST_PATH, or policy).")]
DecisionRecordFilterOpt = Annotated[str | None, typer.Option(
    "--decision-record", metavar="REF", help="Only changes made under this decision record (exact).")]
