"""Reading what the runtime hosts sent: a telemetry directory of JSON-lines files, one per host (SPEC section 12).

`<host>.jsonl` holds one `slotgen.execution` event per line, as
`schemas/telemetry-event.schema.json` defines it; rotated siblings
`<host>.jsonl.N` are read too. The host is the file's name. Other names in
the directory are not telemetry and are left alone.

Nothing here trusts the directory:
- every file is opened non-blocking and judged on its descriptor (a FIFO, a
  device or a directory named like a host's file is a problem named by its
  path, never a hang);
- files are read as a stream, line by line, each line bounded (`MAX_LINE`):
  a file of any size costs memory for one line, and a longer line is a
  problem named `FILE:LINE`;
- a line that is not JSON or not a valid event is a problem named `FILE:LINE`,
  never skipped in silence (the `observed-schema` check fails on it);
- an event stamped more than `SKEW_S` in the future is a problem too: a host
  whose clock runs ahead cannot be placed in a window;
- the last line of a file without its newline is a line still being written
  (or cut by a rotation): it is not read yet, and it is no problem;
- a file that disappears between listing and reading was rotated away; the
  directory is listed again once, so its new name is read instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..clock import parse_utc_or_none

__all__ = ["Event", "HOST", "MAX_LINE", "Reading", "SKEW_S", "read_directory"]

MAX_LINE = 64 * 1024  # bytes: an event is a few hundred
SKEW_S = 5.0          # seconds a host's clock may run ahead of this one's
HOST = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"  # a host's name, as its file names it
_FILE = re.compile(rf"^(?P<host>{HOST})\.jsonl(?:\.(?P<n>[0-9]{{1,6}}))?$")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Event:
    host: str
    where: str          # FILE:LINE, for people
    ts: datetime
    doc: dict[str, Any]


@dataclass
class Reading:
    """What a directory held from `since` on: the valid events, the problems, and when each host was last seen."""

    directory: Path
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)      # "FILE:LINE: why" (or "FILE: why")
    problem_count: int = 0                                  # all of them; `problems` keeps the first few
    last_seen: dict[str, datetime] = field(default_factory=dict)
    unavailable: str | None = None                          # the directory itself could not be read: why
    seen: set[bytes] = field(default_factory=set, repr=False)  # a digest of each (host, line) read

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < 20:
            self.problems.append(text)


def _validate(doc: Any) -> list[str]:
    from ..runtime.schemas import schema_errors

    return schema_errors("telemetry-event", doc)


def _files(directory: Path) -> list[tuple[str, int, Path]]:
    """(host, rotation, path) of every telemetry file, the oldest rotation first (.N sorts before the live file)."""
    out = []
    for entry in os.scandir(directory):
        match = _FILE.match(entry.name)
        if match:
            rotation = int(match["n"]) if match["n"] is not None else -1
            out.append((match["host"], rotation, Path(entry.path)))
    return sorted(out, key=lambda item: (item[0], -item[1]))


def _lines(fd: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, the line without its newline) for each whole line; None in place of a line over MAX_LINE."""
    number, pending, too_long = 0, b"", False
    while True:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return  # what is left in `pending` has no newline yet: still being written
        pending += chunk
        while True:
            cut = pending.find(b"\n")
            if cut < 0:
                if len(pending) > MAX_LINE:
                    too_long, pending = True, b""
                break
            number += 1
            line, pending = pending[:cut], pending[cut + 1:]
            yield number, (None if too_long or len(line) > MAX_LINE else line)
            too_long = False


def _read_file(reading: Reading, host: str, path: Path, since: datetime, until: datetime,
               validate: Callable[[Any], list[str]]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            reading.problem(f"{path}: {kind}, not a file of events")
            return
        latest = until + timedelta(seconds=SKEW_S)
        for number, line in _lines(fd):
            where = f"{path}:{number}"
            if line is None:
                reading.problem(f"{where}: a line over {MAX_LINE} bytes")
                continue
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except (ValueError, RecursionError):
                reading.problem(f"{where}: not JSON")
                continue
            errors = validate(doc)
            if errors:
                reading.problem(f"{where}: not a valid event ({errors[0]})")
                continue
            ts = parse_utc_or_none(doc["ts"])
            if ts is None:
                reading.problem(f"{where}: ts {doc['ts']!r} is not a time")
                continue
            if ts > latest:
                reading.problem(f"{where}: ts {doc['ts']} is {(ts - until).total_seconds():.0f} s in the future "
                                f"(a host clock ahead by more than {SKEW_S:.0f} s)")
                continue
            key = hashlib.blake2b(host.encode() + b"\n" + line, digest_size=16).digest()
            if key in reading.seen:
                continue  # the same line under its rotated name, read again after a rotation
            reading.seen.add(key)
            if host not in reading.last_seen or ts > reading.last_seen[host]:
                reading.last_seen[host] = ts
            if ts >= since:
                reading.events.append(Event(host, where, ts, doc))
    finally:
        os.close(fd)


def read_directory(directory: Path, since: datetime, until: datetime, *,
                   validate: Callable[[Any], list[str]] = _validate) -> Reading:
    """The events from `since` on in `directory` (every file read whole: `last_seen` covers all of it)."""
    reading = Reading(Path(directory))
    try:
        files = _files(directory)
    except FileNotFoundError:
        reading.unavailable = f"{directory}: no telemetry yet (the directory does not exist)"
        return reading
    except NotADirectoryError:
        reading.unavailable = f"{directory}: not a directory"
        return reading
    except OSError as exc:
        reading.unavailable = f"{directory}: cannot read it ({exc.strerror or exc})"
        return reading
    done: set[Path] = set()
    for attempt in (1, 2):
        missed = False
        for host, _, path in files:
            if path in done:
                continue
            try:
                _read_file(reading, host, path, since, until, validate)
                done.add(path)
            except FileNotFoundError:
                missed = True  # rotated away between the listing and the open
            except OSError as exc:  # unreadable, a dangling link, an I/O error: named, never a traceback
                reading.problem(f"{path}: cannot read it ({exc.strerror or exc})")
                done.add(path)
        if not missed or attempt == 2:
            break
        try:
            files = _files(directory)
        except OSError:
            break
    reading.events.sort(key=lambda event: (event.ts, event.host))
    return reading
