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
from . import hooks
from .atomic import fsync_directory, temp_path_for, unlink_quietly, write_temp
from .signals import signals_deferred
from .state import CONTROL_ORDER, SAFE_CONTROLS

_HEAD_RE = re.compile(r"^# slotgen-head: seq=([0-9]+) hash=([0-9a-f]{64})$")
_LINE_RE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
NO_HEAD = (0, "0" * 64)
BALLAST_NAME = ".slotgen-reserve"
BALLAST_BYTES = 256 * 1024
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
    """The file the runtime reads: a symlinked controls file is followed to its target."""
    return Path(os.path.realpath(path))


def read_raw(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(1 << 20)
    except FileNotFoundError:
        return None


def parse_controls(path: Path) -> ControlsFile:
    """Read a controls file strictly: anything unexpected is an integrity failure."""
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise IntegrityFailure(f"{path}: controls file is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityFailure(f"{path}: controls file unreadable ({exc.__class__.__name__})") from None
    values: dict[str, str | None] = {}
    head: tuple[int, str] | None = None
    for number, line in enumerate(runtime_lines(text), 1):
        match = _HEAD_RE.match(line)
        if match:
            head = (int(match.group(1)), match.group(2))
            continue
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if not match or match.group(1) not in CONTROL_VARS:
            raise IntegrityFailure(f"{path}:{number}: unexpected line in controls file (hand edit?)")
        name, value = match.group(1), match.group(2)
        if name in values:
            raise IntegrityFailure(f"{path}:{number}: {name} is set twice (hand edit?)")
        values[name] = value if value != "" else None
    if head is None:
        raise IntegrityFailure(f"{path}: controls file has no slotgen-head line (hand edit?)")
    missing = [name for name in CONTROL_VARS if name not in values]
    if missing:
        raise IntegrityFailure(f"{path}: controls file lacks {', '.join(missing)} (hand edit?)")
    return ControlsFile(values=values, head_seq=head[0], head_hash=head[1], raw=raw)


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


def write_controls(path: Path, data: bytes, *, expect: bytes | None) -> None:
    """The writer's fenced replace: only if the file still holds `expect` (None: no check).

    Raises ControlsChanged when the file changed since it was read, or when a
    rollback removed this writer's temp file before its rename.
    """
    target = target_of(path)
    tmp = temp_path_for(target)
    write_temp(tmp, target, data)
    hooks.point("controls-after-temp-write")
    if expect is not None and read_raw(target) != expect:
        unlink_quietly(tmp)
        raise ControlsChanged(f"{target} changed since it was read")
    hooks.point("controls-before-rename")
    try:
        os.replace(tmp, target)
    except FileNotFoundError:
        raise ControlsChanged(f"{target}: this writer's temp file was removed by a rollback") from None
    hooks.point("controls-after-rename")
    fsync_directory(target.parent)


def engage_kill_switch(path: Path, env: str) -> tuple[dict[str, str | None], str, str | None]:
    """Write the controls with SLOTGEN_AI_KILL=true, without any lock; return what the runtime now reads.

    Keeps the other values and the head line as found. Returns (values read
    back, how: "replaced" or "in place", the kill-switch value found before).
    KillSwitchNotEngaged if the file cannot be written or does not read back engaged.
    """
    with signals_deferred():  # the writes complete, or none starts: no temp file left behind by an interrupt
        return _engage(target_of(path), env)


def _engage(target: Path, env: str) -> tuple[dict[str, str | None], str, str | None]:
    found = lenient_controls(target)
    old = runtime_values(found.raw)[KILL_VAR] if found.raw else found.values.get(KILL_VAR)
    values = dict(found.values)
    values[KILL_VAR] = "true"
    data = render_controls(env, values, found.head_seq, found.head_hash)
    how = _force(target, data)
    hooks.point("rollback-after-first-write")
    _invalidate_other_temps(target)
    how = _force(target, data)
    try:
        back = read_raw(target) or b""
    except OSError as exc:
        raise KillSwitchNotEngaged(f"{target}: cannot read back ({exc.strerror})") from None
    read = runtime_values(back)
    if not kill_switch_engaged(read[KILL_VAR]):
        raise KillSwitchNotEngaged(f"{target}: read back SLOTGEN_AI_KILL={read[KILL_VAR]!r}")
    return read, how, old


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
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KillSwitchNotEngaged(f"{target}: cannot be written ({exc.strerror})") from None
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
