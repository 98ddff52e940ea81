"""Telemetry: one `slotgen.execution` event per execution (schemas/telemetry-event.schema.json).

The event is built in one place, `telemetry_event`, so every sink emits the
same document; sinks only decide where it goes.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..contract import GATES, Decision
from ..clock import now_utc, utc_millis

EVENT_NAME = "slotgen.execution"
EVENT_SCHEMA_VERSION = 1


@runtime_checkable
class TelemetrySink(Protocol):
    """Where telemetry events go. `emit` receives one schema-valid event dict."""

    def emit(self, event: dict[str, Any]) -> None: ...


class MemoryTelemetrySink:
    """Keeps events in a list (verification, tests)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class JsonlTelemetrySink:
    """Appends one JSON line per event to a file.

    Each line goes out in a single unbuffered write on an O_APPEND descriptor,
    so lines from concurrent writers never interleave and a line is on disk as
    soon as `emit` returns.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: Any = None

    def emit(self, event: dict[str, Any]) -> None:
        from ..inert import inert_json

        # Inert (SPEC section 14): a job's text carrying C1 controls or bidi overrides is written as \u escapes,
        # the same values for any JSON reader, nothing that steers a terminal or an editor showing the file.
        line = inert_json(json.dumps(event, ensure_ascii=False, separators=(",", ":")), passwords=True) + "\n"
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._open(), "ab", buffering=0)  # noqa: SIM115 - kept open across emits
        self._file.write(line.encode("utf-8"))
        self._file.flush()

    def _open(self) -> int:
        """An O_APPEND descriptor on a regular file: opened non-blocking and never through a symlink, so a FIFO
        or a device put at the telemetry file's name is an OSError naming it, not a verification that hangs."""
        import stat

        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{self.path} is not a regular file: no telemetry written there")
        return fd

    def close(self) -> None:
        """Close the file; a later `emit` reopens it."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlTelemetrySink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339 in UTC with a Z suffix and milliseconds: `2025-01-31T09:00:00.123Z`."""
    return utc_millis(now or now_utc())


def telemetry_event(decision: Decision, status: dict[str, Any], env: str | None, ts: str) -> dict[str, Any]:
    """The telemetry event of one execution: the decision's context plus the executor status."""
    controls = decision.controls
    return {
        "event": EVENT_NAME,
        "schemaVersion": EVENT_SCHEMA_VERSION,
        "ts": ts,
        "jobId": status["jobId"],
        "path": status["path"],
        "outcome": status["outcome"],
        "code": status["code"],
        "bucket": status["bucket"],
        "decidedBy": GATES[decision.decided_by] if decision.decided_by < len(GATES) else None,
        "allowlistVersion": decision.allowlist.version,
        "rolloutPercent": controls.rollout,
        "killSwitch": controls.kill_engaged,
        "featureFlag": controls.feature_on,
        "latencyMs": status["latencyMs"],
        "attempts": status["attempts"],
        "model": status["model"],
        "env": env,
    }
