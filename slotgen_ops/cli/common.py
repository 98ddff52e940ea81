"""Shared CLI plumbing: options, output, and where the controls come from.

JSON goes to stdout through json.dumps, never through Rich (it wraps at 80
columns when piped). Human output goes to stdout through Rich; warnings and
errors go to stderr.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from io import BytesIO
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
        from ..workspace import Workspace

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
    allowlist = _unreadable_allowlist(controls.allowlist_path, allowlist_base)
    if allowlist is None:
        try:
            allowlist = load_allowlist(controls.allowlist_path, allowlist_base)
        except RecursionError:  # JSON nested past what the parser can follow: unreadable, so fail closed
            from ..contract import AllowlistUnavailable

            allowlist = AllowlistUnavailable(f"{controls.allowlist_path}: not JSON (nested too deeply)")
    _warn_fail_closed(controls, allowlist)
    return Evaluation(controls=controls, allowlist=allowlist, source=source)


#: An allowlist is a small JSON file; one far larger than this is not read (it fails closed, as unreadable).
MAX_ALLOWLIST_FILE = 16 * 1024 * 1024


def _unreadable_allowlist(path: str | None, base: Path | None):
    """AllowlistUnavailable for an allowlist path that names something reading would never end or never start
    on (a device, a FIFO, a socket, a file past ``MAX_ALLOWLIST_FILE``): judged on a non-blocking open, so
    the what-if fails closed at once, as for any unreadable allowlist. None: read it as the runtime does."""
    import os
    import stat

    if not path:
        return None
    file = Path(path)
    if base is not None and not file.is_absolute():
        file = base / file
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # missing, a directory, no permission: the runtime's reader says which
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    from ..contract import AllowlistUnavailable

    if not stat.S_ISREG(st.st_mode):
        return AllowlistUnavailable(f"{path}: unreadable ({_kind(st.st_mode)}, not a regular file)")
    if st.st_size > MAX_ALLOWLIST_FILE:
        return AllowlistUnavailable(f"{path}: unreadable ({st.st_size} bytes, far larger than an allowlist)")
    return None


def _warn_fail_closed(controls: Controls, allowlist: AllowlistState) -> None:
    """A control the runtime cannot trust is a fact to show, not a usage error: it fails closed."""
    if controls.rollout is None and controls.rollout_raw is not None:
        warn(f"SLOTGEN_AI_ROLLOUT_PERCENT={controls.rollout_raw!r} is not an integer 0..100: "
             "the rollout gate fails closed (ROLLOUT_EXCLUDED)")
    if controls.kill_raw is not None and controls.kill_engaged and controls.kill_raw.strip().lower() != "true":
        warn(f"SLOTGEN_AI_KILL={controls.kill_raw!r} is not 'true' or 'false': the kill-switch counts as engaged")
    if controls.allowlist_path is not None and not allowlist.available:
        warn(f"allowlist {allowlist.reason}: every job is NOT_ALLOWLISTED")


#: A job file `decide` reads whole: far more than any job, far less than what would exhaust memory.
MAX_JOB_FILE = 16 * 1024 * 1024
#: A line of a population (`exposure`, `plan`): no job is near it; /dev/zero's endless line stops here.
MAX_LINE = 4 * 1024 * 1024
#: JSON nested deeper than this is refused before it is parsed (Python's parser would recurse out of stack).
MAX_DEPTH = 500


class BoundedLines:
    """A binary input read in blocks whose every line is at most ``MAX_LINE`` bytes: a line longer than that
    (a file with no line ending, /dev/zero) stops the read as FILE:LINE: one line, exit 2, instead of
    growing without end. Offers what the population readers use: ``readlines(hint)``, ``read``, ``close``."""

    def __init__(self, fh, name: str) -> None:
        self._fh = fh
        self._name = name
        self._lines = 0

    def readlines(self, hint: int = -1) -> list[bytes]:
        block = self._fh.read(max(hint, 1) if hint and hint > 0 else MAX_LINE)
        if not block:
            return []
        if not block.endswith(b"\n"):
            block += self._fh.readline(MAX_LINE + 1)
        lines = BytesIO(block).readlines()  # split after each b"\n", as a file's readlines does
        if len(block) > MAX_LINE and max(map(len, lines)) > MAX_LINE:
            index = self._lines + 1 + next(i for i, line in enumerate(lines) if len(line) > MAX_LINE)
            raise BadInput(f"{self._name}:{index}: a line longer than {MAX_LINE // (1024 * 1024)} MiB "
                           "(no line ending?): not a job")
        self._lines += len(lines)
        return lines

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_input(path: Path, what: str, *, lines: bool = True):
    """Open an input file for binary reading, with one-line errors naming it (BadInput, exit 2).

    Never blocks on opening and never reads without end: opened non-blocking, then judged on the open
    descriptor. A regular file is read; so is a pipe (/dev/stdin, a shell's <(...)) and the terminal or
    device this process has as its standard input. Any other device, a FIFO nobody writes, a socket or a
    directory is refused. With `lines`, every line is bounded (``BoundedLines``)."""
    import errno
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadInput(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, expected a {what} file") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing only
            raise BadInput(f"{path}: is not a file, expected a {what} file") from None
        raise BadInput(f"{path}: cannot read {what} file ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode) or _is_stdin(st)):
            raise BadInput(f"{path}: is {_kind(st.st_mode)}, expected a {what} file")
        os.set_blocking(fd, True)  # a pipe's writer may be slower than us: wait for it, as any reader does
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return BoundedLines(fh, str(path)) if lines else fh


def _is_stdin(st) -> bool:
    """Whether `st` is this process's standard input (the terminal, say, named as /dev/stdin)."""
    import os

    try:
        own = os.fstat(0)
    except OSError:
        return False
    return (own.st_dev, own.st_ino, own.st_rdev) == (st.st_dev, st.st_ino, st.st_rdev)


def _read_bounded(fh, limit: int, name: str, what: str) -> bytes:
    data = fh.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"{name}: {what} file is larger than {limit // (1024 * 1024)} MiB: not a {what}")
    return data


