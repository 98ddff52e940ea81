"""The audit log of one environment kept in PostgreSQL, and what a reader may take from its rows.

`PgLog` keeps `AuditLog`'s contract on rows of `slotgen_log`: each row is
the entry's canonical line exactly as the file backend stores it, `append` is
compare-and-append in the writer's transaction, and reading streams the rows
to the same verification as the file backend. A row is not an authority
(SPEC section 14): it is an entry only once parsed (`_entry`; `InvalidLogRow`
otherwise), and what is not a verified log head a host may render is
`NotAuthoritative`. `_Followed` is the log as far as this process verified
it, so that a long-running reader checks only the rows that extend it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from ..audit.canonical import _dumps
from ..audit.append import complete, extends
from ..audit.review import VerifyReport, verify_lines
from ..errors import IntegrityFailure

__all__ = ["InvalidLogRow", "NotAuthoritative", "PgLog"]


class NotAuthoritative(IntegrityFailure):
    """What the database holds is not a verified log head that a host may render (exit 4; `render` engages
    the kill-switch in its file, fail closed). A database that cannot be reached is not this."""


class InvalidLogRow(NotAuthoritative):
    """A log row that is not a valid entry (junk, or a line that is not the row's seq and hash)."""


def _entry(where: str, seq: Any, digest: Any, line: Any) -> dict[str, Any]:
    """The entry a log row holds; InvalidLogRow naming its seq if it is not one."""
    try:
        entry = json.loads(bytes(line))
    except (ValueError, RecursionError):
        entry = None
    if not isinstance(entry, dict):
        why = "it is not a JSON object"
    elif entry.get("seq") != seq or entry.get("hash") != digest:
        why = "its line is not the entry its seq and hash columns name"
    else:
        return entry
    raise InvalidLogRow(f"{where}: log row seq {seq} is not a valid audit entry ({why}); every reader refuses the "
                        "log until the database's owner removes that row (the log is append-only to everyone else; "
                        "rollback still works)", first_bad=int(seq) if isinstance(seq, int) else None)


class PgLog:
    """`AuditLog`'s contract on PostgreSQL (the parts the write protocol and the review use)."""

    def __init__(self, store: Any) -> None:  # the `pg_env.PgEnvironmentStore` it is part of (it imports this module)
        self._store = store
        self.lock = store.lock

    @property
    def path(self) -> str:  # for messages only
        return self._store.describe()

    def locked(self):
        return self.lock.exclusive()

    def reading(self):
        return self._store.reading()

    def _head_row(self, conn: Any) -> dict[str, Any] | None:
        row = conn.execute("SELECT seq, hash, line FROM slotgen_log WHERE env = %s ORDER BY seq DESC LIMIT 1",
                           (self._store.env,)).fetchone()
        return _entry(self.path, *row) if row else None

    def head(self) -> dict[str, Any] | None:
        with self.reading() as conn:
            return self._head_row(conn)

    def exists(self) -> bool:
        return self.head() is not None

    def cache_key(self) -> str:
        return f"{self._store.describe()}"

    def identity(self) -> list[Any] | None:
        """The head (seq, hash): rows are only ever appended (the database refuses anything else to all but
        a superuser), so a log whose head is unchanged is the log that was checked."""
        head = self.head()
        return [int(head["seq"]), str(head["hash"])] if head else None

    def recent(self, count: int) -> list[dict[str, Any]]:
        with self.reading() as conn:
            rows = conn.execute("SELECT seq, hash, line FROM slotgen_log WHERE env = %s ORDER BY seq DESC LIMIT %s",
                                (self._store.env, count)).fetchall()
        return [_entry(self.path, *row) for row in reversed(rows)]

    def count(self) -> int:
        head = self.head()
        return int(head["seq"]) if head else 0

    def append(self, fields: dict[str, Any], after: tuple[int, str] | None = None,
               seal: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None) -> dict[str, Any]:
        """Compare-and-append one entry in the writer's transaction (it commits with the critical section)."""
        if not self.lock.held:
            raise RuntimeError("PgLog.append() called without holding the environment's lock")
        conn = self._store.conn
        prev = self._head_row(conn)
        extends(prev, after, self.path)
        entry = complete(fields, prev)
        entry["signature"] = seal(entry) if seal is not None else None
        conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES (%s, %s, %s, %s)",
                     (self._store.env, entry["seq"], entry["hash"], _dumps(entry)))
        return entry

    def _rows(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, str, bytes]]:
        """Every row (seq, hash, line) with after < seq <= upto, in order, streamed (a server-side cursor)."""
        with self.reading() as conn:
            with conn.cursor(name=f"slotgen_lines_{self._store.env}") as cur:
                cur.itersize = 2000
                cur.execute("SELECT seq, hash, line FROM slotgen_log WHERE env = %s AND seq > %s "
                            "AND (%s::bigint IS NULL OR seq <= %s::bigint) ORDER BY seq",
                            (self._store.env, after, upto, upto))
                for seq, digest, line in cur:
                    yield seq, digest, bytes(line)

    def lines(self) -> Iterator[bytes]:
        """Every entry's canonical line with its newline, in order (the verification judges each one)."""
        for _, _, line in self._rows():
            yield line + b"\n"

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry, in order; InvalidLogRow at the first row that is not one."""
        for row in self._rows():
            yield _entry(self.path, *row)

    def export_jsonl(self, out: Any, entries: Any = None) -> int:
        from ..audit.review import export_jsonl

        return export_jsonl(self.entries() if entries is None else entries, out)

    def export_csv(self, out: Any, entries: Any = None) -> int:
        from ..audit.review import export_csv

        return export_csv(self.entries() if entries is None else entries, out)

    def verify(self, anchor: tuple[int, str] | None = None, env: str | None = None,
               check: Callable[[dict[str, Any]], str | None] | None = None) -> VerifyReport:
        """The same verification as the file backend, over the same lines."""
        return verify_lines(self.lines(), anchor=anchor, env=env, check=check)


class _Followed:
    """The log as far as this process verified it: its head, and (once it is followed) the replay checker
    primed over every entry up to that head."""

    def __init__(self, head: dict[str, Any]) -> None:
        self.seq, self.hash, self.head = int(head["seq"]), str(head["hash"]), head
        self._check: Callable[[dict[str, Any]], str | None] | None = None

    def extend(self, store: Any, rows: list[tuple[int, str, bytes]], seq: int, digest: str) -> bool:
        """Verify `rows`, those after this head up to (seq, digest), and move to it; False if they do not
        simply continue it (the caller then checks the whole log, which says what is wrong)."""
        from ..audit.canonical import parse_entry
        from ..changes.chain import replay_checker

        if self._check is None:  # once: the checker's state at this head (the log up to it verified already)
            check = replay_checker()
            for row in store.log._rows(upto=self.seq):
                if check(_entry(store.log.path, *row)) is not None:
                    return False
            self._check = check
        prev = self.head
        for row_seq, row_hash, line in rows:
            try:
                entry, recomputed = parse_entry(line)
            except ValueError:
                return False
            if not (entry.get("seq") == row_seq == prev["seq"] + 1 and entry.get("hash") == row_hash == recomputed
                    and entry.get("prevHash") == prev["hash"] and entry.get("env") == store.env):
                return False
            if self._check(entry) is not None:
                self._check = None  # its state is past a bad entry now: prime again if ever needed
                return False
            prev = entry
        if (prev["seq"], prev["hash"]) != (seq, digest):
            return False
        self.seq, self.hash, self.head = seq, digest, prev
        return True
