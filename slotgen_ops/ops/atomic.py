"""Crash-safe file replacement, and the fault hook the crash tests use.

``atomic_write`` leaves the target holding either its old content or the new
content, entirely, whatever instant the process dies at: the new bytes go to a
temp file in the same directory (same filesystem, so the rename is atomic),
are fsynced, renamed over the target, and the directory is fsynced so the
rename itself survives a power cut.

A crash can leave a temp file behind. Its name, ``.<name>.tmp-<pid>``, is
hidden, never read by anything, and recognisable, so it is harmless and
:func:`clean_stale_temps` can remove it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from . import hooks

__all__ = ["atomic_write", "clean_stale_temps", "fault_point", "temp_path_for", "unlink_quietly", "write_temp"]

_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")


def fault_point(name: str) -> None:
    """A named point where a test may crash or pause the process (see ``hooks``).

    Points in this module: ``after-temp-write`` and ``after-rename`` (also
    ``<prefix>-after-...`` when ``atomic_write`` is given a ``fault_prefix``).
    The installed CLI registers no hook, so this does nothing there.
    """
    hooks.point(name)


def temp_path_for(path: Path) -> Path:
    """The temp file ``atomic_write`` uses for ``path`` in this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: Path, data: bytes, fault_prefix: str | None = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    An existing file's permission bits are kept (a controls file may hold
    secrets and be 0600). ``fault_prefix`` names this write for the fault hook:
    with ``fault_prefix="controls"`` the points are also reachable as
    ``controls-after-temp-write`` / ``controls-after-rename``, so a test can
    crash one particular write; the bare names crash any ``atomic_write``.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    write_temp(tmp, path, data)
    _fault("after-temp-write", fault_prefix)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    _fault("after-rename", fault_prefix)
    fsync_directory(path.parent)


def write_temp(tmp: Path, target: Path, data: bytes) -> None:
    """Write `data` to the temp file `tmp` with `target`'s permission bits, fsynced; no temp left on failure."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        # O_CREAT's mode is filtered by the umask; the target's mode must survive as is.
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(tmp)
        raise
    os.close(fd)


def fsync_directory(directory: Path) -> None:
    """fsync a directory so renames/creations in it survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files left in ``directory`` by writers that have died.

    Only files named like ``.<name>.tmp-<pid>`` whose pid is not a live
    process are removed: a live writer's temp is about to be renamed, and
    deleting it would make that write fail. Returns the paths removed.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in sorted(names):
        match = _TEMP_RE.match(name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        candidate = Path(directory) / name
        if candidate.is_file() and not candidate.is_symlink():
            unlink_quietly(candidate)
            removed.append(candidate)
    return removed


def _fault(point: str, prefix: str | None) -> None:
    fault_point(point)
    if prefix:
        fault_point(f"{prefix}-{point}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def unlink_quietly(path: Path) -> None:
    """Remove `path` if it can be removed; a file that is gone or cannot go is not an error here."""
    try:
        os.unlink(path)
    except OSError:
        pass
