"""No rewind: each machine remembers the highest head it has seen of each environment (SPEC section 14).

A log can be cut back to an older head, and its controls file regenerated to
match, so that every remaining entry verifies and the controls agree: nothing
inside the workspace can tell. So every machine that reads an environment
remembers, outside the workspace, the highest head (seq, hash) it has seen,
and the hash of entry 1; a log that no longer extends it is an integrity
failure naming both heads.

Where: `$XDG_STATE_HOME/slotgen/heads/`, else `~/.local/state/slotgen/heads/`,
only in a directory of this user's that nobody else can write or swap
(`paths.private_dir`): never a shared temporary directory, and no fallback to
one. A machine with no such directory remembers nothing and so cannot see a
rewind; it still checks everything else.

Keys: the workspace root's resolved path and the environment, for both
backends, so that a workspace whose `environments/STATE-URL` is pointed at
another database is held to what this machine saw of the one before; and, on
PostgreSQL, the database (its URL without the password, `describe_url`) and
the environment too, so that two workspaces on one machine reading one
database share what they saw.

A new entry 1. `init` of a fresh workspace at a path this machine has seen,
or a database re-created under the same URL, starts a new chain whose entry 1
differs. It is treated as a replaced log, an integrity failure, not as a new
environment: `init` writes entry 1 unsigned (nobody is in a roster yet) and
may choose any roster and identity mode, so an attacker who can write the log
can regenerate entry 1 as easily as any other entry. Forgetting it on a new
entry 1 would make "replace the whole log" the one rewind nobody sees. The
operator who re-created the environment on purpose says so by removing the
file the message names (a local act, by the user this memory belongs to).

Updates: whenever a log is read and found sound (status and every changing
command through `chain.require_sound`, `audit verify`, `audit repair`), and
when a writer appends to a log it found sound. Under a lock on the memory
file's directory, and only forward: a slower reader of an older head never
moves it back. `audit repair` never removes a sound entry (it cuts a torn
line, which no memory ever holds), so it never trips this check.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

from ..policy.paths import private_dir, read_private_json, user_dir, write_private_json

#: A memory file larger than this is not read (it is not one of ours).
MAX_BYTES = 4096


class Seen:
    """What this machine last saw of one environment: (seq, hash) of its head and the hash of entry 1."""

    __slots__ = ("key", "path", "seq", "hash", "first")

    def __init__(self, key: str, path: Path, seq: int, digest: str, first: str) -> None:
        self.key, self.path, self.seq, self.hash, self.first = key, path, seq, digest, first

    def head(self) -> str:
        return f"seq {self.seq} (hash {self.hash[:12]}…)"


def directory() -> Path | None:
    """The memory's directory, or None when this user has no private place for it."""
    return private_dir(user_dir("XDG_STATE_HOME", (".local", "state")), "slotgen", "heads")


def keys(env: Any) -> list[str]:
    """What the memory of `env` is kept under (see the module's docstring)."""
    out = [f"workspace:{os.path.realpath(env.workspace.root)}:{env.name}"]
    try:
        database = env.store.memory_key()
    except Exception:  # noqa: BLE001 - the workspace key is always there
        database = None
    if database:
        out.append(f"{database}:{env.name}")
    return out


def _file(folder: Path, key: str) -> Path:
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _read(path: Path) -> dict[str, Any] | None:
    """The memory file's document; None if absent or not a small regular file of ours holding one."""
    return read_private_json(path, MAX_BYTES)


def recall(env: Any) -> list[Seen]:
    """Every memory this machine holds of `env` (empty: none, or nowhere to keep one)."""
    folder = directory()
    if folder is None:
        return []
    out = []
    for key in keys(env):
        path = _file(folder, key)
        doc = _read(path)
        if doc is None or doc.get("key") != key:
            continue
        seq, digest, first = doc.get("seq"), doc.get("hash"), doc.get("first")
        if type(seq) is int and seq >= 1 and isinstance(digest, str) and isinstance(first, str):
            out.append(Seen(key, path, seq, digest, first))
    return out


def problem(env: Any, seen: list[Seen], entries: int, head: str | None, first: str | None,
            at_seen: dict[int, str]) -> tuple[int, str] | None:
    """(first bad seq, why) if a sound log (`entries` long, head hash `head`, entry 1's hash `first`, and
    `at_seen`: the hash of its entry at each remembered seq) does not extend what this machine saw."""
    now = f"seq {entries} (hash {str(head)[:12]}…)" if entries else "no entry at all"
    for memory in seen:
        forget = (f"if {env.name} was re-created on purpose, remove {memory.path} (this machine's memory of it); "
                  "otherwise restore the log from a backup (rollback still works)")
        if entries and first != memory.first:
            return 1, (f"this machine has seen {env.name}'s log at {memory.head()}, starting with entry 1 "
                       f"{memory.first[:12]}…; its entry 1 is now {str(first)[:12]}… (head {now}): the log was "
                       f"replaced by another chain; {forget}")
        if entries < memory.seq:
            return entries + 1, (f"this machine has seen {env.name}'s log at {memory.head()}, but it now ends at "
                                 f"{now}: it was truncated or rewound (entries {entries + 1}..{memory.seq} are gone), though "
                                 f"every remaining entry verifies; {forget}")
        if at_seen.get(memory.seq) != memory.hash:
            return 1, (f"this machine has seen {env.name}'s log at {memory.head()}, but its entry {memory.seq} now "
                       f"has hash {str(at_seen.get(memory.seq))[:12]}… (head {now}): the log was rewritten; {forget}")
    return None


def record(env: Any, seq: int, digest: str, first: str) -> None:
    """Remember head (seq, digest) of a log found sound whose entry 1 is `first` (best effort, never back)."""
    folder = directory()
    if folder is None or seq < 1:
        return
    try:
        lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for key in keys(env):
            path = _file(folder, key)
            doc = _read(path)
            if doc is not None and doc.get("first") == first and type(doc.get("seq")) is int and doc["seq"] >= seq:
                continue  # already as far, or further (a slower reader never moves it back)
            write_private_json(path, {"key": key, "env": env.name, "seq": seq, "hash": digest, "first": first},
                               durable=True)
    except OSError:
        pass  # nothing remembered this time: the next sound read tries again
    finally:
        os.close(lock)


class Observer:
    """A per-entry check for the verify pass that also notes what the memory needs: the hash of entry 1
    and of each remembered seq (the log is read once, whatever is checked)."""

    def __init__(self, check: Any, seen: list[Seen]) -> None:
        self._check = check
        self._wanted = {m.seq for m in seen}
        self.first: str | None = None
        self.at_seen: dict[int, str] = {}
        self.last: tuple[int, str] | None = None

    def __call__(self, entry: dict[str, Any]) -> str | None:
        found = self._check(entry) if self._check is not None else None
        if found is None:
            seq, digest = entry.get("seq"), str(entry.get("hash"))
            if seq == 1:
                self.first = digest
            if seq in self._wanted:
                self.at_seen[seq] = digest
            if type(seq) is int:
                self.last = (seq, digest)
        return found
