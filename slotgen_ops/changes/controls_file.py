"""The controls file: the env-file the slot-generation runtime reads.

Written in the KEY=VALUE form of systemd's `EnvironmentFile=` and `docker
--env-file`: lines split on "\\n" only, `#` comments, later assignments win.
A comment records the audit entry the file reflects (`# slotgen-head: seq=N
hash=H`), so a truncated log, a rewound file or a hand edit shows.

Three ways to write it, each argued in the README ("How a change is made safe"):

- `write_controls(..., expect=...)`: the writer's fenced replace. The new bytes go
  to a temp file beside the *target* (a symlinked controls file is written
  through), and the rename happens only if the file still holds the bytes the
  writer judged against.
- `engage_kill_switch()`: the rollback's lock-free write. It writes the file with
  the kill-switch engaged, removes every other writer's temp file (so a writer
  that checked before this moment finds its rename failing), and writes it again
  (so a writer that renamed between the two writes is overwritten).
- When no temp file can be created (full disk, read-only directory), the file is
  rewritten in place, which needs no new directory entry and no new block.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..contract import CONTROL_VARS, KILL_VAR, kill_switch_engaged
from ..errors import IntegrityFailure
from ..files import envgrammar, hooks
from ..files.atomic import (
    UnsafeFile,
    check_regular,
    fsync_directory,
    read_bounded,
    temp_path_for,
    unlink_quietly,
    write_temp,
)
from ..files.signals import signals_deferred
from ..runbook.state import CONTROL_ORDER, SAFE_CONTROLS

_HEAD_RE = re.compile(r"^# slotgen-head: seq=([0-9]+) hash=([0-9a-f]{64})$")
_LINE_RE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
NO_HEAD = (0, "0" * 64)
BALLAST_NAME = ".slotgen-reserve"
BALLAST_BYTES = 256 * 1024
#: The most slotgen ever reads of a controls file. The grammar allows envgrammar.MAX_BYTES; a hand-edited file
#: up to this bound is still read (and named as a hand edit, and replaced by a rollback); past it, or not a
#: regular file at all, it is never read or written (SPEC section 14).
READ_BOUND = 64 * 1024
_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT)
_NO_TEMP_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


class ControlsChanged(Exception):
    """The controls file is no longer what this writer judged against (a rollback won)."""


class KillSwitchNotEngaged(Exception):
    """The controls file could not be written with the kill-switch engaged (exit 5)."""


@dataclass(frozen=True)
class ControlsFile:
    values: dict[str, str | None]  # every control; None = unset
    head_seq: int
    head_hash: str
    raw: bytes = b""


def runtime_lines(text: str) -> list[str]:
    """The lines exactly as systemd/docker split an env-file: on "\\n" only."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def render_controls(env: str, values: dict[str, str | None], seq: int, digest: str) -> bytes:
    """The controls file's bytes; IntegrityFailure before a byte is written if a value is outside the
    grammar (envgrammar: a value from a log or a database row is held to it like a hand edit)."""
    for name in CONTROL_ORDER:
        try:
            envgrammar.check_value(name, values.get(name))
        except ValueError as exc:
            raise IntegrityFailure(f"{exc}; not written (the kill-switch is engaged on a rollback)") from None
    lines = [
        f"# slotgen runtime controls for environment {env!r}.",
        "# Written by slotgen; do not edit by hand: an edit is detected and blocks every change.",
        "# Load it with systemd EnvironmentFile= or docker --env-file. Empty = unset.",
        f"# slotgen-head: seq={seq} hash={digest}",
    ]
    for name in CONTROL_ORDER:
        value = values.get(name)
        lines.append(f"{name}={'' if value is None else value}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def target_of(path: Path) -> Path:
    """The file the runtime reads: a symlinked controls file is followed to its target (SPEC section 6).

    Only to a regular file that already holds controls (SPEC section 14): a symlink to anything else (another
    user's authorized_keys, a device, a directory, a dangling name) is UnsafeFile, never written through.
    What sits at the path itself must be a regular file or nothing.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if not os.path.islink(path):
        check_regular(path, st, None)
        return path
    target = Path(os.path.realpath(path))
    try:
        raw = read_bounded(target, READ_BOUND)
    except FileNotFoundError:
        raise UnsafeFile(path, f"a symlink to {target}, which does not exist; not written through") from None
    except UnsafeFile as exc:
        raise UnsafeFile(path, f"a symlink to {exc}; not written through") from None
    if not _holds_controls(raw):
        raise UnsafeFile(path, f"a symlink to {target}, which holds no runtime controls; not written through")
    return target


def _holds_controls(raw: bytes) -> bool:
    """Whether these bytes are recognisably a controls file (a kill-switch line or slotgen's head line)."""
    return any(line.startswith(b"SLOTGEN_AI_KILL=") or envgrammar.HEAD_RE.match(line)
               for line in raw.split(b"\n"))


def read_raw(path: Path) -> bytes | None:
    """The file's bytes (None if there is none), bounded and non-blocking: UnsafeFile for anything else."""
    try:
        return read_bounded(path, READ_BOUND)
    except FileNotFoundError:
        return None


def parse_controls(path: Path) -> ControlsFile:
    """Read a controls file strictly: bytes outside the grammar (envgrammar) are an integrity failure naming
    the line and the byte, as is a file that is not a regular file or is over its bound."""
    try:
        raw = read_bounded(path, READ_BOUND)
    except FileNotFoundError:
        raise IntegrityFailure(f"{path}: controls file is missing") from None
    except UnsafeFile as exc:
        raise IntegrityFailure(f"{exc}: not read as a controls file") from None
    except OSError as exc:
        raise IntegrityFailure(f"{path}: controls file unreadable ({exc.__class__.__name__})") from None
    try:
        parsed = envgrammar.parse(raw)
    except envgrammar.GrammarError as exc:
        raise IntegrityFailure(f"{path}:{exc.line}: {exc.what}, at byte {exc.offset} (hand edit?)") from None
    if parsed.head is None:
        raise IntegrityFailure(f"{path}: controls file has no slotgen-head line (hand edit?)")
    missing = [name for name in CONTROL_VARS if name not in parsed.values]
    if missing:
        raise IntegrityFailure(f"{path}: controls file lacks {', '.join(missing)} (hand edit?)")
    return ControlsFile(values=dict(parsed.values), head_seq=parsed.head[0], head_hash=parsed.head[1], raw=raw)


def runtime_values(raw: bytes) -> dict[str, str | None]:
    """What the runtime would read from these bytes: later assignments win, unknown keys ignored."""
    values: dict[str, str | None] = {name: None for name in CONTROL_VARS}
    for line in runtime_lines(raw.decode("utf-8", errors="replace")):
        match = _LINE_RE.match(line)
        if match and match.group(1) in CONTROL_VARS:
            values[match.group(1)] = match.group(2) or None
    return values


def lenient_controls(path: Path) -> ControlsFile:
    """The controls as found, whatever state the file is in: safe defaults for what cannot be read."""
    try:
        return parse_controls(path)
    except IntegrityFailure:
        pass
    raw = b""
    try:
        raw = read_raw(path) or b""
    except OSError:
        pass
    values: dict[str, str | None] = dict(SAFE_CONTROLS)
    head = NO_HEAD
    for line in runtime_lines(raw.decode("utf-8", errors="replace")):
        match = _HEAD_RE.match(line)
        if match:
            head = (int(match.group(1)), match.group(2))
            continue
        match = _LINE_RE.match(line)
        if match and match.group(1) in CONTROL_VARS:
            values[match.group(1)] = match.group(2) or None
    return ControlsFile(values=values, head_seq=head[0], head_hash=head[1], raw=raw)


def clean_values(values: dict[str, str | None]) -> dict[str, str | None]:
    """Every control, each as found when it fits the grammar, else its safe value (SAFE_CONTROLS): what a
    rollback writes besides the kill-switch. A value carrying "\r", a backslash or a quote could hide another
    assignment from one reader and not another; it is never carried into the engaged file."""
    return {name: values.get(name) if envgrammar.value_problem(values.get(name)) is None else SAFE_CONTROLS[name]
            for name in CONTROL_ORDER}


def write_controls(path: Path, data: bytes, *, expect: bytes | None) -> None:
    """The writer's fenced replace: only if the file still holds `expect` (None: no check).

    Raises ControlsChanged when the file changed since it was read, or when a
    rollback removed this writer's temp file before its rename.
    """
    try:
        target = target_of(path)
        current = read_raw(target) if expect is not None else None
    except UnsafeFile as exc:
        raise IntegrityFailure(f"{exc}: not a controls file (hand edit?); 'slotgen rollback' reports it too") from None
    if expect is not None and current != expect:
        raise ControlsChanged(f"{target} changed since it was read")
    tmp = temp_path_for(target)
    write_temp(tmp, target, data)
    hooks.point("controls-after-temp-write")
    if expect is not None and _read_quietly(target) != expect:
        unlink_quietly(tmp)
        raise ControlsChanged(f"{target} changed since it was read")
    hooks.point("controls-before-rename")
    try:
        os.replace(tmp, target)
    except FileNotFoundError:
        raise ControlsChanged(f"{target}: this writer's temp file was removed by a rollback") from None
    hooks.point("controls-after-rename")
    fsync_directory(target.parent)


def _read_quietly(target: Path) -> bytes | None:
    try:
        return read_raw(target)
    except OSError:
        return b""  # not what was expected: the fenced write does not happen


def engage_kill_switch(path: Path, env: str) -> tuple[dict[str, str | None], str, str | None]:
    """Write the controls with SLOTGEN_AI_KILL=true, without any lock; return what the runtime now reads.

    Keeps the other values and the head line as found. Returns (values read
    back, how: "replaced" or "in place", the kill-switch value found before).
    KillSwitchNotEngaged if the file cannot be written or does not read back engaged.
    """
    with signals_deferred():  # the writes complete, or none starts: no temp file left behind by an interrupt
        return _engage(Path(path), env)


def _engage(path: Path, env: str) -> tuple[dict[str, str | None], str, str | None]:
    """Replace the file whole (never patch it) with the engaged controls, then read it back strictly.

    Only a regular file (or none) is replaced, and a symlink only onto a regular file that holds controls;
    anything else (a FIFO, a device, a directory, a file over READ_BOUND) is named and not written: exit 5.
    The read-back must pass the byte grammar, under which systemd, docker and slotgen read the same
    controls (tests/envfile_oracle.py holds that to systemd's own parser), and hold SLOTGEN_AI_KILL=true:
    the strictest of the three readers has the last word.
    """
    try:
        target = target_of(path)
        if target.exists():
            check_regular(target, os.stat(target), READ_BOUND)
        found = lenient_controls(target)
    except OSError as exc:
        raise KillSwitchNotEngaged(f"{exc}" if isinstance(exc, UnsafeFile) else f"{path}: {exc.strerror}") from None
    old = runtime_values(found.raw)[KILL_VAR] if found.raw else found.values.get(KILL_VAR)
    values = clean_values(found.values)
    values[KILL_VAR] = "true"
    data = render_controls(env, values, found.head_seq, found.head_hash)
    how = _force(target, data)
    hooks.point("rollback-after-first-write")
    _invalidate_other_temps(target)
    how = _force(target, data)
    try:
        back = read_raw(target) or b""
    except OSError as exc:
        raise KillSwitchNotEngaged(f"{target}: cannot read back ({exc})") from None
    try:
        parsed = envgrammar.parse(back)
    except envgrammar.GrammarError as exc:
        raise KillSwitchNotEngaged(f"{target}: read back, it is not a clean controls file ({exc})") from None
    if not kill_switch_engaged(parsed.values.get(KILL_VAR)) or parsed.values.get(KILL_VAR) != "true":
        raise KillSwitchNotEngaged(f"{target}: read back SLOTGEN_AI_KILL={parsed.values.get(KILL_VAR)!r}")
    return runtime_values(back), how, old


def _force(target: Path, data: bytes) -> str:
    """Replace atomically; on a full disk free the reserve and retry; else rewrite in place."""
    tmp = temp_path_for(target)
    for attempt in (1, 2):
        try:
            write_temp(tmp, target, data)
            hooks.point("rollback-temp-written")
            os.replace(tmp, target)
            try:
                fsync_directory(target.parent)
            except OSError:
                pass
            return "replaced"
        except OSError as exc:
            unlink_quietly(tmp)
            if attempt == 1 and exc.errno in _SPACE_ERRORS and release_ballast(target.parent):
                continue
            if exc.errno not in _NO_TEMP_ERRORS and not isinstance(exc, FileNotFoundError):
                raise KillSwitchNotEngaged(f"{target}: {exc.strerror}") from None
            break
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise KillSwitchNotEngaged(f"{target}: cannot be written ({exc.strerror})") from None
    try:
        check_regular(target, os.fstat(fd), None)  # never written in place unless a regular file
    except UnsafeFile as exc:
        os.close(fd)
        raise KillSwitchNotEngaged(str(exc)) from None
    try:
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += os.pwrite(fd, view[offset:], offset)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    except OSError as exc:
        raise KillSwitchNotEngaged(f"{target}: in-place write failed ({exc.strerror})") from None
    finally:
        os.close(fd)
    return "in place"


def _invalidate_other_temps(target: Path) -> None:
    prefix = f".{target.name}.tmp-"
    own = temp_path_for(target).name
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name != own:
            unlink_quietly(target.parent / name)


def ensure_ballast(directory: Path) -> None:
    """Keep a small reserve file, so a rollback on a full disk can free space to record itself."""
    path = Path(directory) / BALLAST_NAME
    try:
        if path.exists():
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, b"\0" * BALLAST_BYTES)  # real blocks, not a sparse file
        os.fsync(fd)
    except OSError:
        unlink_quietly(path)
    finally:
        os.close(fd)


def release_ballast(directory: Path) -> bool:
    """Free the reserve; True if there was one."""
    path = Path(directory) / BALLAST_NAME
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
