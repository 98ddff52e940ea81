"""One environment: its controls file and its audit log, kept in agreement.

Reading is open to every command (`snapshot`, a `snapshot.Snapshot`). Changing
needs a `ControlsWriter` (`writer.py`), which only `Environment.writer()`
makes: it holds the directory lock, defers SIGINT/SIGTERM/SIGHUP for the few
local file operations of the critical section, and starts by reconciling
(`ControlsWriter.reconcile`) anything an interrupted writer or a lock-free
rollback left. The protocol and the argument for it are in the README, "How a
change is made safe".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..contract import KILL_VAR
from ..errors import BadInput, IntegrityFailure, Refused
from ..files import hooks
from ..files.atomic import clean_stale_temps
from ..audit.canonical import entry_hash
from .controls_file import ControlsFile, ensure_ballast, parse_controls, render_controls
from .snapshot import ControlsDisagree, Snapshot
from .writer import ControlsWriter
from ..files.signals import signals_deferred
from ..runbook.state import REPAIR, ROLLBACK, SET, differences

if TYPE_CHECKING:  # types only; the workspace is passed in (no import of workspace: no cycle)
    from .seam import EnvironmentStore
    from ..policy.authority import Actor
    from ..policy.signing import Session

T = TypeVar("T")

__all__ = ["Environment", "create_environment", "differences", "parse_controls", "render_controls"]


def _agrees(values: dict[str, Any], expected: dict[str, Any]) -> tuple[bool, bool]:
    """(agrees, only because the kill-switch was engaged outside the log)."""
    if values == expected:
        return True, False
    return values == {**expected, KILL_VAR: "true"}, True


class Environment:
    """An environment of a workspace: `<name>.env` and `<name>.audit.jsonl` in environments/."""

    def __init__(self, workspace: Any, name: str, config: Any, store: EnvironmentStore) -> None:
        self.workspace = workspace
        self.name = name
        self.config = config  # None when slotgen.yaml cannot be read (rollback still works)
        self.dir = workspace.environments_dir
        self.controls_path = self.dir / f"{name}.env"
        self.store = store  # picked by the composition root (`slotgen_ops.workspace`), behind `seam.EnvironmentStore`
        self.backend = store.backend
        self.lock = self.store.lock
        self.log = self.store.log
        self.controls = self.store.controls

    @contextmanager
    def signing_turn(self, timeout: float | None, what: str) -> Iterator[bool]:
        """Writers of this environment take turns at signing (fairness only; see `locking.signing_turn`)."""
        with self.store.turn(timeout, what) as taken:
            yield taken

    def read_controls(self) -> ControlsFile:
        return self.controls.read()

    @property
    def controls_name(self) -> str:
        """What messages name as "the controls": the file, or on PostgreSQL the environment's row (there is no
        environments/E.env there)."""
        return str(self.controls_path) if self.backend == "files" else self.controls.describe()

    def snapshot(self) -> Snapshot:
        """Read both files (under the shared lock) and check they agree.

        Cost independent of the log's length. Two disagreements are expected
        and reported, not refused: the controls one entry behind the log
        (`pending`: the window between the commit point and the controls
        write) and the kill-switch engaged in the file but not in the log
        (`engaged_outside`: a rollback engages first and records after).
        Anything else is an IntegrityFailure (exit 4).
        """
        with self.lock.shared():
            try:
                controls = self.read_controls()
            except ControlsDisagree:
                raise
            except IntegrityFailure as exc:
                raise self.controls_unreadable(exc) from None
            head = self.log.head()
        if head is None:
            raise IntegrityFailure(f"{self.log.path}: audit log is empty or missing; the controls cannot be trusted: "
                                   "restore the log from a backup (rollback still works)")
        try:
            sound = entry_hash(head) == head.get("hash")
        except ValueError:
            sound = False
        if not sound:
            raise IntegrityFailure(f"{self.log.path}: the last entry (seq {head.get('seq')}) fails its hash; "
                                   f"'slotgen audit verify --env {self.name}' names the first bad entry (rollback "
                                   "still works)")
        state = head.get("state")
        if not isinstance(state, dict) or not isinstance(state.get("controls"), dict):
            raise IntegrityFailure(f"{self.log.path}: the last entry (seq {head.get('seq')}) carries no state")
        if controls.head_seq == head["seq"] and controls.head_hash == head["hash"]:
            ok, forced = _agrees(controls.values, state["controls"])
            if ok:
                return Snapshot(state, head, controls, None, forced)
            repair = f"slotgen audit repair --env {self.name}"
            raise ControlsDisagree(f"{self.controls_name}: the controls differ from the audit log at seq {head['seq']} "
                                   f"(hand edit?): {differences(controls.values, state['controls'])}; '{repair}' "
                                   "restores the recorded values with the kill-switch engaged", remedy=repair)
        if controls.head_seq == head["seq"] - 1 and controls.head_hash == head.get("prevHash"):
            before = dict(state["controls"])
            if head.get("action") in (SET, ROLLBACK, REPAIR) and head.get("control") in before:
                before[head["control"]] = head.get("old")
            ok, forced = _agrees(controls.values, before)
            if ok:
                return Snapshot(state, head, controls, head, forced)
            repair = f"slotgen audit repair --env {self.name}"
            raise ControlsDisagree(f"{self.controls_name}: the controls differ from the audit log at seq "
                                   f"{controls.head_seq} (hand edit?): {differences(controls.values, before)}; "
                                   f"'{repair}' restores the log's values with the kill-switch engaged", remedy=repair)
        raise self._head_mismatch(controls, head, state)

    def controls_unreadable(self, exc: IntegrityFailure) -> IntegrityFailure:
        """A controls file that cannot be read as one, with the way back: a missing one is written by a rollback
        (the kill-switch engaged) and then restored from the log; a damaged one is restored from the log."""
        repair = f"slotgen audit repair --env {self.name}"
        if self.backend != "files":
            return exc
        try:
            missing = not self.controls.exists()
        except Exception:  # noqa: BLE001 - the hint is a courtesy; the failure stands regardless
            return exc
        if missing:
            rollback = f"slotgen rollback --env {self.name} --reason TEXT"
            return ControlsDisagree(f"{exc.message}; '{rollback}' writes it with the kill-switch engaged, then "
                                    f"'{repair}' restores the audit log's values", remedy=rollback)
        if "(hand edit?)" not in exc.message:
            return exc  # unreadable (permissions, I/O): nothing slotgen can rewrite
        return ControlsDisagree(f"{exc.message}; '{repair}' rewrites it from the audit log with the kill-switch "
                                "engaged", remedy=repair)

    def _head_mismatch(self, controls: ControlsFile, head: dict[str, Any], state: dict[str, Any]) -> IntegrityFailure:
        """Why the controls file's head line is not the log's head (or the one before it), and what puts it right."""
        seq, found = head["seq"], controls.head_seq
        verify = f"slotgen audit verify --env {self.name}"
        if isinstance(found, int) and found > seq:
            return IntegrityFailure(
                f"{self.controls_name} records audit seq {found} but the audit log ends at seq {seq}: the log lost "
                f"entries (truncated or replaced?); restore it from a backup ('{verify}' shows what is missing; "
                "'slotgen audit repair' never hides lost entries; rollback still works)")
        if found == seq:
            return IntegrityFailure(
                f"{self.controls_name} records audit seq {seq} with hash {str(controls.head_hash)[:12]}… but the "
                f"log's entry {seq} has hash {str(head.get('hash'))[:12]}…: the log was rewritten or replaced, or the "
                f"controls file comes from elsewhere; '{verify}' checks the whole chain, with '--checkpoint FILE' "
                "against a checkpoint kept outside (rollback still works)")
        repair = f"slotgen audit repair --env {self.name}"
        values = differences(controls.values, state["controls"])
        said = f": {values}" if values else " (the values agree, the head line does not)"
        return ControlsDisagree(
            f"{self.controls_name} records audit seq {found} but the audit log's last entry is seq {seq} (an older "
            f"or copied controls file?){said}; '{repair}' restores the log's values with the kill-switch engaged",
            remedy=repair)

    def transact(self, actor: "Actor", body: Callable[["ControlsWriter"], T], *, timeout: float | None = None,
                 what: str = "this change", reconcile: bool = True, keep_reserve: bool = True) -> T:
        """Run `body(writer)` in a critical section, its entries signed by `actor` (SPEC sections 6 and 7).

        Signing never happens under the lock (see `signing`): a pass that
        would record an entry not yet signed writes nothing; its entries are
        signed with the lock released and the body runs again. A body must
        therefore compute what it records from the writer's snapshot and its
        own arguments only. Returns what the pass that wrote returns (or
        raises what it raised).
        """
        from ..policy.signing import MAX_PASSES, Session

        session = Session(actor.recordable().signer())
        if session.signer is None:  # nothing to sign: one pass
            with self.writer(actor, timeout=timeout, what=what, reconcile=reconcile, keep_reserve=keep_reserve) as w:
                return body(w)
        with self.signing_turn(timeout, what):
            for _ in range(MAX_PASSES):
                with self.writer(actor, timeout=timeout, what=what, reconcile=reconcile, keep_reserve=keep_reserve,
                                 session=session) as writer:
                    try:
                        out = body(writer)
                    except Exception:
                        if not writer.unsigned:
                            raise
                    else:
                        if not writer.unsigned:
                            return out
                    session.stamps = writer.stamps
                hooks.point("before-sign")  # the lock is released here: a rollback may record meanwhile
                session.sign(writer.unsigned)  # ssh-agent, a hardware key or a touch may take its time
        raise Refused(f"{what}: the environment changed each time its entries were signed ({MAX_PASSES} times); "
                      "nothing was recorded, try again")

    @contextmanager
    def writer(self, actor: "Actor", timeout: float | None = None, what: str = "this change",
               reconcile: bool = True, keep_reserve: bool = True,
               session: "Session | None" = None) -> Iterator["ControlsWriter"]:
        """A short critical section under the lock (`transact` is how changes use it).

        Only local file operations run inside (never network I/O, never
        signing). Catchable signals are deferred to its end, so it either
        completes or, killed with SIGKILL, leaves one of the states `snapshot`
        recognises. Without a `session`, entries by a signed identity cannot
        be recorded.
        """
        try:
            with self.lock.exclusive(timeout=timeout, what=what), signals_deferred():
                hooks.point("writer-locked")
                try:
                    if self.backend == "files":
                        clean_stale_temps(self.controls.folder)
                        if keep_reserve:  # not for a rollback: it may just have freed the reserve to record itself
                            ensure_ballast(self.dir)
                    writer = ControlsWriter(self, actor, session)
                    if reconcile:
                        writer.reconcile()
                    yield writer
                except OSError as exc:  # a full disk or a read-only directory, say: one line, fail closed
                    failure = IntegrityFailure(
                        f"{self.dir}: {exc.strerror or exc.__class__.__name__} while writing; if the change was "
                        "recorded but not applied, the next command closes it with the kill-switch engaged "
                        "('slotgen rollback' works regardless)")
                    failure.errno = exc.errno  # type: ignore[attr-defined]
                    raise failure from None
        except Exception as exc:
            if self.backend == "files" or not _database_error(exc):
                raise
            # The database failed in the section or at its COMMIT (connection dropped, read-only, gone): the
            # transaction is gone with it, so nothing of this section was committed.
            raise IntegrityFailure(f"state database {self.store.describe()}: {' '.join(str(exc).split())[:200]}; "
                                   "nothing of this change was committed ('slotgen rollback' still works)") from None


def _database_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("psycopg")


def create_environment(env: Environment, init_fields: dict[str, Any], actor: "Actor") -> dict[str, Any]:
    """Start an environment's log with its `init` entry and write its controls."""
    if env.log.exists() or env.controls.exists():
        where = env.workspace.root if env.backend == "files" else env.controls.describe()
        raise BadInput(f"environment {env.name!r} already exists in {where} (a second operator clones the "
                       "workspace instead)")
    env.dir.mkdir(parents=True, exist_ok=True)
    with env.writer(actor, reconcile=False) as writer:
        entry = env.log.append(init_fields, after=(0, "0" * 64))
        env.controls.write(entry["state"]["controls"], entry["seq"], entry["hash"], expect=None)
        writer.snapshot = None
        return entry
