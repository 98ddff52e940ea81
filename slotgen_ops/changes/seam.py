"""The store's seam: what the write protocol needs of wherever an environment is kept.

`changes/` defines it and `store/` implements it twice (`store.files`, the
embedded default; `store.pg_env`, a team's PostgreSQL database). The
composition root (`slotgen_ops.workspace`) picks one per environment from
slotgen.yaml's `state:`, so nothing here or below imports a store.

An environment is a lock, a log and its controls. The contracts every
implementation keeps (the README argues why they make a change safe):
- `lock.exclusive()` is held by one writer of the environment at a time, on
  every host; a rollback never needs it;
- `log.append(fields, after=(seq, hash))` appends only onto that head
  (compare-and-append) and is durable when it returns: that is a change's
  commit point;
- `controls.write(values, seq, digest, expected=...)` replaces the controls
  only if they are still what the writer judged against; `controls.engage()`
  engages the kill-switch with no lock at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["EnvironmentStore", "StoreControls", "StoreLock", "StoreLog"]


class StoreLock(Protocol):
    def exclusive(self, timeout: float | None = None, what: str = "this change") -> AbstractContextManager[None]: ...

    def shared(self, timeout: float = 2.0) -> AbstractContextManager[None]: ...

    def holder(self) -> str: ...


class StoreLog(Protocol):
    def head(self) -> dict[str, Any] | None: ...

    def exists(self) -> bool: ...

    def append(self, fields: dict[str, Any], after: tuple[int, str] | None = None) -> dict[str, Any]: ...

    def entries(self) -> Iterator[dict[str, Any]]: ...

    def lines(self) -> Iterator[bytes]: ...

    def identity(self) -> list[Any] | None: ...

    def cache_key(self) -> str: ...

    def verify(self, anchor: tuple[int, str] | None = None, env: str | None = None) -> Any: ...


class StoreControls(Protocol):
    def describe(self) -> str: ...

    def exists(self) -> bool: ...

    def read(self) -> Any: ...

    def lenient(self) -> Any: ...

    def write(self, values: dict[str, str | None], seq: int, digest: str, **fence: Any) -> Any: ...

    def engage(self) -> tuple[dict[str, str | None], str, str | None]: ...


class EnvironmentStore(Protocol):
    """One environment where it is kept: `backend` is "files" or "postgresql"."""

    backend: str
    lock: StoreLock
    log: StoreLog
    controls: StoreControls

    def describe(self) -> str: ...

    def turn(self, timeout: float | None, what: str) -> AbstractContextManager[bool]:
        """Writers take turns at signing (fairness only)."""
        ...

    def memory_key(self) -> str | None:
        """Besides the workspace, what this machine's memory of log heads is also kept under (None: nothing)."""
        ...
