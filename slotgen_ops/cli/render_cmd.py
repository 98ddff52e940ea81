"""`slotgen render`: the env-file a runtime host reads (SPEC section 10)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, WorkspaceOpt, emit_json, visible
from .options import RequiredEnvOpt


def render(
    env: RequiredEnvOpt = ...,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", show_default=False,
                                         help="The env-file the runtime reads (systemd EnvironmentFile=, docker "
                                              "--env-file); written atomically, through a symlink.")] = ...,
    watch: Annotated[bool, typer.Option("--watch", help="Keep it current: rewrite it within a second of any "
                                                         "change, until stopped (SIGTERM/SIGINT).")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Write the environment's controls as the env-file a runtime host reads; with --watch, keep it current.

    What is written is the verified audit log's head. If the state database holds anything else (a controls
    row that disagrees with the log, a row that is not an entry, a value outside the controls grammar), the
    file is written with the kill-switch engaged and the failure said: exit 4 (with --watch: it keeps watching).

    Example: slotgen render --env production --output /etc/slotgen/production.env --watch
    (a systemd unit on the host runs it and restarts the service when the file changes; see the README)
    """
    from ..workspace.render import check_output, render_once, watch as keep_current
    from ..workspace import Workspace

    environment = Workspace.locate(workspace).environment(env)
    target = check_output(environment, output)
    if not watch:
        written, data = render_once(environment, target)
        if json_out:
            emit_json({"ok": True, "env": env, "output": str(target), "written": written})
        else:
            sys.stderr.write(f"{visible(target)} {'written' if written else 'already current'}\n")
        return 0

    def say(line: str) -> None:
        sys.stderr.write(f"slotgen render: {visible(line)}\n")
        sys.stderr.flush()

    say(f"watching {env} ({environment.backend}); writing {target}")
    keep_current(environment, target, say)
    return 0


def register(app: typer.Typer) -> None:
    app.command("render")(render)
