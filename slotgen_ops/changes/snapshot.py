"""What reading an environment finds: its `Snapshot`, or `ControlsDisagree`.

Both the reader (`environment.Environment.snapshot`) and the writer
(`writer.ControlsWriter`) speak of an environment in these terms, so they sit
below both: the environment makes a writer, and the writer must not import
the environment back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityFailure
from .controls_file import ControlsFile

__all__ = ["ControlsDisagree", "Snapshot"]


class ControlsDisagree(IntegrityFailure):
    """The controls file disagrees with an audit log that is itself sound (exit 4).

    `remedy` is the command that puts it right, when there is one: a hand
    edit or an older controls file is restored from the log by `audit repair`
    (with the kill-switch engaged); a log that lost entries is not.
    """

    def __init__(self, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy


@dataclass(frozen=True)
class Snapshot:
    """The environment as the audit log says it is, and what the controls file says."""

    state: dict[str, Any]           # state after the log's head entry
    head: dict[str, Any]            # the log's last entry
    controls: ControlsFile          # the file as read (values, head line, raw bytes)
    pending: dict[str, Any] | None  # the head entry, when its controls were not written (crash, or a rollback won)
    engaged_outside: bool = False   # the file has the kill-switch engaged where the log does not (unrecorded rollback)

    @property
    def head_id(self) -> tuple[int, str]:
        return int(self.head["seq"]), str(self.head["hash"])

    @property
    def needs_reconcile(self) -> bool:
        return self.pending is not None or self.engaged_outside