_JSON_MARK = re.compile(r'["\[\]{}]')
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def _nesting_depth_over(text: str, limit: int) -> bool:
    """Whether JSON `text` opens more than `limit` arrays/objects inside each other (strings skipped). One
    pass, linear in the text's length; an unterminated string ends the count (the parser then says the text
    is not JSON)."""
    depth, pos = 0, 0
    while True:
        mark = _JSON_MARK.search(text, pos)
        if mark is None:
            return False
        char, pos = mark.group(), mark.end()
        if char == '"':
            rest = _STRING_REST.match(text, pos)
            if rest is None:
                return False
            pos = rest.end()
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1


def read_json_file(path: Path, what: str) -> Any:
    """A JSON document from a file (or '-' for stdin), with one-line errors: bounded in size and depth."""
    if str(path) == "-":
        data = _read_bounded(sys.stdin.buffer, MAX_JOB_FILE, "<stdin>", what)
    else:
        with open_input(path, what, lines=False) as fh:
            data = _read_bounded(fh, MAX_JOB_FILE, str(path), what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: {what} file is not UTF-8 text") from None
    if _nesting_depth_over(text, MAX_DEPTH):
        raise BadInput(f"{path}: {what} file nests arrays or objects more than {MAX_DEPTH} deep: not a {what}")
    try:
        return json.loads(text)
    except RecursionError:
        raise BadInput(f"{path}: {what} file is too deeply nested to read") from None
    except ValueError as exc:
        raise BadInput(f"{path}: {what} file is not JSON: {exc}") from None


def checked_output(path: Path, workspace_root: Path | None, force: bool) -> Path:
    """An --output file that is safe to write (SPEC sections 11 and 14): never a file of the workspace (its
    logs, controls, policy files: not even with --force), never anything under environments/, never anything
    but a regular file (a device, a FIFO, a socket, a directory: not even with --force), only in a folder
    that exists, and no other existing file without --force. BadInput (exit 2) otherwise."""
    import stat

    from ..errors import BadInput

    target = Path(path)
    real = target.resolve()
    st = _stat_or_none(real)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise BadInput(f"--output {path}: is a directory")
    folder = _stat_or_none(real.parent)
    if folder is None:
        raise BadInput(f"--output {path}: no such folder {real.parent}")
    if not stat.S_ISDIR(folder.st_mode):
        raise BadInput(f"--output {path}: {real.parent} is not a folder")
    if workspace_root is not None:
        root = Path(workspace_root).resolve()
        if real == root / "environments" or root / "environments" in real.parents:
            raise BadInput(f"--output {path}: inside the workspace's environments/ (its logs and controls); "
                           "write it elsewhere")
        if st is not None and (real == root or root in real.parents):
            raise BadInput(f"--output {path}: is a file of the workspace; never overwritten, even with --force")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise BadInput(f"--output {path}: is {_kind(st.st_mode)}, not a regular file; never replaced, "
                       "even with --force")
    if st is not None and not force:
        raise BadInput(f"--output {path}: exists; pass --force to replace it")
    return target


def _stat_or_none(path: Path):
    import os

    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        from ..errors import BadInput

        raise BadInput(f"--output {path}: cannot look at it ({exc.strerror})") from None


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def write_output(path: Path, produce) -> int:
    """Write through a temp file beside `path`, then rename: `path` is never left half written, and what
    the rename replaces is a regular file (checked again just before it: a device or a FIFO put there
    since ``checked_output`` is never replaced). `produce(text_stream)` writes and returns a count.
    BadInput (exit 2) when the file cannot be created or put in place."""
    import os
    import stat
    import tempfile

    from ..errors import BadInput

    target = Path(path)
    real = target.resolve()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=real.parent)
    except OSError as exc:
        raise BadInput(f"--output {path}: cannot create a file in {real.parent} ({exc.strerror})") from None
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)  # what open() would have made: a report is for sharing (mkstemp makes 0600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count = produce(out)
            out.flush()
            os.fsync(out.fileno())
        st = _stat_or_none(real)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise BadInput(f"--output {path}: is {_kind(st.st_mode)}, not a regular file; never replaced")
        try:
            os.replace(tmp, real)
        except OSError as exc:
            raise BadInput(f"--output {path}: cannot write it ({exc.strerror})") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return count
