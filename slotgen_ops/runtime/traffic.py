"""A rehearsal runtime host: real jobs through the real engine, executor and JSON-lines sink (SPEC section 12).

It reads its controls as a runtime host does, from an env-file (the
environment's controls file, or the one `slotgen render` writes), and looks
at the file at least every `REREAD_S`: a change is in force for the next job
within a second. `stale=True` makes a host that never looks again, as one
that missed a restart would. A file it cannot read, or one outside the byte
grammar of a controls file, fails closed as a runtime would: no controls at
all, so the feature flag reads as off and every job takes the STUB path
(deny by default, SPEC section 1).

It never writes the environment: only `<telemetry dir>/<host>.jsonl`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..contract import Controls
from ..files import envgrammar
from ..files.atomic import UnsafeFile, identity, read_bounded
from .allowlist_file import load_allowlist
from .executor import Runtime
from .telemetry import JsonlTelemetrySink

__all__ = ["REREAD_S", "TrafficHost"]

REREAD_S = 0.5


def read_env_file(path: Path) -> dict[str, str | None]:
    """The controls in `path` as a runtime reads them; {} (fail closed) when it cannot be read or parsed."""
    try:
        return dict(envgrammar.parse(read_bounded(path, envgrammar.MAX_BYTES)).values)
    except (OSError, UnsafeFile, envgrammar.GrammarError):
        return {}


class TrafficHost:
    """One host: `run` executes jobs at `rate` per second and appends one event per job to its file."""

    def __init__(self, *, env: str, host: str, controls_path: Path, telemetry_dir: Path, jobs: list[dict[str, Any]],
                 executor_config: Any, allowlist_base: Path, rate: float = 20.0, stale: bool = False,
                 fresh_ids: bool = True) -> None:
        if not jobs:
            raise ValueError("no jobs to run")
        self.env, self.host, self.rate, self.stale = env, host, rate, stale
        self.controls_path, self.allowlist_base = Path(controls_path), Path(allowlist_base)
        self.jobs, self.fresh_ids = jobs, fresh_ids
        self.sink = JsonlTelemetrySink(Path(telemetry_dir) / f"{host}.jsonl")
        self.runtime = Runtime(Controls.from_mapping({}), load_allowlist(None), executor_config, self.sink, env)
        self.seen: list[int] | None = None
        self.rereads = 0
        self.counts = {"jobs": 0, "openai": 0, "failed": 0}
        self._looked = float("-inf")
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (self.stale or now - self._looked < REREAD_S):
            return
        self._looked = now
        seen = identity(self.controls_path)
        if not force and seen == self.seen:
            return
        self.seen = seen
        controls = Controls.from_mapping(read_env_file(self.controls_path))
        self.runtime.controls = controls
        self.runtime.allowlist = load_allowlist(controls.allowlist_path, base=self.allowlist_base)
        if not force:
            self.rereads += 1

    def _job(self, n: int) -> dict[str, Any]:
        job = dict(self.jobs[n % len(self.jobs)])
        if self.fresh_ids:
            job["jobId"] = f"{self.host}-{uuid.uuid4().hex[:16]}"
        return job

    def run(self, duration: float | None = None, stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
        """Run until `duration` seconds have passed (None: until `stop()`); the counts of what was done."""
        start = time.monotonic()
        interval = 1.0 / self.rate
        n = 0
        try:
            while not stop() and (duration is None or time.monotonic() - start < duration):
                self._refresh()
                execution = self.runtime.execute(self._job(n))
                status = execution.status
                self.counts["jobs"] += 1
                self.counts["openai"] += status["path"] == "openai"
                self.counts["failed"] += status["outcome"] == "FAILED"
                n += 1
                delay = start + n * interval - time.monotonic()
                while delay > 0 and not stop():
                    time.sleep(min(delay, 0.1))
                    self._refresh()
                    delay = start + n * interval - time.monotonic()
        finally:
            self.sink.close()
        return dict(self.counts, rereads=self.rereads)
