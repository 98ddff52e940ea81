"""One environment: its controls file and its audit log, kept in agreement.

Reading is open to every command (`snapshot`). Changing needs a
`ControlsWriter`, which only `Environment.writer()` makes: it holds the
directory lock, defers SIGINT/SIGTERM/SIGHUP for the few local file operations
of the critical section, and starts by reconciling (`ControlsWriter.reconcile`)
anything an interrupted writer or a lock-free rollback left. The protocol and
the argument for it are in the README, "How a change is made safe".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..contract import KILL_VAR
from ..errors import BadInput, IntegrityFailure, Refused
from ..files import hooks
from ..files.atomic import clean_stale_temps
from ..audit.log import Unsealed, complete
from ..audit.canonical import entry_hash
from .controls_file import ControlsChanged, ControlsFile, ensure_ballast, parse_controls, render_controls
from ..clock import now_utc, parse_utc, parse_utc_or_none, utc
from ..files.signals import signals_deferred
from ..runbook.state import REPAIR, ROLLBACK, SET, apply, differences

if TYPE_CHECKING:  # types only; the workspace is passed in (no import of workspace: no cycle)
    from .seam import EnvironmentStore
    from ..policy.authority import Actor
    from ..policy.signing import Session

T = TypeVar("T")

__all__ = ["ControlsDisagree", "ControlsWriter", "Environment", "Snapshot", "Superseded", "create_environment",
           "differences", "parse_controls", "render_controls"]


class ControlsDisagree(IntegrityFailure):
    """The controls file disagrees with an audit log that is itself sound (exit 4).

    `remedy` is the command that puts it right, when there is one: a hand
    edit or an older controls file is restored from the log by `audit repair`
    (with the kill-switch engaged); a log that lost entries is not.
    """

    def __init__(self, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy


class Superseded(Refused):
    """A rollback (or another writer) changed the environment while this change was prepared (exit 3)."""

    def __init__(self, message: str, audit_seq: int | None = None) -> None:
        super().__init__(message)
        self.audit_seq = audit_seq


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


class ControlsWriter:
    """Append-then-apply under the lock: the audit entry is the commit point."""

    def __init__(self, env: Environment, actor: "Actor", session: "Session | None" = None) -> None:
        self._env = env
        self._actor = actor.recordable()
        self._session = session
        self.notes: list[str] = []   # what reconciling found and did, for the command to say
        self.snapshot: Snapshot | None = None
        self._sound: list[int] | None = None  # the log file's identity when this section found it sound
        self.unsigned: list[str] = []  # hashes of entries this pass computed but could not record unsigned
        self.stamps: list[str] = []    # the times of this pass's entries, in order
        self._virtual = False          # an entry was not signed yet: the rest of the pass writes nothing

    def stamp(self, head_ts: Any) -> str:
        """The next entry's time: the one it had in the previous pass (so its signature still fits), unless
        that would put it before the head it follows."""
        i = len(self.stamps)
        prior = self._session.stamps[i] if self._session is not None and i < len(self._session.stamps) else None
        head = parse_utc_or_none(head_ts)
        ts = prior if prior is not None and (head is None or parse_utc(prior) >= head) else utc(now_utc())
        self.stamps.append(ts)
        return ts

    def seal(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """The entry's signature (SPEC section 7): None for an entry not by a signed identity; `Unsealed`
        when this pass has none for it yet."""
        if (entry.get("actor") or {}).get("identity") != "signed":
            return None
        signature = self._session.signatures.get(entry["hash"]) if self._session is not None else None
        if signature is not None:
            return signature
        if self._session is None or self._session.signer is None:
            raise Refused("an entry by a signed identity cannot be recorded without its key; nothing recorded")
        if entry["hash"] not in self.unsigned:
            self.unsigned.append(entry["hash"])
        raise Unsealed(entry)

    def reconcile(self, recover: bool = True) -> Snapshot:
        """Bring log and controls into agreement, always toward the kill-switch engaged.

        Folds unfolded break-glass rollbacks into the chain; with `recover`, an
        interrupted change (controls one entry behind) or a kill-switch engaged
        outside the log is recorded as a rollback. Never lowers safety.
        """
        from .chain import require_sound

        env = self._env
        self._sound = require_sound(env)  # the whole log, not only its head (SPEC section 9)
        snap = self._fold(env.snapshot())
        if recover and snap.needs_reconcile:
            if snap.pending is not None:
                why = (f"the change recorded at seq {snap.pending['seq']} ({snap.pending.get('action')} "
                       f"{snap.pending.get('control') or ''}) was interrupted before its controls were written")
            else:
                why = "the kill-switch was found engaged in the controls file but not in the audit log"
            old = snap.controls.values.get(KILL_VAR) if snap.pending is None else snap.state["controls"][KILL_VAR]
            snap = self._record_after(snap, _rollback_fields(
                env, self._actor, snap.state, old=old, reason=f"recovered, fail closed: {why}",
                details={"trigger": "recover", "pendingSeq": snap.pending["seq"] if snap.pending else None}))
            self.notes.append(f"{why}: recorded as rollback seq {snap.head['seq']}, kill-switch engaged")
        self.snapshot = snap
        return snap

    def _fold(self, snap: Snapshot) -> Snapshot:
        """Fold every unfolded break-glass rollback into the chain (each engages the kill-switch)."""
        from .breakglass import BreakGlassJournal

        env = self._env
        for path, record in BreakGlassJournal(env).unfolded(snap.state):
            snap = self._record_after(snap, _rollback_fields(
                env, self._actor, snap.state, old=record.get("old"),
                reason=f"break-glass rollback folded into the chain: {record.get('reason')}",
                details={"trigger": "break-glass-fold", "breakGlassHash": record["hash"],
                         "breakGlassSeq": record.get("seq"), "breakGlassLog": path.name,
                         "breakGlassOperator": record.get("operator"), "breakGlassTs": record.get("ts"),
                         "problem": (record.get("details") or {}).get("problem")}))
            self.notes.append(f"folded break-glass rollback {path.name} seq {record.get('seq')} into the audit log "
                              f"(seq {snap.head['seq']})")
        return snap

    def record(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Append one entry computed from the writer's snapshot, then write the controls it holds.

        `fields["state"]` must have been computed from `self.snapshot.state`.
        """
        if self.snapshot is None:
            self.reconcile()
        assert self.snapshot is not None
        snap = self._record_after(self.snapshot, fields)
        return snap.head

    def _record_after(self, snap: Snapshot, fields: dict[str, Any]) -> Snapshot:
        env = self._env
        ts = self.stamp(snap.head.get("ts"))
        if fields.get("ts") != ts:  # the state after an entry depends on its time (soak, expiry)
            fields = {**fields, "ts": ts}
            fields["state"] = apply(snap.state, fields)
        if self._virtual:
            return self._unwritten(snap, complete(fields, snap.head))
        try:
            entry = env.log.append(fields, after=snap.head_id, seal=self.seal)
        except Unsealed as exc:
            self._virtual = True
            return self._unwritten(snap, exc.entry)
        if self._sound is not None:  # a sound log plus our own entry: the verified-prefix cache follows
            from .chain import advance

            self._sound = advance(env, self._sound, True)
        hooks.point("after-audit-append")
        try:
            back = env.controls.write(entry["state"]["controls"], entry["seq"], entry["hash"], expect=snap.controls)
        except ControlsChanged:
            return self._lost_to_rollback(entry)
        self.snapshot = Snapshot(entry["state"], entry, back, None, False)
        return self.snapshot

    def _unwritten(self, snap: Snapshot, entry: dict[str, Any]) -> Snapshot:
        """An entry this pass computes but does not write (it is signed before the next pass)."""
        if (entry.get("actor") or {}).get("identity") == "signed" and entry["hash"] not in self.unsigned:
            self.unsigned.append(entry["hash"])
        entry["signature"] = None
        self.snapshot = Snapshot(entry["state"], entry, snap.controls, None, False)
        return self.snapshot

    def _lost_to_rollback(self, entry: dict[str, Any]) -> Snapshot:
        """A lock-free rollback engaged the kill-switch between our commit and our controls write.

        Record that rollback after our entry (so the log ends engaged, like
        the file), write the controls, and tell the caller it was superseded.
        """
        env = self._env
        found = env.controls.lenient()
        if found.values.get(KILL_VAR) != "true":
            repair = f"slotgen audit repair --env {env.name}"
            raise ControlsDisagree(f"{env.controls_name} changed under the lock, and not by a rollback: "
                                   f"{differences(found.values, entry['state']['controls'])} (seq {entry['seq']} "
                                   f"recorded); '{repair}' restores the recorded values with the kill-switch engaged",
                                   remedy=repair)
        snap = Snapshot(entry["state"], entry, found, None, True)
        after = self._fold(snap)  # the rollback that won, if it went to the break-glass journal
        if after is snap:
            fields = _rollback_fields(env, self._actor, entry["state"], old=entry["state"]["controls"][KILL_VAR],
                                      reason="a concurrent rollback engaged the kill-switch while seq "
                                      f"{entry['seq']} was being applied; that change never reached the controls",
                                      details={"trigger": "concurrent-rollback", "supersededSeq": entry["seq"]})
            after = self._record_after(snap, fields)
        raise Superseded(f"superseded: a rollback engaged the kill-switch while this change (seq {entry['seq']}) "
                         f"was being applied; recorded as seq {after.head['seq']}, nothing exposed",
                         audit_seq=after.head["seq"])


def _rollback_fields(env: Environment, actor: "Actor", state: dict[str, Any], *, old: Any, reason: str,
                     details: dict[str, Any]) -> dict[str, Any]:
    """A fail-closed rollback the write protocol records on its own (recovery, a fold, a repair): no
    operator asked for it, so it carries no decision record."""
    from .entries import new_entry

    return new_entry(env.name, actor, state, action=ROLLBACK, control=KILL_VAR, old=old, new="true",
                     reason=reason, details=details)


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
