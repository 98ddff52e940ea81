"""`slotgen exposure`: counts per path and code over a population of jobs.

Streams JSON lines in constant memory: one line is read, decided, counted and
dropped. On a terminal a progress bar on stderr follows the bytes read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from ..contract import GATING_CODES
from ..contract.decision import _ALL_PASSED, _GATE_CODES, decided_by
from ..contract.job import job_problem
from ..errors import BadInput
from .common import EnvOpt, JsonOpt, WithOpt, WorkspaceOpt, console, emit_json, evaluation_inputs, open_input

_PROGRESS_MIN_BYTES = 16 * 1024 * 1024


def exposure(
    jobs_file: Annotated[Path, typer.Argument(metavar="JOBS_FILE", help="Jobs, one JSON object per line ('-' reads stdin).", show_default=False)],
    env: EnvOpt = None,
    with_: WithOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Count how many jobs of a population take each path, and why.

    Any size: the file is streamed. Blank lines are skipped; any other line
    that is not a valid job stops the count with its line number (exit 2).
    Changes nothing.
    """
    evaluation = evaluation_inputs(env, workspace, with_)
    counts = [0] * (_ALL_PASSED + 1)
    if str(jobs_file) == "-":
        _count(sys.stdin.buffer, "<stdin>", evaluation, counts, None)
    else:
        with open_input(jobs_file, "jobs") as fh:
            size = jobs_file.stat().st_size
            show = size >= _PROGRESS_MIN_BYTES and sys.stderr.isatty() and not json_out
            _count(fh, str(jobs_file), evaluation, counts, size if show else None)
    codes: dict[str, int] = {}
    for index, count in enumerate(counts[:_ALL_PASSED]):
        if count:
            code = _GATE_CODES[index]
            codes[code] = codes.get(code, 0) + count
    total = sum(counts)
    doc = {
        "total": total,
        "openai": counts[_ALL_PASSED],
        "stub": total - counts[_ALL_PASSED],
        "codes": {code: codes[code] for code in GATING_CODES if code in codes},
        "allowlistVersion": evaluation.allowlist.version,
        "controls": evaluation.controls.as_env(),
    }
    if json_out:
        emit_json(doc)
    else:
        _render(doc, evaluation.source)
    return 0


def _count(fh: BinaryIO, name: str, evaluation, counts: list[int], progress_total: int | None) -> None:
    """The hot loop: parse, check, decide, count. Nothing is kept per job."""
    import json

    loads = json.loads
    controls, allowlist = evaluation.controls, evaluation.allowlist
    progress = _progress(progress_total) if progress_total else None
    done = 0
    for lineno, raw in enumerate(fh, 1):
        if progress is not None:
            done += len(raw)
            if lineno % 65536 == 0:
                progress[0].update(progress[1], completed=done)
        if raw.isspace() or not raw:
            continue
        try:
            job = loads(raw)
        except UnicodeDecodeError:
            raise BadInput(f"{name}:{lineno}: not UTF-8 text") from None
        except ValueError as exc:
            raise BadInput(f"{name}:{lineno}: not JSON ({exc.msg} at column {exc.colno})") from None
        problem = job_problem(job)
        if problem is not None:
            raise BadInput(f"{name}:{lineno}: {problem}")
        counts[decided_by(job, controls, allowlist)] += 1
    if progress is not None:
        progress[0].update(progress[1], completed=done)
        progress[0].stop()


def _progress(total: int):
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TimeRemainingColumn(), console=console(stderr=True), transient=True)
    task = bar.add_task("deciding", total=total)
    bar.start()
    return bar, task


def _render(doc: dict, source: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    total = doc["total"] or 1
    table = Table(title=f"{doc['total']} jobs", show_edge=False, pad_edge=False)
    table.add_column("path / code")
    table.add_column("jobs", justify="right")
    table.add_column("share", justify="right")
    table.add_row("[bold green]openai[/]", str(doc["openai"]), f"{100 * doc['openai'] / total:.2f}%")
    table.add_row("[bold]stub[/]", str(doc["stub"]), f"{100 * doc['stub'] / total:.2f}%")
    for code, count in doc["codes"].items():
        table.add_row(f"  {code}", str(count), f"{100 * count / total:.2f}%")
    out.print(table)
    out.print(f"[dim]controls from {escape(source)}[/]")


def register(app: typer.Typer) -> None:
    app.command("exposure")(exposure)
