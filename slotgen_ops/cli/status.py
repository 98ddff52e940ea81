"""`slotgen status` and `slotgen next`: where an environment stands and what comes next."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOpt, WorkspaceOpt
from .options import RequiredEnvOpt


def status(env: Annotated[str | None, typer.Option("--env", "-e", help="One environment (default: a line for each).",
                                                   show_default=False)] = None,
           workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> int:
    """Show the controls and what they mean, the runbook position and next step, the shadow
    exposure, the last changes, audit integrity and warnings. Exit 4 if integrity fails.

    Without --env, one line for every environment of the workspace (--json: {"environments": [...]}).
    Example: slotgen status --env staging
    """
    from .status_view import run_status

    return run_status(env, workspace, json_out)


def next_(env: RequiredEnvOpt = ..., workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> int:
    """Show the next allowed step and the exact command to run it.

    Example: slotgen next --env staging
    """
    from .status_view import run_next

    return run_next(env, workspace, json_out)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("next")(next_)
