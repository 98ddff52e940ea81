"""Mutual exclusion for a workspace's environments: `flock` on the directory itself.

SPEC section 6: "Mutual exclusion does not depend on a lock file that can be
deleted." The lock is taken on the `environments/` directory's own inode, which
cannot be unlinked while it holds the logs, so deleting a file never lets two
writers in. Writers hold it exclusively for a few local file operations only
(never across network I/O); readers hold it shared. `flock` is released by the
kernel when the holder dies, so a crashed writer never leaves it taken.

Within one process every lock on the same directory is the same object
(`EnvLock.for_directory`), so nesting is re-entrant rather than a self-deadlock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import IntegrityFailure

Notice = Callable[[str], None]

_LOCKS: dict[str, "EnvLock"] = {}
_notice: Notice | None = None


def set_wait_notice(notice: Notice | None) -> None:
    """Where to say at once that a command waits for the lock (the CLI: a stderr line)."""
    global _notice
    _notice = notice


class LockBusy(Exception):
    """The lock did not come within the time allowed (only `exclusive(timeout=...)`)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class EnvLock:
    """The exclusive/shared lock of one `environments/` directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._fd = -1
        self._exclusive = 0
        self._shared = 0

    @classmethod
    def for_directory(cls, directory: Path) -> "EnvLock":
        key = os.path.realpath(directory)
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = cls(Path(directory))
        return lock

    @property
    def held(self) -> bool:
        return self._exclusive > 0

    def _open(self) -> int:
        try:
            return os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise IntegrityFailure(f"{self.directory}: cannot lock: {exc.strerror}") from None

    @contextmanager
    def exclusive(self, timeout: float | None = None, what: str = "this change") -> Iterator[None]:
        """Hold the writer lock. `timeout` None: wait as long as it takes, saying so at once.

        With a timeout, `LockBusy` is raised if the lock has not come by then.
        """
        if self._shared and not self._exclusive:
            raise RuntimeError("EnvLock.exclusive() inside a shared hold of the same lock would deadlock")
        if self._exclusive:
            self._exclusive += 1
            try:
                yield
            finally:
                self._exclusive -= 1
            return
        fd = self._open()
        try:
            self._acquire(fd, fcntl.LOCK_EX, timeout, what)
            self._fd, self._exclusive = fd, 1
            try:
                yield
            finally:
                self._exclusive, self._fd = 0, -1
        finally:
            os.close(fd)  # closing releases the flock

    @contextmanager
    def shared(self, timeout: float = 2.0) -> Iterator[None]:
        """Hold the reader lock, so a reader sees the controls and the log from one moment.

        A reader never hangs behind a stopped writer: after `timeout` it reads
        without the lock (saying so). What it may then see mid-write (controls one
        entry behind, or engaged ahead of the log) is what `snapshot` accepts anyway.
        """
        if self._exclusive or self._shared:
            self._shared += 1
            try:
                yield
            finally:
                self._shared -= 1
            return
        try:
            fd = self._open()
        except IntegrityFailure:
            fd = -1  # a directory we cannot open is reported by the reads themselves
        try:
            if fd >= 0:
                try:
                    self._acquire(fd, fcntl.LOCK_SH, timeout, "reading")
                except LockBusy as exc:
                    if _notice is not None:
                        _notice(f"reading without the lock: it is held by {exc.holder}")
            self._shared = 1
            try:
                yield
            finally:
                self._shared = 0
        finally:
            if fd >= 0:
                os.close(fd)

    def _acquire(self, fd: int, mode: int, timeout: float | None, what: str) -> None:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = describe_holders(self.directory)
        if _notice is not None:
            _notice(f"waiting for the lock on {self.directory} ({what}): held by {holder}")
        if timeout is None:
            fcntl.flock(fd, mode)
            return
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(0.005)
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(holder) from None


def describe_holders(directory: Path) -> str:
    """Who holds a flock on `directory`, from /proc/locks: 'pid 123 (slotgen set ...), stopped'."""
    try:
        st = os.stat(directory)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            rows = fh.read().splitlines()
    except OSError:
        return "another process"
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found = []
    for row in rows:
        parts = row.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5] == wanted and parts[4].isdigit() and int(parts[4]) != os.getpid():
            found.append(_describe_pid(int(parts[4])))
    return "; ".join(found) if found else "another process"


def _describe_pid(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        args = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return f"pid {pid}"
    # Show from 'slotgen' (or the module) on, not the interpreter's path.
    for i, arg in enumerate(args):
        if arg.endswith("slotgen") or arg == "slotgen_ops" or arg.endswith("faultwrap.py"):
            args = ["slotgen", *args[i + 1:]]
            break
    text = " ".join(args)[:120]
    stopped = ", stopped (SIGSTOP)" if state in ("T", "t") else ""
    return f"pid {pid} ({text}){stopped}"


class FileLock:
    """`flock` on a file itself (the break-glass journal): not on the environments directory,
    so that a rollback can record while a stopped process holds the directory lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    @contextmanager
    def exclusive(self, timeout: float | None = 2.0, what: str = "") -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        # Non-blocking and never through a symlink, and only on a regular file: a FIFO or device planted at
        # a journal's name is named (UnsafeFile) instead of hanging a rollback (SPEC section 14).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        try:
            from .atomic import check_regular

            check_regular(self.path, os.fstat(fd), None)
        except OSError:
            os.close(fd)
            raise
        try:
            deadline = time.monotonic() + (timeout or 0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if timeout is not None and time.monotonic() >= deadline:
                        break  # a hung journal writer must not stop a rollback: append anyway (O_APPEND)
                    time.sleep(0.005)
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
        finally:
            os.close(fd)

    @contextmanager
    def shared(self) -> Iterator[None]:
        yield


@contextmanager
def signing_turn(path: Path, timeout: float | None, what: str) -> Iterator[bool]:
    """Take turns at signing: one writer of an environment at a time computes, signs and records.

    Signing happens with the environment's lock released (it may wait on ssh-agent or a touch), so
    without turns a busy environment would keep overtaking a writer between its signing and its
    recording. This is fairness only, never safety: every append still checks, under the
    environment's lock, that it extends the head it was computed on; a deleted or unusable turn
    file only means more retries. A rollback never takes a turn. Yields whether the turn was taken
    (with a timeout, the writer goes on without it rather than wait longer).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield False
        return
    try:
        taken = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if _notice is not None:
                _notice(f"waiting for another writer of this environment to finish signing ({what})")
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout
                taken = False
                while time.monotonic() < deadline:
                    time.sleep(0.005)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        taken = True
                        break
                    except BlockingIOError:
                        pass
        yield taken
    finally:
        os.close(fd)
