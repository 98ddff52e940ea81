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

import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from ..contract import GATING_CODES
from ..contract.decision import _ALL_PASSED, _GATE_CODES, decided_by
from ..contract.job import job_problem
from ..errors import BadInput
from .common import EnvOpt, JsonOpt, WithOpt, WorkspaceOpt, console, emit_json, escape, evaluation_inputs, open_input

_PROGRESS_MIN_BYTES = 16 * 1024 * 1024
_BLOCK_BYTES = 1024 * 1024  # lines are read about this many bytes at a time
_FIRST_SHOWN = 10  # bad lines listed in `invalid.first`
_BOM = b"\xef\xbb\xbf"

SkipInvalidOpt = Annotated[bool, typer.Option(
    "--skip-invalid",
    help="Count past bad lines (not UTF-8, not JSON, not a valid job): skip them, report how many and the first "
         f"{_FIRST_SHOWN}. Without it the first bad line stops the count (exit 2).")]


class Invalid:
    """Bad lines met so far: how many, and where the first few are."""

    __slots__ = ("name", "skip", "count", "first")

    def __init__(self, name: str, skip: bool) -> None:
        self.name = name
        self.skip = skip
        self.count = 0
        self.first: list[dict[str, Any]] = []

    def add(self, line: int, column: int, problem: str) -> None:
        """Record one bad line; without --skip-invalid, stop the count with it (exit 2)."""
        if not self.skip:
            raise BadInput(f"{self.name}:{line}:{column}: {problem} (--skip-invalid counts past bad lines)")
        self.count += 1
        if len(self.first) < _FIRST_SHOWN:
            self.first.append({"line": line, "column": column, "problem": problem})

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "first": list(self.first)}


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
    counts = [0] * (_ALL_PASSED + 1)
    if str(jobs_file) == "-":
        invalid = Invalid("<stdin>", skip_invalid)
        _count(sys.stdin.buffer, evaluation, counts, invalid, None)
    else:
        invalid = Invalid(str(jobs_file), skip_invalid)
        with open_input(jobs_file, "jobs") as fh:
            size = jobs_file.stat().st_size
            show = size >= _PROGRESS_MIN_BYTES and sys.stderr.isatty() and not json_out
            _count(fh, evaluation, counts, invalid, size if show else None)
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
    """The hot loop: parse, check, decide, count. Nothing is kept per job.

    The common line, one JSON object and its line ending, costs one decode,
    one JSON scan, one job check and one decision. Anything else (a BOM,
    whitespace around the object, a blank line, a bad line) is refused by the
    fast parse and then read by `_slow_parse` with `json.loads`, which has the
    last word on what is JSON.
    """
    import json

    parse = json.JSONDecoder().raw_decode
    check = job_problem
    decide = decided_by
    controls, allowlist = evaluation.controls, evaluation.allowlist
    progress = _progress(progress_total) if progress_total else None
    done = 0
    lineno = 0
    try:
        if progress is not None:
            progress[0].start()
        for block in iter(partial(fh.readlines, _BLOCK_BYTES), []):
            for lineno, raw in enumerate(block, lineno + 1):
                try:
                    text = raw.decode()
                    job, end = parse(text)
                    if end != len(text) and text[end:] not in _LINE_ENDS:
                        raise ValueError
                except (ValueError, RecursionError):
                    job = _slow_parse(raw, lineno, invalid)
                    if job is _SKIP:
                        continue
                problem = check(job)
                if problem is not None:
                    invalid.add(lineno, 1, problem)
                    continue
                counts[decide(job, controls, allowlist)] += 1
            if progress is not None:
                done += sum(map(len, block))
                progress[0].update(progress[1], completed=done)
    finally:
        if progress is not None:
            progress[0].stop()


_SKIP = object()  # a blank line, or a bad one already recorded
_LINE_ENDS = ("\n", "\r\n")


def _slow_parse(raw: bytes, lineno: int, invalid: Invalid) -> Any:
    """The job on a line the fast parse refused (a line that starts with a BOM), else _SKIP:
    a blank line, or a bad line, recorded in `invalid` with its true column."""
    import json

    body = raw[:-1] if raw.endswith(b"\n") else raw
    if body.endswith(b"\r"):
        body = body[:-1]
    if body.startswith(_BOM):
        body = body[len(_BOM):]
    if not body or body.isspace():
        return _SKIP
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        column = len(body[:exc.start].decode()) + 1
        invalid.add(lineno, column, f"not UTF-8 text (byte 0x{body[exc.start]:02x})")
        return _SKIP
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = exc.msg[:-3] + " here" if exc.msg.endswith(" at") else exc.msg
        invalid.add(lineno, exc.pos + 1, f"not JSON: {message}")
    except ValueError as exc:  # e.g. an integer longer than Python reads
        invalid.add(lineno, 1, f"not JSON: {exc}")
    except RecursionError:
        invalid.add(lineno, 1, "not JSON: nested too deeply")
    return _SKIP


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
