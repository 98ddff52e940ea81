"""`slotgen init`: create a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, console, emit_json, escape
from .options import OperatorOpt


def init(
    directory: Annotated[Path, typer.Argument(metavar="[DIR]", help="Where to create the workspace.")] = Path("."),
    operator: OperatorOpt = None,
    state: Annotated[str | None, typer.Option(
        "--state", metavar="URL", show_default=False,
        help="Keep the environments in this PostgreSQL database (postgresql://user@host:port/db; the password "
             "from PGPASSWORD or ~/.pgpass, never written) instead of the workspace's files.")] = None,
    json_out: JsonOpt = False,
) -> int:
    """Create a workspace that works with no further editing: config, three demo operators,
    the Beta minimal-cohort allowlist, the runbook, sample jobs, and the environments
    staging and production with every control safe.

    Example: slotgen init beta-rollout && cd beta-rollout && slotgen next --env staging
    """
    from ..policy.authority import resolve_actor
    from ..workspace.init import init_workspace

    result = init_workspace(directory, resolve_actor(None, operator), state=state)
    if json_out:
        emit_json({"ok": True, **result})
    else:
        out = console()
        out.print(f"workspace created in {escape(str(result['workspace']))}")
        out.print("environments: " + ", ".join(result["environments"]) +
                  " (kill-switch on, feature off, rollout 0, no allowlist)")
        out.print("next: slotgen next --env staging")
    return 0


def register(app: typer.Typer) -> None:
    app.command("init")(init)
