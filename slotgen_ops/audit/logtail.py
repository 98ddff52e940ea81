"""Reading the end of the audit log file, from the end only (SPEC section 3).

`read_tail` finds the last complete entry and any torn last line (an interrupted write) without reading the
file from its start, and whether the line before a torn one is damaged too; `checked_head` refuses to build
on a torn or forged end. Both work on an open descriptor; `log.AuditLog` opens it, holds the lock, writes and
repairs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import IntegrityFailure
from .canonical import entry_hash
from .review import REPAIR_HINT

__all__ = ["MAX_LINE", "checked_head", "read_tail"]

_TAIL_CHUNK = 64 * 1024
#: A last line longer than this is not read into memory: it is damage, not an entry.
MAX_LINE = 16 * 1024 * 1024


class _Tail:
    """What the end of the file says: the last complete entry and any torn line."""

    __slots__ = ("size", "entry", "torn", "torn_at", "damaged_before")

    def __init__(self, size: int) -> None:
        self.size = size
        self.entry: dict[str, Any] | None = None
        self.torn = b""  # the torn last line (fragment or non-entry line)
        self.torn_at = size  # offset where it starts
        self.damaged_before = False  # the line before the torn one is bad too


def checked_head(path: Path, tail: _Tail) -> dict[str, Any] | None:
    """The tail's last entry, refusing to build on a torn or forged end (``path``: the log, for the message)."""
    if tail.torn:
        raise IntegrityFailure(
            f"audit log {path}: the last line is torn (an interrupted write?); "
            + REPAIR_HINT
        )
    prev = tail.entry
    if prev is None:
        return None
    seq = prev.get("seq")
    if type(seq) is not int or seq < 1:
        raise IntegrityFailure(
            f"audit log {path}: the last entry has no valid seq; run `slotgen audit verify`"
        )
    try:
        ok = prev.get("hash") == entry_hash(prev)
    except ValueError:
        ok = False
    if not ok:
        raise IntegrityFailure(
            f"audit log {path}: the last entry (seq {seq}) fails its hash check; "
            "run `slotgen audit verify`",
            first_bad=seq,
        )
    return prev


def read_tail(fd: int) -> _Tail:
    """Read the last (up to two) lines of the open file, from the end only."""
    tail = _Tail(os.fstat(fd).st_size)
    if tail.size == 0:
        return tail
    last_start = _line_start(fd, tail.size)
    if tail.size - last_start > MAX_LINE:  # never read into memory: damage, not an entry
        last = b"<a line of %d bytes>" % (tail.size - last_start)
        entry = None
    else:
        last = _pread_all(fd, tail.size - last_start, last_start)
        entry = _as_entry(last)
    if entry is not None:
        tail.entry = entry
        return tail
    tail.torn, tail.torn_at = last, last_start
    if last_start > 0:
        prev_start = _line_start(fd, last_start)
        if last_start - prev_start <= MAX_LINE:
            tail.entry = _as_entry(_pread_all(fd, last_start - prev_start, prev_start))
        tail.damaged_before = tail.entry is None
    return tail


def _as_entry(line: bytes) -> dict[str, Any] | None:
    """The entry on a complete line, or ``None`` if the line is torn or not an entry."""
    if not line.endswith(b"\n"):
        return None
    # Torn means unreadable, not merely non-canonical: a hand-edited last
    # entry must reach verify (and refuse append), never be cut by repair.
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # a pathologically nested line is damage, not a crash
        return None
    return value if isinstance(value, dict) else None


def _line_start(fd: int, end: int) -> int:
    """Offset where the line ending at ``end`` (exclusive) starts."""
    # The line's own terminator is at end-1; search strictly before it.
    hi = end - 1
    while hi > 0:
        lo = max(0, hi - _TAIL_CHUNK)
        cut = _pread_all(fd, hi - lo, lo).rfind(b"\n")
        if cut >= 0:
            return lo + cut + 1
        hi = lo
    return 0


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    parts = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        parts.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)
