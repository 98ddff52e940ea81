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

import errno
import os
import re
import stat
from pathlib import Path

from . import hooks

__all__ = ["UnsafeFile", "atomic_write", "check_regular", "clean_stale_temps", "fault_point", "identity", "read_bounded",
           "temp_path_for", "unlink_quietly", "write_temp"]

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
    """Write `data` to the temp file `tmp` with `target`'s permission bits, fsynced; no temp left on failure.

    The temp file is created exclusively and never through a symlink (SPEC section 14): whatever sits at its
    name (a planted symlink, a file left by a dead writer of the same pid) is removed first, and a name that
    reappears between the two is an error, not a file written elsewhere. So the fchmod below can only ever
    change the mode of the file this call created.
    """
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        mode = 0o644
    unlink_quietly(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
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


class UnsafeFile(OSError):
    """A path that is not what it seems (SPEC section 14): not a regular file (a FIFO, a device, a directory,
    a socket), a symlink where none may be, or larger than its bound. Never read or written blindly: opening
    it would block, or reading it would never end. An OSError, so every caller that treats an unreadable file
    as a problem treats this one the same; its text says what was found, in one line. `size`: for one over its
    bound (errno EFBIG), the bytes found, so a caller can say it in its own words."""

    def __init__(self, path: Path | str, what: str, code: int = errno.EINVAL, *, size: int | None = None) -> None:
        super().__init__(code, f"{path} is {what}")
        self.path = str(path)
        self.what = what
        self.size = size

    def __str__(self) -> str:
        return str(self.strerror)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink"))


def kind_of(mode: int) -> str:
    """'a FIFO', 'a directory', ... for a file mode that is not a regular file's; 'a regular file' otherwise."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def check_regular(path: Path | str, st: os.stat_result, limit: int | None) -> None:
    """UnsafeFile unless `st` is a regular file of at most `limit` bytes."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(path, f"{kind_of(st.st_mode)}, not a regular file")
    if limit is not None and st.st_size > limit:
        raise UnsafeFile(path, f"{_size(st.st_size)}, over its bound of {_size(limit)}", errno.EFBIG,
                         size=st.st_size)


def read_bounded(path: Path | str, limit: int, *, follow: bool = True) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them; never blocks, never reads without end.

    Opened non-blocking (a FIFO opens at once instead of waiting for a writer), then judged on the open
    descriptor (no swap between a check and the read): anything but a regular file of at most `limit` bytes
    is UnsafeFile. `follow=False`: a symlink is refused too. FileNotFoundError when there is nothing.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise UnsafeFile(path, "a symlink, which is not followed here") from None
        raise
    try:
        check_regular(path, os.fstat(fd), limit)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(65536, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while read
                raise UnsafeFile(path, f"over its bound of {_size(limit)}", errno.EFBIG, size=total)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


def identity(path: Path | str) -> list[int] | None:
    """A file's identity (device, inode, size, mtime, ctime), following symlinks: any write or replacement
    changes it. None when there is nothing there (or it cannot be looked at)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


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
