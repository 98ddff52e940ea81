"""One environment: its controls file and its audit log, kept in agreement.

The controls file is what the slot-generation service consumes, in the
KEY=VALUE form of systemd's `EnvironmentFile=` and `docker --env-file`. A
comment line records the audit entry it reflects (`# slotgen-head: seq=N
hash=H`), so a truncated log, a rewound controls file or a hand edit shows as
disagreement.

Reading is open to every command; writing needs a `ControlsWriter`, which only
`Environment.writer()` makes, under the audit lock. Dry-runs never call it: no
writer is reachable from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contract import CONTROL_VARS
from ..errors import BadInput, IntegrityFailure
from .atomic import atomic_write, clean_stale_temps, fault_point
from .audit import AuditLog
from .canonical import entry_hash
from .state import CONTROL_ORDER, ROLLBACK, SET

if TYPE_CHECKING:
    from .workspace import EnvironmentConfig, Workspace

_HEAD_RE = re.compile(r"^# slotgen-head: seq=([0-9]+) hash=([0-9a-f]{64})$")
_LINE_RE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class ControlsFile:
    values: dict[str, str | None]  # every control; None = unset
    head_seq: int
    head_hash: str


def render_controls(env: str, values: dict[str, str | None], seq: int, digest: str) -> bytes:
    lines = [
        f"# slotgen runtime controls for environment {env!r}.",
        "# Written by slotgen; do not edit by hand: an edit is detected and blocks every change.",
        "# Load it with systemd EnvironmentFile= or docker --env-file. Empty = unset.",
        f"# slotgen-head: seq={seq} hash={digest}",
    ]
    for name in CONTROL_ORDER:
        value = values.get(name)
        lines.append(f"{name}={'' if value is None else value}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse_controls(path: Path) -> ControlsFile:
    """Read a controls file strictly: anything unexpected is an integrity failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IntegrityFailure(f"{path}: controls file is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityFailure(f"{path}: controls file unreadable ({exc.__class__.__name__})") from None
    values: dict[str, str | None] = {}
    head: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = _HEAD_RE.match(line)
        if match:
            head = (int(match.group(1)), match.group(2))
            continue
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if not match or match.group(1) not in CONTROL_VARS:
            raise IntegrityFailure(f"{path}:{number}: unexpected line in controls file (hand edit?)")
        name, value = match.group(1), match.group(2)
        if name in values:
            raise IntegrityFailure(f"{path}:{number}: {name} is set twice (hand edit?)")
        values[name] = value if value != "" else None
    if head is None:
        raise IntegrityFailure(f"{path}: controls file has no slotgen-head line (hand edit?)")
    missing = [name for name in CONTROL_VARS if name not in values]
    if missing:
        raise IntegrityFailure(f"{path}: controls file lacks {', '.join(missing)} (hand edit?)")
    return ControlsFile(values=values, head_seq=head[0], head_hash=head[1])


@dataclass(frozen=True)
class Snapshot:
    """The environment as the audit log says it is, and what the controls file says."""

    state: dict[str, Any]          # state after the log's head entry
    head: dict[str, Any]           # the log's last entry
    controls: ControlsFile
    pending: dict[str, Any] | None  # the head entry, when its controls were not yet written


class Environment:
    """An environment of a workspace: `<name>.env` and `<name>.audit.jsonl` in environments/."""

    def __init__(self, workspace: "Workspace", name: str, config: "EnvironmentConfig") -> None:
        self.workspace = workspace
        self.name = name
        self.config = config
        self.controls_path = workspace.environments_dir / f"{name}.env"
        self.log = AuditLog(workspace.environments_dir / f"{name}.audit.jsonl")

    def read_controls(self) -> ControlsFile:
        return parse_controls(self.controls_path)

    def snapshot(self) -> Snapshot:
        """Read both files and check they agree (cost independent of the log's length).

        Exactly one entry ahead of the controls file is the crash window
        between the audit append (the commit point) and the controls write:
        it is reported as `pending` and finished by the next writer.
        Anything else that disagrees is an IntegrityFailure (exit 4).
        """
        with self.log.reading():  # both files from one moment: writers hold the lock across both
            controls = self.read_controls()
            head = self.log.head()
        if head is None:
            raise IntegrityFailure(f"{self.log.path}: audit log is empty or missing; the controls cannot be trusted")
        if entry_hash(head) != head.get("hash"):
            raise IntegrityFailure(f"{self.log.path}: the last entry (seq {head.get('seq')}) fails its hash; "
                                   "run 'slotgen audit verify'")
        state = head.get("state")
        if not isinstance(state, dict) or not isinstance(state.get("controls"), dict):
            raise IntegrityFailure(f"{self.log.path}: the last entry (seq {head.get('seq')}) carries no state")
        if controls.head_seq == head["seq"] and controls.head_hash == head["hash"]:
            if controls.values != state["controls"]:
                raise IntegrityFailure(f"{self.controls_path}: controls differ from the audit log at seq "
                                       f"{head['seq']} (hand edit?); run 'slotgen audit verify'")
            return Snapshot(state, head, controls, None)
        if controls.head_seq == head["seq"] - 1 and controls.head_hash == head["prevHash"]:
            before = dict(state["controls"])
            if head.get("action") in (SET, ROLLBACK) and head.get("control") in before:
                before[head["control"]] = head.get("old")
            if controls.values == before:
                return Snapshot(state, head, controls, head)
        raise IntegrityFailure(
            f"{self.controls_path} records audit seq {controls.head_seq} but the audit log's last entry is seq "
            f"{head['seq']}: controls and audit log disagree (truncated log, rewound or edited controls?); "
            "run 'slotgen audit verify'")

    @contextmanager
    def writer(self) -> Iterator["ControlsWriter"]:
        """The only way to change this environment: under the exclusive audit lock."""
        with self.log.locked():
            clean_stale_temps(self.controls_path.parent)
            yield ControlsWriter(self)


class ControlsWriter:
    """Append-then-apply, under the lock: the audit entry is the commit point."""

    def __init__(self, env: Environment) -> None:
        self._env = env

    def record(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Append one entry (which carries the state after it), then write the controls."""
        entry = self._env.log.append(fields)
        fault_point("after-audit-append")
        self.write_controls(entry)
        return entry

    def write_controls(self, entry: dict[str, Any]) -> None:
        """Write the controls the entry's state holds, then read them back."""
        env = self._env
        values = entry["state"]["controls"]
        atomic_write(env.controls_path, render_controls(env.name, values, entry["seq"], entry["hash"]))
        back = parse_controls(env.controls_path)
        if back.values != values or back.head_seq != entry["seq"]:
            raise IntegrityFailure(f"{env.controls_path}: read-back differs from what was written")

    def finish_pending(self, snapshot: Snapshot) -> None:
        """Write the controls of an entry whose controls write did not happen (crash)."""
        if snapshot.pending is not None:
            self.write_controls(snapshot.pending)


def create_environment(env: Environment, init_fields: dict[str, Any]) -> dict[str, Any]:
    """Start an environment's log with its `init` entry and write its controls."""
    if env.log.path.exists() or env.controls_path.exists():
        raise BadInput(f"environment {env.name!r} already exists in {env.workspace.root}")
    env.controls_path.parent.mkdir(parents=True, exist_ok=True)
    with env.writer() as writer:
        return writer.record(init_fields)
