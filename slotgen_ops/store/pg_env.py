"""One environment kept in PostgreSQL: its lock, its log and its controls (SPEC section 10).

The same three parts as the file backend, with the same contracts, so that
the write protocol (`changes.environment`) does not need to know which it runs on:

- `PgLock`: the writer's mutual exclusion is a transaction holding the
  environment's advisory transaction lock; it waits at most `timeout`
  (`lock_timeout`), says at once who holds it, and is released by the server
  when the transaction ends, the connection drops or the client dies. No lock
  is ever held across anything but the database round trips of a critical
  section: verification and signing happen before it.
- `PgLog`: the audit log as rows of `slotgen_log`, each row the entry's
  canonical line exactly as the file backend stores it (so the chain,
  signatures, Merkle leaves and `audit verify` are the same code and give the
  same answers). `append` is compare-and-append under the lock, and the
  database refuses to update or delete a row.
- `PgControls`: the environment's row in `slotgen_environments` (the head the
  controls reflect, and the controls), written in the same transaction as the
  log row, so log and controls commit together or not at all.

The commit point is the transaction's COMMIT at the end of the critical
section; a crash or a dropped connection before it leaves nothing.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..audit.canonical import _dumps
from ..audit.append import complete, extends
from ..audit.review import VerifyReport, verify_lines
from ..errors import IntegrityFailure
from ..changes.controls_file import ControlsChanged, ControlsFile, render_controls

__all__ = ["InvalidLogRow", "NotAuthoritative", "PgControls", "PgEnvironmentStore", "PgLock", "PgLog"]


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


class _Followed:
    """The log as far as this process verified it: its head, and (once it is followed) the replay checker
    primed over every entry up to that head."""

    def __init__(self, head: dict[str, Any]) -> None:
        self.seq, self.hash, self.head = int(head["seq"]), str(head["hash"]), head
        self._check: Callable[[dict[str, Any]], str | None] | None = None

    def extend(self, store: PgEnvironmentStore, rows: list[tuple[int, str, bytes]], seq: int, digest: str) -> bool:
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


def _lock_key(env: str) -> str:
    return f"slotgen-env:{env}"


class PgLock:
    """`EnvLock`'s contract on PostgreSQL: exclusive (a transaction holding the advisory lock), re-entrant."""

    def __init__(self, store: PgEnvironmentStore) -> None:
        self._store = store
        self._depth = 0
        self._after: list[Callable[[], Any]] = []

    @property
    def held(self) -> bool:
        return self._depth > 0

    def after_commit(self, callback: Callable[[], Any]) -> None:
        """Run `callback` once this section's transaction has committed (at once outside a section); never if
        it rolls back. For what must not be believed before the rows are durable and visible to every reader,
        such as a machine's memory of the head it has seen: an append is not a commit until COMMIT."""
        if self._depth:
            self._after.append(callback)
        else:
            callback()

    @contextmanager
    def exclusive(self, timeout: float | None = None, what: str = "this change") -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        import psycopg

        from ..files.locking import LockBusy, _notice

        conn = self._store.conn
        key = _lock_key(self._store.env)
        pending: BaseException | None = None
        self._after = []
        with conn.transaction():
            got = conn.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]
            if not got:
                holder = self.holder()
                if _notice is not None:
                    _notice(f"waiting for the lock on {self._store.describe()} ({what}): held by {holder}")
                conn.execute(f"SET LOCAL lock_timeout = {int((timeout or 0) * 1000)}")
                try:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
                except psycopg.errors.LockNotAvailable:
                    raise LockBusy(holder) from None
                conn.execute("SET LOCAL lock_timeout = 0")
            self._depth = 1
            try:
                yield
            except BaseException as exc:
                # As with the file backend, where every append is durable at once: what the section recorded
                # before a refusal or a superseded change was raised stays recorded (the transaction commits,
                # then the exception goes on). Only a database failure ends it with nothing: the transaction
                # is gone with it.
                if type(exc).__module__.startswith("psycopg"):
                    raise
                pending = exc
            finally:
                self._depth = 0
        committed, self._after = self._after, []
        for callback in committed:
            callback()
        if pending is not None:
            raise pending

    @contextmanager
    def shared(self, timeout: float = 2.0) -> Iterator[None]:
        """Readers take no lock on PostgreSQL: one REPEATABLE READ snapshot never shows half a commit."""
        with self._store.reading():
            yield

    def holder(self) -> str:
        """Who holds the environment's lock: 'pid N (application, client), in transaction for S s'."""
        try:
            with self._store.side_connection() as conn:
                row = conn.execute(
                    "WITH k AS (SELECT hashtextextended(%s, 0) AS h) "
                    "SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local'), "
                    "extract(epoch FROM clock_timestamp() - a.xact_start)::int "
                    "FROM k, pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.classid = ((k.h >> 32) & 4294967295)::oid AND l.objid = (k.h & 4294967295)::oid "
                    "LIMIT 1", (_lock_key(self._store.env),)).fetchone()
        except Exception:  # noqa: BLE001 - who holds it is a courtesy; the wait goes on regardless
            return "another session"
        if row is None:
            return "another session"
        return f"pid {row[0]} ({row[1] or 'unknown application'} from {row[2]}), in its transaction for {row[3]} s"


class PgLog:
    """`AuditLog`'s contract on PostgreSQL (the parts the write protocol and the review use)."""

    def __init__(self, store: PgEnvironmentStore) -> None:
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
