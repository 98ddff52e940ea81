"""One environment kept in PostgreSQL: its lock, its log and its controls (SPEC section 10).

The same three parts as the file backend, with the same contracts, so that
the write protocol (`changes.environment`) does not need to know which it runs on:

- `PgLock` (`store.pg_lock`): the writer's mutual exclusion is a transaction holding the
  environment's advisory transaction lock; it waits at most `timeout`
  (`lock_timeout`), says at once who holds it, and is released by the server
  when the transaction ends, the connection drops or the client dies. No lock
  is ever held across anything but the database round trips of a critical
  section: verification and signing happen before it.
- `PgLog` (`store.pg_log`): the audit log as rows of `slotgen_log`, each row the entry's
  canonical line exactly as the file backend stores it (so the chain,
  signatures, Merkle leaves and `audit verify` are the same code and give the
  same answers). `append` is compare-and-append under the lock, and the
  database refuses to update or delete a row.
- `PgControls`: the environment's row in `slotgen_environments` (the head the
  controls reflect, and the controls), written in the same transaction as the
  log row, so log and controls commit together or not at all.

The commit point is the transaction's COMMIT at the end of the critical
section; a crash or a dropped connection before it leaves nothing.

This module is the store itself (`PgEnvironmentStore`: the connection the
three share, its read snapshots, the writers' turns at signing, and what a
host may render) and the controls row (`PgControls`).

A row is not an authority (SPEC section 14). Every log row is parsed as an
entry before anything uses it, and one that is not (junk a writer role
appended, a row whose columns are not its line's) is an integrity failure
naming its seq (`InvalidLogRow`), never a JSON error. The controls row is
held to the controls byte grammar (`files.envgrammar`) when read, and what a
host renders is the verified log head's controls, with the row only allowed
to add the kill-switch engaged ahead of a rollback's record
(`PgEnvironmentStore.authority`); the database itself refuses a row that no
log entry leads to (`store.postgres`, migration 2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import IntegrityFailure
from ..changes.controls_file import ControlsChanged, ControlsFile, render_controls
from .pg_lock import PgLock
from .pg_log import NotAuthoritative, PgLog, _Followed

__all__ = ["PgControls", "PgEnvironmentStore"]


def _grammar_problem(values: Any) -> str | None:
    """Why `values` (a controls row, or an entry's state.controls) cannot be rendered; None if they can."""
    from ..files.envgrammar import value_problem
    from ..runbook.state import CONTROL_ORDER

    if not isinstance(values, dict):
        return f"the controls are {type(values).__name__}, not a mapping"
    for name in values:
        if name not in CONTROL_ORDER:
            return f"{str(name)[:40]!r} is not a runtime control"
    for name in CONTROL_ORDER:
        if name not in values:
            return f"{name} is missing"
        problem = value_problem(values[name])
        if problem is not None:
            return f"{name}: {problem}"
    return None


class PgEnvironmentStore:
    """One connection, shared by the lock, the log and the controls of one environment."""

    backend = "postgresql"

    def __init__(self, url: str, env: str) -> None:
        self.url = url
        self.env = env
        self._conn: Any = None
        self._reading = 0
        self._followed: _Followed | None = None  # the log as far as this process verified it (render --watch)
        self.lock = PgLock(self)
        self.log = PgLog(self)
        self.controls = PgControls(self)

    @property
    def conn(self) -> Any:
        if self._conn is None or self._conn.closed:
            from .postgres import connect

            self._conn = connect(self.url)
        return self._conn

    def describe(self) -> str:
        from .postgres import describe_url

        return f"{describe_url(self.url)} environment {self.env}"

    def memory_key(self) -> str:
        from .postgres import describe_url

        return f"postgresql:{describe_url(self.url)}"

    def use(self, conn: Any) -> None:
        """Read and write through `conn` (a watcher's listening connection), or open one when needed (None)."""
        self._conn = conn

    def side_connection(self) -> Any:
        """A second, autocommit connection (to look at who holds the lock while this one waits)."""
        from .postgres import connect

        return connect(self.url, autocommit=True)

    @contextmanager
    def turn(self, timeout: float | None, what: str) -> Iterator[bool]:
        """Writers of this environment, on every host, take turns at signing: a session advisory lock on a
        connection of its own (fairness only: every append is still compare-and-append under the lock)."""
        import psycopg

        from ..files.locking import _notice

        try:
            conn = self.side_connection()
        except Exception:  # noqa: BLE001 - no turn: only more retries
            yield False
            return
        key = f"slotgen-turn:{self.env}"
        with conn:
            taken = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]
            if not taken:
                if _notice is not None:
                    _notice(f"waiting for another writer of {self.env} to finish signing ({what})")
                conn.execute(f"SET lock_timeout = {int((timeout or 0) * 1000)}")
                try:
                    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
                    taken = True
                except psycopg.errors.LockNotAvailable:
                    taken = False
            yield bool(taken)  # closing the connection ends the turn

    def authority(self, env: Any) -> tuple[dict[str, str | None], dict[str, Any], bool]:
        """What a host renders: (controls, head entry, engaged ahead of the log) of the verified log head.

        One snapshot reads the log's head and the controls row; then the log up to that head is verified
        (`_verify_to`). The head's `state.controls` are rendered, held to the byte grammar. The row must say the same
        head and the same controls, or the same with SLOTGEN_AI_KILL=true: a rollback engages the row
        first and records itself after, and that is rendered at once. Anything else is NotAuthoritative.
        A database that cannot be reached raises its own error (IntegrityFailure, psycopg's), not that.
        """
        from ..runbook.state import differences

        with self.reading() as conn:  # the connection is up past this point: what fails next is a verdict
            head = self.log._head_row(conn)
            row = conn.execute("SELECT head_seq, head_hash, controls FROM slotgen_environments WHERE name = %s",
                               (self.env,)).fetchone()
        where = self.describe()
        if head is None:
            raise NotAuthoritative(f"{where}: the audit log is empty or missing; nothing to render")
        seq, digest = int(head["seq"]), str(head["hash"])
        self._verify_to(env, head)
        state = head.get("state")
        controls = state.get("controls") if isinstance(state, dict) else None
        problem = _grammar_problem(controls)
        if problem is not None:
            raise NotAuthoritative(f"{where}: the log's head (seq {seq}) holds controls outside the controls "
                                   f"grammar: {problem}")
        assert isinstance(controls, dict)
        if row is None:
            raise NotAuthoritative(f"{where}: no controls row for an environment whose log is at seq {seq}")
        found = row[2]
        if (int(row[0]), str(row[1])) != (seq, digest):
            raise NotAuthoritative(f"{where}: the controls row names seq {row[0]} but the verified log's head is "
                                   f"seq {seq}: the row was changed outside slotgen")
        if found == controls:
            return dict(controls), head, False
        from ..contract import KILL_VAR

        if found == {**controls, KILL_VAR: "true"}:
            return {**controls, KILL_VAR: "true"}, head, True
        said = differences(found, controls) if isinstance(found, dict) else f"the row holds {type(found).__name__}"
        raise NotAuthoritative(f"{where}: the controls row disagrees with the verified log's head (seq {seq}): "
                               f"{said[:300]}; the row was changed outside slotgen")

    def _verify_to(self, env: Any, head: dict[str, Any]) -> None:
        """NotAuthoritative unless the log up to `head` verifies: the hash chain, every signature by an operator
        of the roster in force, and every recorded state replaying (`changes.chain`).

        The first time, and whenever the log does not simply extend what this process verified, the whole
        log is checked by `changes.chain.require_sound` (with the verified-log cache and this machine's memory of
        the heads it has seen). A long-running reader (`render --watch`) then follows the log: each new row
        is parsed, linked to the one before it (seq, prevHash, its own hash, the environment) and fed to the
        same replay checker (`chain.replay_checker`), primed once over the log it already verified. So a
        change costs its own entries, not the whole log, and a log that this process saw at seq N and that
        no longer extends it (rows removed or rewritten) is an integrity failure naming both heads.
        """
        from ..changes.chain import require_sound

        seq, digest = int(head["seq"]), str(head["hash"])
        seen = self._followed
        if seen is not None:
            if (seen.seq, seen.hash) == (seq, digest):
                return
            rows = self._rows_from(seen.seq, seq) if seq > seen.seq else []
            if not rows or (rows[0][0], rows[0][1]) != (seen.seq, seen.hash):
                raise NotAuthoritative(f"{self.describe()}: this process verified the log up to seq {seen.seq} "
                                       f"(hash {seen.hash[:12]}…) but it now ends at seq {seq} (hash "
                                       f"{digest[:12]}…) and does not extend it: rows were removed or rewritten")
            if seen.extend(self, rows[1:], seq, digest):
                return
        from .postgres import DatabaseUnavailable

        try:
            checked = require_sound(env)  # the `changes.environment.Environment` this store is behind
        except NotAuthoritative:
            self._followed = None
            raise
        except DatabaseUnavailable:  # the connection, not a verdict on the log: the host's file stays as it is
            raise
        except IntegrityFailure as exc:
            self._followed = None
            raise NotAuthoritative(exc.message, first_bad=exc.first_bad) from None
        if checked is None or int(checked[0]) < seq:
            raise NotAuthoritative(f"{self.describe()}: the log's head seq {seq} was not verified (the log was "
                                   f"found at {checked[0] if checked else 'no'} entries): rows were removed?")
        self._followed = _Followed(head)

    def _rows_from(self, first: int, last: int) -> list[tuple[int, str, bytes]]:
        """The rows (seq, hash, line) with first <= seq <= last, in order, in one read."""
        with self.reading() as conn:
            rows = conn.execute("SELECT seq, hash, line FROM slotgen_log WHERE env = %s AND seq >= %s AND seq <= %s "
                                "ORDER BY seq", (self.env, first, last)).fetchall()
        return [(int(seq), str(digest), bytes(line)) for seq, digest, line in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """A consistent read: one REPEATABLE READ snapshot for everything read inside (or the writer's own)."""
        if self.lock.held or self._reading:
            yield self.conn
            return
        conn = self.conn
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._reading += 1
            try:
                yield conn
            finally:
                self._reading -= 1


class PgControls:
    """The environment's row: the head its controls reflect, and the controls."""

    folder = None  # nothing on disk to tidy

    def __init__(self, store: PgEnvironmentStore) -> None:
        self._store = store

    def describe(self) -> str:
        return self._store.describe()

    def exists(self) -> bool:
        with self._store.reading() as conn:
            return conn.execute("SELECT 1 FROM slotgen_environments WHERE name = %s",
                                (self._store.env,)).fetchone() is not None

    def lenient(self) -> ControlsFile:
        """As found; every control safe (kill-switch engaged) when the row cannot be read."""
        from ..changes.controls_file import NO_HEAD
        from ..runbook.state import SAFE_CONTROLS

        try:
            return self.read()
        except Exception:  # noqa: BLE001 - an unreachable database or a missing row: fail closed
            return ControlsFile(values=dict(SAFE_CONTROLS), head_seq=NO_HEAD[0], head_hash=NO_HEAD[1])

    def engage(self) -> tuple[dict[str, str | None], str, str | None]:
        """The rollback's first act: SLOTGEN_AI_KILL=true in the row, outside the log and any writer's lock
        (waiting at most a second for a writer's uncommitted row); the next writer records it."""
        from ..changes.controls_file import KillSwitchNotEngaged

        try:
            with self._store.side_connection() as conn, conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '1s'")
                before = conn.execute("SELECT controls->>'SLOTGEN_AI_KILL' FROM slotgen_environments "
                                      "WHERE name = %s FOR UPDATE", (self._store.env,)).fetchone()
                row = conn.execute(
                    "UPDATE slotgen_environments SET controls = jsonb_set(controls, '{SLOTGEN_AI_KILL}', '\"true\"'), "
                    "changed_at = clock_timestamp() WHERE name = %s RETURNING controls",
                    (self._store.env,)).fetchone()
                row = None if row is None else (row[0], before[0] if before else None)
        except Exception as exc:  # noqa: BLE001 - every way of failing is one line for the operator
            from .postgres import _one_line

            raise KillSwitchNotEngaged(f"{self._store.describe()}: {_one_line(exc, self._store.url)[:200]}") from None
        if row is None:
            raise KillSwitchNotEngaged(f"{self._store.describe()}: no such environment in the state database")
        return dict(row[0]), "database", row[1]

    def read(self) -> ControlsFile:
        with self._store.reading() as conn:
            row = conn.execute("SELECT head_seq, head_hash, controls FROM slotgen_environments WHERE name = %s",
                               (self._store.env,)).fetchone()
        if row is None:
            raise IntegrityFailure(f"{self._store.describe()}: no such environment in the state database")
        problem = _grammar_problem(row[2])
        if problem is not None:  # held to the controls grammar before a byte of it is rendered anywhere
            raise IntegrityFailure(f"{self._store.describe()}: the controls row is not controls slotgen wrote "
                                   f"({problem}); changes are refused ('slotgen rollback' still works)")
        values = dict(row[2])
        return ControlsFile(values=values, head_seq=int(row[0]), head_hash=str(row[1]),
                            raw=render_controls(self._store.env, values, int(row[0]), str(row[1])))

    def write(self, values: dict[str, str | None], seq: int, digest: str, *,
              expect: ControlsFile | None) -> ControlsFile:
        """Set the controls for the entry (seq, digest) in the writer's transaction, if the row still holds
        what the writer judged against (`expect`; None: the environment is new). ControlsChanged otherwise."""
        if not self._store.lock.held:
            raise RuntimeError("PgControls.write() called without holding the environment's lock")
        conn = self._store.conn
        if expect is None:
            done = conn.execute("INSERT INTO slotgen_environments (name, head_seq, head_hash, controls) "
                                "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                                (self._store.env, seq, digest, json.dumps(values)))
        else:
            # Fenced on the whole row: a rollback that engaged the kill-switch meanwhile changed the controls.
            done = conn.execute("UPDATE slotgen_environments SET head_seq = %s, head_hash = %s, controls = %s, "
                                "changed_at = clock_timestamp() WHERE name = %s AND head_seq = %s AND head_hash = %s "
                                "AND controls = %s::jsonb",
                                (seq, digest, json.dumps(values), self._store.env, expect.head_seq, expect.head_hash,
                                 json.dumps(expect.values)))
        if done.rowcount != 1:
            raise ControlsChanged(f"{self._store.describe()}: the controls are not what this writer judged against")
        back = self.read()
        if back.values != values or back.head_seq != seq or back.head_hash != digest:
            raise IntegrityFailure(f"{self._store.describe()}: read-back differs from what was written")
        return back
