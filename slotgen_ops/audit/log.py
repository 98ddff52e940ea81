"""The per-environment audit log: append-only JSON lines under a SHA-256 hash chain.

SPEC section 3. Each line is one entry in canonical JSON (see ``canonical``),
newline-terminated. The log fills four fields itself:

- ``seq``: 1, 2, 3, ... (the entry's position; the first bad one is what
  ``verify`` reports);
- ``ts``: UTC, RFC 3339 with microseconds, e.g. ``2026-11-22T13:40:00.123456Z``;
- ``prevHash``: the previous entry's ``hash`` (64 zeros for the first);
- ``hash``: SHA-256 of the entry's canonical bytes without ``hash``.

Every other field is carried as given (``AUDIT_FIELDS`` lists the product's).

Concurrency: writers serialise on the lock they are given (by default the
``flock`` of the log's directory, see ``locking``), held across judge ->
append -> apply by the caller (``AuditLog.locked``). Readers take it shared.
Every append checks, under the lock, that it extends the head its caller
judged against (``after=``), so a writer that read an old head cannot record
a state computed from it.

Integrity problems raise ``IntegrityFailure`` (exit 4); this module never
prints. It owns the file, its lock, appending and repairing; ``append`` fills
an entry's chain fields (for the PostgreSQL store too), ``logtail`` reads the
file's end, ``review`` verifies and exports what is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ..errors import IntegrityFailure
from ..files import hooks
from ..files.atomic import atomic_write, check_regular, fsync_directory, identity as file_identity
from .append import complete, extends, utc_timestamp
from .logtail import _pread_all, _Tail, checked_head, read_tail
from .review import (
    AUDIT_FIELDS,
    GENESIS_HASH,
    REPAIR_HINT,
    VerifyReport,
    export_csv,
    export_jsonl,
    filter_entries,
    verify_lines,
)
from .canonical import _dumps

__all__ = [
    "AUDIT_FIELDS",
    "GENESIS_HASH",
    "AuditLog",
    "VerifyReport",
    "export_csv",
    "export_jsonl",
    "filter_entries",
]

_FILLED = ("seq", "prevHash", "hash", "signature")


class AuditLog:
    """One environment's audit log file (``path``), plus its lock ``<path>.lock``."""

    def __init__(self, path: Path, lock: Any = None) -> None:
        from ..files.locking import EnvLock

        self.path = Path(path)
        self.lock = lock if lock is not None else EnvLock.for_directory(self.path.parent)

    # -- locking -------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[AuditLog]:
        """Hold the exclusive writer lock (blocking, saying so at once); re-entrant."""
        with self.lock.exclusive():
            yield self

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Shared lock for readers, so they never see a half-written line."""
        with self.lock.shared():
            yield

    # -- writing -------------------------------------------------------------

    def append(self, fields: dict[str, Any], after: tuple[int, str] | None = None,
               seal: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None) -> dict[str, Any]:
        """Append one entry built from ``fields``; return it complete.

        The caller holds ``locked()``. Fills ``seq``, ``ts`` (unless given),
        ``prevHash`` and ``hash``. Refuses (``IntegrityFailure``) to extend a
        log whose last line is torn or whose last entry fails its own hash.
        Durable on return: one ``write`` of the whole line on an ``O_APPEND``
        descriptor, then ``fsync``. ``after`` is the head ``(seq, hash)`` the
        caller computed the entry's state from ((0, GENESIS_HASH): an empty
        log); if the log's head is another, ``StaleHead`` and nothing written.
        """
        if not self.lock.held:
            raise RuntimeError("AuditLog.append() called without holding AuditLog.locked()")
        taken = [k for k in _FILLED if k in fields]
        if taken:
            raise ValueError(f"audit fields {taken} are filled by the log, not the caller")
        created = not self.path.exists()
        try:
            fd = self._open(os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IntegrityFailure(f"audit log {self.path}: cannot open: {exc.strerror}") from None
        try:
            prev = checked_head(self.path, self._tail(fd))
            extends(prev, after, f"audit log {self.path}")
            entry = complete(fields, prev)
            entry["signature"] = seal(entry) if seal is not None else None  # Unsealed: nothing written
            line = _dumps(entry) + b"\n"
            hooks.point("audit-before-write")
            size_before = os.fstat(fd).st_size
            try:
                written = os.write(fd, line)  # one write: O_APPEND keeps it whole
                os.fsync(fd)
            except OSError as exc:
                _undo_partial(fd, size_before)
                failure = IntegrityFailure(
                    f"audit log {self.path}: write failed ({exc.strerror}); nothing was recorded"
                )
                failure.errno = exc.errno  # type: ignore[attr-defined]
                raise failure from None
            if written != len(line):
                undone = _undo_partial(fd, size_before)
                raise IntegrityFailure(
                    f"audit log {self.path}: short write ({written} of {len(line)} bytes); "
                    + ("nothing was recorded" if undone else REPAIR_HINT)
                )
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)
        return entry

    def repair(self, env: str, actor: dict[str, Any],
               extra: Callable[[dict[str, Any] | None], dict[str, Any]] | None = None,
               seal: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None) -> dict[str, Any] | None:
        """Cut a torn last line off and record what was cut; ``None`` if nothing is torn.

        Takes the lock itself (re-entrant if the caller holds it). Only the
        last line is ever cut: if the line before it is damaged too, this is
        not a torn write but damage ``slotgen audit verify`` must examine, and
        nothing is changed. ``extra(previous_entry)`` may add fields to the
        repair entry (the product adds who, and the unchanged state). The cut bytes are first saved next to the log
        (``<log>.cut-<sha12>``) so a crash between cutting and recording loses
        nothing; that file is removed once the repair entry is durable.
        """
        with self.locked():
            try:
                fd = self._open(os.O_RDWR)
            except FileNotFoundError:
                return None
            try:
                tail = self._tail(fd)
                if not tail.torn:
                    return None
                if tail.damaged_before:
                    raise IntegrityFailure(
                        f"audit log {self.path}: more than the last line is damaged; "
                        "not repairing — run `slotgen audit verify`"
                    )
                intact = _Tail(tail.torn_at)
                intact.entry = tail.entry
                checked_head(self.path, intact)  # refuse before cutting, not after
                cut = _pread_all(fd, tail.size - tail.torn_at, tail.torn_at)
                digest = hashlib.sha256(cut).hexdigest()
                evidence = self.path.with_name(f"{self.path.name}.cut-{digest[:12]}")
                fields = extra(tail.entry) if extra is not None else {}
                fields = {
                    **fields,
                    "action": "audit-repair",
                    "env": env,
                    "actor": actor,
                    "details": {
                        "cutBytes": len(cut),
                        "cutSha256": digest,
                        "cutText": cut[:4096].decode("utf-8", errors="replace"),
                        "cutSavedAs": evidence.name if len(cut) > 4096 else None,
                    },
                }
                fields.setdefault("ts", utc_timestamp())
                if seal is not None:  # signed before anything is cut (Unsealed: nothing changed)
                    seal(complete(fields, tail.entry))
                atomic_write(evidence, cut)
                os.ftruncate(fd, tail.torn_at)
                os.fsync(fd)
            finally:
                os.close(fd)
            entry = self.append(fields, seal=seal)
            if len(cut) <= 4096:  # all of it is in the entry; a longer cut stays beside the log
                evidence.unlink(missing_ok=True)
            return entry

    # -- reading -------------------------------------------------------------

    def head(self) -> dict[str, Any] | None:
        """The last complete entry, read from the end of the file only; ``None`` if empty.

        A torn last line is skipped (``verify`` reports it, ``repair`` cuts it).
        """
        with self.reading():
            try:
                fd = self._open(os.O_RDONLY)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise self._unreadable(exc) from None
            try:
                tail = self._tail(fd)
            except OSError as exc:
                raise self._unreadable(exc) from None
            finally:
                os.close(fd)
        if tail.damaged_before:
            raise IntegrityFailure(
                f"audit log {self.path}: its last two lines are damaged; run `slotgen audit verify`"
            )
        return tail.entry

    def exists(self) -> bool:
        return self.path.exists() or self.path.is_symlink()

    def lines(self) -> Iterator[bytes]:
        """Every complete line as stored, newline included, in order (a torn tail is no line)."""
        with self.reading():
            try:
                handle = os.fdopen(self._open(os.O_RDONLY), "rb")
            except FileNotFoundError:
                return
            except OSError as exc:
                raise self._unreadable(exc) from None
            with handle:
                for line in handle:
                    if line.endswith(b"\n"):
                        yield line

    def cache_key(self) -> str:
        """What the verified-log cache is kept under (the file's real path)."""
        return os.path.realpath(self.path)

    def identity(self) -> list[int] | None:
        """The file's identity (device, inode, size, mtime, ctime): any write changes it; None if missing."""
        return file_identity(self.path)

    def count(self) -> int:
        """Number of entries, from the head's ``seq`` (0 for an empty log)."""
        head = self.head()
        return int(head["seq"]) if head else 0

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry in order, streamed (constant memory).

        A line that is not a complete JSON object raises ``IntegrityFailure``
        naming its line number. Chain checks are ``verify``'s job.
        """
        with self.reading():
            try:
                handle = os.fdopen(self._open(os.O_RDONLY), "rb")
            except FileNotFoundError:
                return
            except OSError as exc:
                raise self._unreadable(exc) from None
            with handle:
                for number, raw in enumerate(handle, start=1):
                    if not raw.endswith(b"\n"):
                        raise IntegrityFailure(
                            f"audit log {self.path}: line {number} is torn (no newline); "
                            + REPAIR_HINT,
                            first_bad=number,
                        )
                    try:
                        entry = json.loads(raw)
                    except (ValueError, RecursionError):
                        entry = None
                    if not isinstance(entry, dict):
                        raise IntegrityFailure(
                            f"audit log {self.path}: line {number} is not a JSON entry",
                            first_bad=number,
                        )
                    yield entry

    def verify(
        self, anchor: tuple[int, str] | None = None, env: str | None = None,
        check: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> VerifyReport:
        """Check the whole chain, streaming; see ``audit_verify``.

        ``anchor`` is the head ``(seq, hash)`` recorded elsewhere (the controls
        file): it catches a truncated tail and a wholesale rewrite, which a
        chain alone cannot. ``env``: every entry must carry this ``env``.
        ``check``: a per-entry check run in the same pass (see ``verify_lines``).
        """
        with self.reading():
            try:
                handle = os.fdopen(self._open(os.O_RDONLY), "rb")
            except FileNotFoundError:
                return verify_lines(iter(()), anchor=anchor, env=env, check=check)
            except OSError as exc:
                raise self._unreadable(exc) from None
            with handle:
                return verify_lines(handle, anchor=anchor, env=env, check=check)

    # -- export --------------------------------------------------------------

    def export_jsonl(self, out: TextIO, entries: Iterable[dict[str, Any]] | None = None) -> int:
        """Write ``entries`` (default: all) as canonical JSON lines; return how many."""
        return export_jsonl(self.entries() if entries is None else entries, out)

    def export_csv(self, out: TextIO, entries: Iterable[dict[str, Any]] | None = None) -> int:
        """Write ``entries`` (default: all) as CSV (see ``audit_review.export_csv``)."""
        return export_csv(self.entries() if entries is None else entries, out)

    # -- internals -------------------------------------------------------------

    def _open(self, flags: int, mode: int = 0o644) -> int:
        """A descriptor on the log, which must be a regular file (SPEC section 14): opened non-blocking, so a
        FIFO put in its place is named (UnsafeFile, an OSError) instead of hanging the command."""
        fd = os.open(self.path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
        try:
            check_regular(self.path, os.fstat(fd), None)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _unreadable(self, exc: OSError) -> IntegrityFailure:
        return IntegrityFailure(f"audit log {self.path}: cannot read: {exc.strerror}")

    def _tail(self, fd: int) -> _Tail:
        """Read the last (up to two) lines of the open file, from the end only (`logtail.read_tail`; a method
        still, as `changes.repair` asks the log for its tail)."""
        return read_tail(fd)


def _undo_partial(fd: int, size: int) -> bool:
    """Cut a partly written line back off (truncating never needs space); True if that worked."""
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
        return True
    except OSError:
        return False
