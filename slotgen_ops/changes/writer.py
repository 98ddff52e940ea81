"""Changing an environment: the `ControlsWriter`, append-then-apply under the lock.

Only `environment.Environment.writer()` makes one, in its critical section
(the lock held, signals deferred). It starts by reconciling
(`ControlsWriter.reconcile`): unfolded break-glass rollbacks are folded into
the chain and an interrupted change, or a kill-switch engaged outside the log,
is recorded as a rollback, always toward the kill-switch engaged. Then each
entry is appended (the commit point) before the controls are written with a
fenced replace; a lock-free rollback that won meanwhile is recorded after it
and the change is `Superseded`. The argument: README, "How a change is made
safe".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..contract import KILL_VAR
from ..errors import Refused
from ..files import hooks
from ..audit.append import Unsealed, complete
from .controls_file import ControlsChanged
from .snapshot import ControlsDisagree, Snapshot
from ..clock import now_utc, parse_utc, parse_utc_or_none, utc
from ..runbook.state import ROLLBACK, apply, differences

if TYPE_CHECKING:
    from ..policy.authority import Actor
    from ..policy.signing import Session

__all__ = ["ControlsWriter", "Superseded"]


class Superseded(Refused):
    """A rollback (or another writer) changed the environment while this change was prepared (exit 3)."""

    def __init__(self, message: str, audit_seq: int | None = None) -> None:
        super().__init__(message)
        self.audit_seq = audit_seq


class ControlsWriter:
    """Append-then-apply under the lock: the audit entry is the commit point."""

    def __init__(self, env: Any, actor: "Actor", session: "Session | None" = None) -> None:
        # env: the `environment.Environment` that makes this writer (not imported: it imports this module)
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


def _rollback_fields(env: Any, actor: "Actor", state: dict[str, Any], *, old: Any, reason: str,
                     details: dict[str, Any]) -> dict[str, Any]:
    """A fail-closed rollback the write protocol records on its own (recovery, a fold, a repair): no
    operator asked for it, so it carries no decision record."""
    from .entries import new_entry

    return new_entry(env.name, actor, state, action=ROLLBACK, control=KILL_VAR, old=old, new="true",
                     reason=reason, details=details)
