"""Settling an environment before a change, a report or a render: closing what was left open.

A crash between a change's commit point and its controls write, a
kill-switch engaged outside the log, or a break-glass rollback not yet folded
leave an environment open (`needs_settling`); closing it records a rollback
(fail closed) in a critical section (`_settled`). A dry-run only says it would.
"""

from __future__ import annotations

from ..policy.authority import Actor
from .environment import Environment
from .snapshot import Snapshot


def needs_settling(env: Environment) -> tuple[Snapshot, bool]:
    """The whole log checked (cached: a stat), the snapshot, and whether something is left open in it:
    an interrupted change, a kill-switch engaged outside the log, or a break-glass rollback not yet folded."""
    from .breakglass import BreakGlassJournal
    from .chain import require_sound

    require_sound(env)  # the whole log, not only its head (SPEC section 9)
    snap = env.snapshot()
    return snap, snap.needs_reconcile or bool(BreakGlassJournal(env).unfolded(snap.state))


def _settled(env: Environment, actor: Actor, dry_run: bool, timeout: float | None = None) -> tuple[Snapshot, list[str]]:
    """The environment's snapshot, after closing what a crash or a lock-free rollback left open.

    Closing means recording a rollback (fail closed), so a dry-run only says it would.
    """
    snap, needed = needs_settling(env)
    if not needed:
        return snap, []
    if dry_run:
        return snap, ["the environment has an interrupted change or an unrecorded rollback; the next change "
                      "records it and engages the kill-switch"]
    return env.transact(actor, lambda writer: (writer.snapshot, list(writer.notes)), what="recovery",
                        timeout=timeout)
