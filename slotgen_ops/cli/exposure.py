"""`slotgen exposure`: counts per path and code over a population of jobs.

Streams JSON lines in constant memory: a block of lines is read, each line is
decided and counted, and the block is dropped. On a terminal a progress bar on
stderr follows the bytes read; it is cleared before anything else is written,
whether the count ends, stops at a bad line, or is interrupted.

A bad line (not UTF-8, not JSON, not a valid job) is named as FILE:LINE:COL:
the 1-based line, and the 1-based character column in that line as an editor
shows it (a UTF-8 BOM at the start of a line and the line ending are not part
of the line; a multi-byte character is one column). For a line that is JSON
but not a valid job the column is 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from ..contract.order import decider
from ..runbook.population import FIRST_SHOWN, Invalid, new_counts, summary
from ..runbook.population import count as count_population
from .common import (BoundedLines, EnvOpt, JsonOpt, WithOpt, WorkspaceOpt, console, emit_json, escape, evaluation_inputs,
                     open_input)

_PROGRESS_MIN_BYTES = 16 * 1024 * 1024

SkipInvalidOpt = Annotated[bool, typer.Option(
    "--skip-invalid",
    help="Count past bad lines (not UTF-8, not JSON, not a valid job): skip them, report how many and the first "
         f"{FIRST_SHOWN}. Without it the first bad line stops the count (exit 2).")]


def exposure(
    jobs_file: Annotated[Path, typer.Argument(metavar="JOBS_FILE", help="Jobs, one JSON object per line ('-' reads stdin).", show_default=False)],
    env: EnvOpt = None,
    with_: WithOpt = None,
    workspace: WorkspaceOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Count how many jobs of a population take each path, and why.

    Any size: the file is streamed. Blank lines are skipped. Any other line
    that is not a valid job stops the count as FILE:LINE:COL: problem (exit 2),
    or, with --skip-invalid, is skipped and counted apart. Changes nothing.

    Example: slotgen exposure jobs.jsonl --env staging --with SLOTGEN_AI_ROLLOUT_PERCENT=5 --skip-invalid
    """
    evaluation = evaluation_inputs(env, workspace, with_)
    counts = new_counts()
    if str(jobs_file) == "-":
        invalid = Invalid("<stdin>", skip_invalid)
        _count(BoundedLines(sys.stdin.buffer, "<stdin>"), evaluation, counts, invalid, None)
    else:
        invalid = Invalid(str(jobs_file), skip_invalid)
        with open_input(jobs_file, "jobs") as fh:
            size = os.fstat(fh.fileno()).st_size
            show = size >= _PROGRESS_MIN_BYTES and sys.stderr.isatty() and not json_out
            _count(fh, evaluation, counts, invalid, size if show else None)
    doc = {
        **summary(counts),
        "invalid": invalid.to_json(),
        "allowlistVersion": evaluation.allowlist.version,
        "controls": evaluation.controls.as_env(),
    }
    if json_out:
        emit_json(doc)
    else:
        _render(doc, evaluation.source, invalid)
    return 0


def _count(fh: BinaryIO, evaluation, counts: list[int], invalid: Invalid, progress_total: int | None) -> None:
    """Count one population under one set of controls; a progress bar on stderr for a big file, stopped (and
    cleared) before anything else is written, whether the count ends, stops at a bad line, or is interrupted."""
    targets = [(decider(evaluation.controls, evaluation.allowlist), counts)]
    progress = _progress(progress_total) if progress_total else None
    try:
        if progress is None:
            count_population(fh, targets, invalid)
        else:
            bar, task = progress
            bar.start()
            count_population(fh, targets, invalid, on_block=lambda done: bar.update(task, completed=done))
    finally:
        if progress is not None:
            progress[0].stop()


def _progress(total: int):
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TimeRemainingColumn(), console=console(stderr=True), transient=True)
    task = bar.add_task("deciding", total=total)
    return bar, task


def _render(doc: dict, source: str, invalid: Invalid) -> None:
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
    if invalid.count:
        first = invalid.first[0]
        where = f"{invalid.name}:{first['line']}:{first['column']}: {first['problem']}"
        noun = "line" if invalid.count == 1 else "lines"
        out.print(f"[yellow]{invalid.count} invalid {noun} skipped[/] (first at {escape(where)})", soft_wrap=True)
    elif invalid.skip:
        out.print("[dim]no invalid lines[/]")
    out.print(f"[dim]controls from {escape(source)}[/]")


def register(app: typer.Typer) -> None:
    app.command("exposure")(exposure)
