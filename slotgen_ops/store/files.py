"""The file backend's controls, behind the same seam as PostgreSQL's (`pg_env.PgControls`).

The embedded default: each environment is `environments/<name>.env` (what the
runtime reads) beside `environments/<name>.audit.jsonl` (`audit.log.AuditLog`),
under `flock` on the directory (`files.locking.EnvLock`). This class is the
controls file seen through the seam: read it strictly or as found, write it
fenced on what the writer judged against, engage the kill-switch without any
lock. How each write is made safe is `changes.controls_file`'s (and the README's).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import IntegrityFailure
from ..changes.controls_file import (
    ControlsFile,
    engage_kill_switch,
    lenient_controls,
    parse_controls,
    render_controls,
    target_of,
    write_controls,
)

__all__ = ["FileControls", "FileEnvironmentStore"]


class FileEnvironmentStore:
    """One environment in the workspace's files: the directory's flock, the log file, the controls file."""

    backend = "files"

    def __init__(self, directory: Path, env: str) -> None:
        from ..audit.log import AuditLog
        from ..files.locking import EnvLock

        self.dir = Path(directory)
        self.env = env
        self.lock = EnvLock.for_directory(self.dir)
        self.log = AuditLog(self.dir / f"{env}.audit.jsonl", lock=self.lock)
        self.controls = FileControls(self.dir / f"{env}.env", env)

    def describe(self) -> str:
        return str(self.dir / env_files(self.env)[0])

    def memory_key(self) -> None:
        return None  # the workspace's path is the key already

    @contextmanager
    def turn(self, timeout: float | None, what: str) -> Iterator[bool]:
        """Writers of this environment take turns at signing (fairness only: `files.locking.signing_turn`)."""
        from ..files import locking

        with locking.signing_turn(self.dir / f".{self.env}.signing", timeout, what) as taken:
            yield taken


def env_files(env: str) -> tuple[str, str]:
    """The controls file and the log of an environment, in environments/."""
    return f"{env}.env", f"{env}.audit.jsonl"


class FileControls:
    def __init__(self, path: Path, env: str) -> None:
        self.path = Path(path)
        self.env = env

    def describe(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists() or self.path.is_symlink()

    @property
    def folder(self) -> Path:
        """Where the file really is (a symlinked controls file is written through)."""
        return target_of(self.path).parent

    def read(self) -> ControlsFile:
        """Strictly: anything unexpected is an IntegrityFailure."""
        return parse_controls(self.path)

    def lenient(self) -> ControlsFile:
        """As found, whatever state the file is in (safe defaults for what cannot be read)."""
        return lenient_controls(self.path)

    def write(self, values: dict[str, str | None], seq: int, digest: str, *,
              expect: ControlsFile | None) -> ControlsFile:
        """The controls for entry (seq, digest), if the file still holds what the writer judged against
        (`expect`; None: it must not exist yet). ControlsChanged otherwise; the file as read back."""
        write_controls(self.path, render_controls(self.env, values, seq, digest),
                       expect=expect.raw if expect is not None else None)
        back = parse_controls(self.path)
        if back.values != values or back.head_seq != seq:
            raise IntegrityFailure(f"{self.path}: read-back differs from what was written")
        return back

    def engage(self) -> tuple[dict[str, str | None], str, str | None]:
        """The rollback's lock-free write of the kill-switch (KillSwitchNotEngaged if it cannot be written)."""
        return engage_kill_switch(self.path, self.env)
