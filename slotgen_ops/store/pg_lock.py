"""The writer's lock of one environment kept in PostgreSQL.

`PgLock` keeps `EnvLock`'s contract: the writer's mutual exclusion is a
transaction holding the environment's advisory transaction lock. It waits at
most `timeout` (`lock_timeout`), says at once who holds it, is re-entrant, and
is released by the server when the transaction ends, the connection drops or
the client dies. The transaction is the critical section: its COMMIT is the
commit point, and what must wait for it runs after (`after_commit`). Readers
take no lock (`shared`): one REPEATABLE READ snapshot never shows half a
commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PgLock"]


def _lock_key(env: str) -> str:
    return f"slotgen-env:{env}"


class PgLock:
    """`EnvLock`'s contract on PostgreSQL: exclusive (a transaction holding the advisory lock), re-entrant."""

    def __init__(self, store: Any) -> None:  # the `pg_env.PgEnvironmentStore` it is part of (it imports this module)
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
