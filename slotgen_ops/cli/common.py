"""Shared CLI plumbing: options, output, and where the controls come from.

JSON goes to stdout through json.dumps, never through Rich (it wraps at 80
columns when piped). Human output goes to stdout through Rich; warnings and
errors go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..contract import ALLOWLIST_VAR, CONTROL_VARS, Controls
from ..contract.decision import AllowlistState
from ..errors import BadInput
from .output import change_text, console, emit_json, escape, visible, warn  # noqa: F401 - the CLI's output, re-exported

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
EnvOpt = Annotated[str | None, typer.Option("--env", "-e", help="Environment in the workspace (e.g. staging).")]
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace directory (else $SLOTGEN_WORKSPACE, else the nearest parent holding slotgen.yaml)."),
]
WithOpt = Annotated[
    list[str] | None,
    typer.Option("--with", help="KEY=VALUE: override one control for this evaluation only (a what-if). Repeatable."),
]


def parse_with(items: list[str] | None) -> dict[str, str]:
    """`--with KEY=VALUE` overrides: KEY must be a control, each at most once."""
    overrides: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise BadInput(f"--with {item!r}: expected KEY=VALUE, e.g. --with SLOTGEN_AI_KILL=false")
        if key not in CONTROL_VARS:
            raise BadInput(f"--with {item!r}: {key!r} is not a control (one of {', '.join(CONTROL_VARS)})")
        if key in overrides:
            raise BadInput(f"--with {key} given twice; give each control at most once")
        overrides[key] = value
    return overrides


@dataclass(frozen=True)
class Evaluation:
    """What a what-if evaluation runs under: controls, allowlist, and where they came from."""

    controls: Controls
    allowlist: AllowlistState
    source: str


def evaluation_inputs(env: str | None, workspace: Path | None, with_items: list[str] | None) -> Evaluation:
    """Controls from the environment's controls file (--env) or the process environment,
    then `--with` overrides. Relative allowlist paths from --env resolve against the
    workspace; from the process environment or --with, against the current directory.
    """
    from ..runtime.allowlist_file import load_allowlist

    overrides = parse_with(with_items)
    base: Path | None = None
    if env is not None:
        from ..ops.workspace import Workspace

        ws = Workspace.locate(workspace)
        raw: dict[str, str | None] = dict(ws.environment(env).read_controls().values)
        base = ws.root
        source = f"environment {env!r} of {ws.root}"
    else:
        raw = {name: os.environ.get(name) for name in CONTROL_VARS}
        source = "the process environment"
    # A path typed on this command line is relative to the shell's directory.
    allowlist_base = None if ALLOWLIST_VAR in overrides else base
    raw.update(overrides)
    if overrides:
        source += " with " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    controls = Controls.from_mapping(raw)
    allowlist = load_allowlist(controls.allowlist_path, allowlist_base)
    _warn_fail_closed(controls, allowlist)
    return Evaluation(controls=controls, allowlist=allowlist, source=source)


def _warn_fail_closed(controls: Controls, allowlist: AllowlistState) -> None:
    """A control the runtime cannot trust is a fact to show, not a usage error: it fails closed."""
    if controls.rollout is None and controls.rollout_raw is not None:
        warn(f"SLOTGEN_AI_ROLLOUT_PERCENT={controls.rollout_raw!r} is not an integer 0..100: "
             "the rollout gate fails closed (ROLLOUT_EXCLUDED)")
    if controls.kill_raw is not None and controls.kill_engaged and controls.kill_raw.strip().lower() != "true":
        warn(f"SLOTGEN_AI_KILL={controls.kill_raw!r} is not 'true' or 'false': the kill-switch counts as engaged")
    if controls.allowlist_path is not None and not allowlist.available:
        warn(f"allowlist {allowlist.reason}: every job is NOT_ALLOWLISTED")


def open_input(path: Path, what: str):
    """Open an input file for binary reading, with one-line errors naming it."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise BadInput(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, expected a {what} file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read {what} file ({exc.strerror})") from None


def read_json_file(path: Path, what: str) -> Any:
    """A JSON document from a file (or '-' for stdin), with one-line errors."""
    if str(path) == "-":
        data = sys.stdin.buffer.read()
    else:
        with open_input(path, what) as fh:
            data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: {what} file is not UTF-8 text") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{path}: {what} file is not JSON: {exc}") from None


def checked_output(path: Path, workspace_root: Path | None, force: bool) -> Path:
    """An --output file that is safe to write (SPEC section 11): never a file of the workspace (its logs,
    controls, policy files: not even with --force), never anything under environments/, and no other existing
    file without --force. BadInput (exit 2) otherwise."""
    from ..errors import BadInput

    target = Path(path)
    real = target.resolve()
    if real.is_dir():
        raise BadInput(f"--output {path}: is a directory")
    if workspace_root is not None:
        root = Path(workspace_root).resolve()
        if real == root / "environments" or root / "environments" in real.parents:
            raise BadInput(f"--output {path}: inside the workspace's environments/ (its logs and controls); "
                           "write it elsewhere")
        if real.exists() and (real == root or root in real.parents):
            raise BadInput(f"--output {path}: is a file of the workspace; never overwritten, even with --force")
    if real.exists() and not force:
        raise BadInput(f"--output {path}: exists; pass --force to replace it")
    return target


def write_output(path: Path, produce) -> int:
    """Write through a temp file beside `path`, then rename: `path` is never left half written.
    `produce(text_stream)` writes and returns a count."""
    import os
    import tempfile

    target = Path(path)
    folder = target.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)  # what open() would have made: a report is for sharing (mkstemp makes 0600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count = produce(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target.resolve())
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return count
