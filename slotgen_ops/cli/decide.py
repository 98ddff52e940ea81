"""`slotgen decide`: the decision for one job, every gate's verdict, and the bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..contract import decide as decide_job
from ..contract import job_problem
from ..errors import BadInput
from .common import EnvOpt, JsonOpt, WithOpt, WorkspaceOpt, console, emit_json, evaluation_inputs, read_json_file


def decide(
    job_file: Annotated[Path, typer.Argument(metavar="JOB_FILE", help="The job, a JSON file ('-' reads stdin).", show_default=False)],
    env: EnvOpt = None,
    with_: WithOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Show whether one job takes the STUB or the OpenAI path, and why.

    Controls come from the environment's controls file with --env, else from
    this process's environment exactly as the runtime reads them; --with
    overrides one control for this evaluation only. Changes nothing.

    Example: slotgen decide --env staging job.json --with SLOTGEN_AI_KILL=false
    """
    job = read_json_file(job_file, "job")
    problem = job_problem(job)
    if problem is not None:
        raise BadInput(f"{job_file}: {problem}")
    evaluation = evaluation_inputs(env, workspace, with_)
    decision = decide_job(job, evaluation.controls, evaluation.allowlist)
    doc = decision.to_json()
    if json_out:
        emit_json(doc)
        return 0
    _render(doc, evaluation.source)
    return 0


def _render(doc: dict, source: str) -> None:
    from .safe import escape
    from rich.table import Table

    out = console()
    verdict = "[bold green]OPENAI[/]" if doc["path"] == "openai" else f"[bold]STUB[/] ({doc['code']})"
    out.print(f"{escape(str(doc['jobId']))}: {verdict}   bucket {doc['bucket']}")
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("gate")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for index, gate in enumerate(doc["gates"], 1):
        mark = "pass" if gate["verdict"] == "pass" else "[red]fail[/]"
        if gate["decisive"]:
            mark += " [bold]<- decides[/]"
        table.add_row(str(index), gate["gate"], mark, escape(gate["detail"]))
    out.print(table)
    out.print(f"[dim]controls from {escape(source)}[/]")


def register(app: typer.Typer) -> None:
    app.command("decide")(decide)
