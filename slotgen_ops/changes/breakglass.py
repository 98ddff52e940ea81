"""The break-glass journal: what a rollback could not record in the audit log.

A rollback engages the kill-switch first and records after (SPEC section 6).
When the audit log cannot take its entry (lock held by a stopped process, a
broken or missing log, a full disk, a read-only directory, a workspace whose
configuration cannot be read), the act goes to `<env>.breakglass.jsonl` beside
the log: a hash chain of its own, locked on the journal file itself and never
on the environments directory. If that directory cannot be written either,
the journal goes to the operator's state directory
(`$XDG_STATE_HOME/slotgen/<workspace digest>/`, else `/tmp/slotgen-<uid>/...`).

`status`, `audit show` and `audit verify` include every journal; the next
writer (or `audit repair`) folds each entry into the chain as a rollback entry
that names it (`details.breakGlassHash`), which is how an entry is known to be
folded. Folding only ever engages the kill-switch.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import IntegrityFailure
from ..audit.log import AuditLog
from ..clock import parse_utc_or_none
from ..files.locking import FileLock
from ..runbook.state import ROLLBACK


_UNDATED = datetime.min.replace(tzinfo=timezone.utc)  # an entry whose time cannot be read sorts first


def journal_name(env_name: str) -> str:
    return f"{env_name}.breakglass.jsonl"


def _fallback_dirs(workspace_root: Path) -> list[Path]:
    """The operator's own state directory, never a shared temporary one (SPEC section 14): a name anyone can
    predict under /tmp is a name anyone can plant a FIFO or a symlink at."""
    digest = hashlib.sha256(str(Path(workspace_root).resolve()).encode()).hexdigest()[:12]
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    if not os.path.isabs(base) or Path(base).resolve() == Path(tempfile.gettempdir()).resolve():
        return []
    return [Path(base) / "slotgen" / digest]


class BreakGlassJournal:
    """The break-glass journals of one environment (the one beside the log, and fallbacks)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.primary = env.dir / journal_name(env.name)
        self.paths = [self.primary] + [d / journal_name(env.name) for d in _fallback_dirs(env.workspace.root)]

    def existing(self) -> list[Path]:
        """The journals there are: a name holding anything but a regular file is left out here and named by
        verify() (a FIFO is never opened for reading)."""
        return [p for p in self.paths if p.exists() and p.is_file() and not p.is_symlink()]

    def unsafe(self) -> list[tuple[Path, str]]:
        """Journal names that hold something that is not a regular file: [(path, what it is)]."""
        from ..files.atomic import kind_of

        found = []
        for path in self.paths:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                found.append((path, kind_of(st.st_mode)))
        return found

    def append(self, fields: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        """Append to the first journal that takes it; OSError/IntegrityFailure if none does."""
        problems = []
        for path in self.paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                log = AuditLog(path, lock=FileLock(path))
                with log.locked():
                    return path, log.append(fields)
            except (OSError, IntegrityFailure) as exc:
                if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
                    from .controls_file import release_ballast

                    if release_ballast(self.env.dir):
                        try:
                            log = AuditLog(path, lock=FileLock(path))
                            with log.locked():
                                return path, log.append(fields)
                        except (OSError, IntegrityFailure) as again:
                            exc = again
                problems.append(f"{path}: {getattr(exc, 'strerror', None) or exc}")
        raise IntegrityFailure("break-glass journal could not be written: " + "; ".join(problems))

    def entries(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every readable journal entry, oldest first by time."""
        found: list[tuple[Path, dict[str, Any]]] = []
        for path in self.existing():
            try:
                for entry in AuditLog(path, lock=FileLock(path)).entries():
                    found.append((path, entry))
            except IntegrityFailure:
                continue  # a damaged journal is reported by verify(); what is readable still counts
        found.sort(key=lambda pe: parse_utc_or_none(pe[1].get("ts")) or _UNDATED)
        return found

    def unfolded(self, state: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
        folded = set(state.get("breakGlassFolded") or [])
        return [(p, e) for p, e in self.entries() if e.get("action") == ROLLBACK and isinstance(e.get("hash"), str)
                and e["hash"] not in folded]

    def verify(self) -> list[dict[str, Any]]:
        """Each journal's chain: [{path, entries, valid, firstBad, reason}]."""
        reports = [{"path": str(path), "entries": 0, "valid": False, "firstBad": None,
                    "reason": f"{path} is {what}, not a regular file: not read as a break-glass journal"}
                   for path, what in self.unsafe()]
        for path in self.existing():
            try:
                report = AuditLog(path, lock=FileLock(path)).verify(env=self.env.name)
                reports.append({"path": str(path), "entries": report.entries, "valid": report.valid,
                                "firstBad": report.first_bad, "reason": report.reason})
            except IntegrityFailure as exc:
                reports.append({"path": str(path), "entries": 0, "valid": False, "firstBad": None,
                                "reason": exc.message})
        return reports
