"""`slotgen plan`: rehearse every remaining runbook step of an environment, writing nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import BoundedLines, JsonOpt, WorkspaceOpt, change_text, console, emit_json, escape, open_input
from .options import RequiredEnvOpt

TABLE_WIDTH = 80

JobsOpt = Annotated[Path | None, typer.Option(
    "--jobs", metavar="FILE", show_default=False,
    help="A population of jobs (JSON lines, streamed; '-' reads stdin): also count what each step would expose.")]


def plan(env: RequiredEnvOpt = ..., jobs: JobsOpt = None, workspace: WorkspaceOpt = None,
         json_out: JsonOpt = False) -> int:
    """Rehearse every remaining runbook step, from where the environment stands to the top of the ladder.

    For each step: the control change, how many sample jobs (and, with
    --jobs, how many jobs of a population) it would put on the OpenAI path,
    the approval and soak it needs, and the exact commands. The step that
    first exposes jobs is marked EXPOSES. Reads the audit log and controls,
    checked as 'status' checks them (exit 4 if they fail); writes nothing.

    Example: slotgen plan --env production --jobs jobs.jsonl
    """
    from ..oversight.plan import plan_environment
    from ..workspace import Workspace

    environment = Workspace.locate(workspace).environment(env)
    if jobs is None:
        doc = plan_environment(environment)
    elif str(jobs) == "-":
        doc = plan_environment(environment, (BoundedLines(sys.stdin.buffer, "<stdin>"), "<stdin>"))
    else:
        with open_input(jobs, "jobs", lines=True) as fh:
            doc = plan_environment(environment, (fh, str(jobs)))
    if json_out:
        emit_json(doc)
    else:
        _render(doc)
    return 0


def _count(exposure: dict[str, Any]) -> str:
    return f"{exposure['openai']} of {exposure['total']}"


def _share(exposure: dict[str, Any]) -> str:
    total = exposure["total"]
    share = f" ({100 * exposure['openai'] / total:.2f}%)" if total else ""
    return f"{exposure['openai']} of {total}{share}"


def _render(doc: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    origin, steps = doc["from"], doc["steps"]
    env = escape(doc["env"])
    done = f"step {origin['number']} ({origin['step']}) done" if origin["step"] else "no step done yet"
    if not steps:
        out.print(f"{env}: nothing to plan: Beta is live at the top of the ladder (rollout {doc['top']}); "
                  f"{_count(origin['exposure'])} sample jobs on the OpenAI path", soft_wrap=True)
        for warning in doc["warnings"]:
            out.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        return
    population = origin["population"] is not None
    out.print(f"[bold]{env}[/]: {done}; {len(steps)} step(s) to the top of the ladder (rollout {doc['top']}). "
              "A rehearsal: nothing is written.", soft_wrap=True)
    if origin.get("position"):
        out.print(f"({escape(origin['position'])})", soft_wrap=True)
    now = f"now: {_count(origin['exposure'])} sample jobs on the OpenAI path"
    if population:
        now += f"; {_share(origin['population'])} jobs of {escape(doc['populationFile'])}"
    out.print(now, soft_wrap=True)
    table = Table(show_edge=False, show_lines=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("step and change", width=26, overflow="fold")
    table.add_column("samples on OpenAI", width=9, justify="right")
    if population:
        table.add_column("jobs on OpenAI", width=10, justify="right", overflow="fold")
    table.add_column("approval", width=8, overflow="fold")
    table.add_column("soak", overflow="fold")
    for index, step in enumerate(steps):
        label = f"[bold]{escape(step['id'])}[/]"
        if step["exposes"]:
            label += " [bold red]EXPOSES[/]"
        if step["control"]:
            shown = change_text(step["control"], step["old"], step["new"])
            control, _, values = shown.partition(": ")
            label += f"\n{escape(control)}\n{escape(values)}"
        else:
            label += "\nno change: the full verification"
        row = [str(step["number"]), label, _count(step["exposure"])]
        if population:
            row.append(_share(step["population"]))
        row.append(escape(step["approverRole"]) if step["needsApproval"] else "-")
        soak = escape(step["wait"])
        if index == 0 and step["soakMinutes"]:
            soak += f" (soak {step['soakMinutes']} min)"
        row.append(soak)
        table.add_row(*row)
    out.print(table, width=min(out.width, TABLE_WIDTH))
    out.print("commands:")
    for index, step in enumerate(steps):
        title = f": {escape(step['title'])}" if step["title"] else ""
        out.print(f" step {step['number']} ({escape(step['id'])}){title}", soft_wrap=True)
        if index == 0 and step.get("blockedBy"):
            out.print(f"  [yellow]not yet:[/] {escape(step['blockedBy'])}", soft_wrap=True)
        for command in step["commands"]:
            out.print(f"  {escape(command)}", soft_wrap=True)
    out.print(f"[dim]assumes {escape(doc['assumes'])}[/]", soft_wrap=True)
    for warning in doc["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
