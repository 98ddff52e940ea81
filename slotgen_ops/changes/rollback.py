"""`slotgen rollback`: the kill-switch first, the record after (SPEC section 6).

Never refused and never waits. The kill-switch is written before anything
else (for the CLI, by the entry point before the CLI is even imported:
`cli.entry.early_rollback`), without any lock, read back as the runtime reads
it; then the act is recorded in the audit log if the lock comes within a
second and the log can take it, else in the break-glass journal; then the
verification runs outside the lock. The argument: README, "How a change is
made safe".
"""

from __future__ import annotations

import time
from typing import Any

from ..contract import KILL_VAR
from ..errors import EXIT_VERIFICATION_FAILED, BadInput, IntegrityFailure, KillSwitchNotEngagedError, Refused
from ..files import hooks
from ..policy.authority import CHANGE_ROLES, Actor, check_decision_record, require_role
from ..clock import now_utc, utc
from .outcomes import Result, _entry
from .verifying import Verifier, run_verifier, verification_summary
from .entries import journal_entry
from .environment import Environment
from .writer import Superseded
from ..runbook.state import ROLLBACK, VERIFY

ROLLBACK_LOCK_WAIT_S = 1.0


def rollback(env: Environment, *, actor: Actor, reason: str | None, decision_record: str | None, dry_run: bool,
             verifier: Verifier | None, start: float | None = None, early: dict[str, Any] | None = None,
             evidence: dict[str, Any] | None = None) -> Result:
    """Engage the kill-switch in one action, from any state (SPEC sections 2 and 6).

    Never refused and never waits: the kill-switch is written first, without
    the lock, and read back as the runtime reads it; then the act is recorded
    in the audit log if the lock comes within a second and the log can take
    it, else in the break-glass journal. Exit 5 only if the controls cannot be
    written. `early`: what the entry point's kill-switch-first write did
    (`cli.entry.early_rollback`); the kill-switch is written again here anyway. `evidence`: what a guard
    saw that made it roll back (kept in the entry's details, the trigger being "guard").
    """
    from .controls_file import KillSwitchNotEngaged

    start = time.perf_counter() if start is None else start
    warnings: list[str] = []
    reason = _reason(reason, warnings)
    actor = _under_accepted_policy(env, actor)
    try:
        require_role(actor, CHANGE_ROLES, "roll back")
    except Refused as exc:
        warnings.append(f"{exc.message}; the rollback proceeds, recorded as unidentified")
        actor = actor.unidentified()
    dr = _lenient_decision_record(env, decision_record, warnings)
    found = env.controls.lenient()
    old = found.values.get(KILL_VAR)
    change = {"control": KILL_VAR, "old": old, "new": "true"}
    where = {"workspace": str(env.workspace.root), "controlsFile": _controls_named(env)}
    if dry_run:
        return Result(ok=True, change=change, dry_run=True, warnings=warnings, extra=where,
                      message="dry-run: would engage the kill-switch (SLOTGEN_AI_KILL=true) at once and record it; "
                      "nothing written")
    host: list[tuple[Any, bool, str]] = []
    if env.backend != "files":  # this host's rendered env-files first: local, and what its runtime reads
        from .hostfiles import engage as engage_host

        host = engage_host(env.workspace.root, env.name)
        for path, ok, detail in host:
            if not ok:
                warnings.append(f"the rendered file {path} could not be engaged: {detail}")
    try:
        values, how, found_old = env.controls.engage()
    except KillSwitchNotEngaged as exc:
        if env.backend != "files":
            host.extend(_engage_local_file(env))
        engaged_here = [str(path) for path, ok, _ in host if ok]
        if not engaged_here:
            where = "" if env.backend == "files" else " (and no file rendered by 'slotgen render' on this host)"
            _journal_quietly(env, actor, old, reason, dr, f"KILL-SWITCH NOT ENGAGED: {exc}{where}",
                             {"trigger": "operator", "engaged": False})
            raise KillSwitchNotEngagedError(f"KILL-SWITCH NOT ENGAGED: {exc}{where}") from None
        # The database is out of reach: the runtime on this host stops now; the act is kept in this host's
        # break-glass journal and folded into the database log when it is back (SPEC section 10).
        values = {**found.values, KILL_VAR: "true"}
        how, found_old = f"this host's rendered file(s) {', '.join(engaged_here)}", old
        where["controlsFile"] = ", ".join(engaged_here)
        warnings.append(f"the state database could not be reached ({exc}): the kill-switch is engaged only in "
                        f"{', '.join(engaged_here)} on this host; other hosts follow once the database is back "
                        "and this rollback is folded in (the next slotgen command or render --watch here does it)")
    engaged_ms = round((time.perf_counter() - start) * 1000, 3)
    if early is not None and early.get("engaged") and not early.get("host"):  # engaged before the CLI loaded
        old, how, engaged_ms = early["old"], early["written"], early["engagedMs"]
    else:
        old = found_old
        if early is not None and early.get("engaged"):  # this host's rendered files, before the CLI loaded
            how, engaged_ms = f"{early['written']} (first), then {how}", early["engagedMs"]
    change["old"] = old
    hooks.point("rollback-engaged")
    info: dict[str, Any] = {"auditSeq": None, "engaged": True, "old": old, "new": values[KILL_VAR],
                            "engagedMs": engaged_ms, "written": how, "reason": reason}
    details: dict[str, Any] = {"trigger": "operator", "engagedMs": int(engaged_ms), "written": how}
    if evidence is not None:
        details.update(trigger="guard", evidence=evidence)
    problem = _record_rollback(env, actor, old, reason, dr, details, info, warnings)
    info["controlsFile"] = where["controlsFile"]
    result = Result(ok=True, change=change, audit_seq=info["auditSeq"], rollback=info, warnings=warnings,
                    extra=dict(where))
    if problem is not None:
        glass = _journal_quietly(env, actor, old, reason, dr, problem, details)
        info.update(breakGlass=True, problem=problem)
        result.extra["breakGlass"] = True
        if glass is not None:
            info.update(breakGlassSeq=glass[1]["seq"], breakGlassLog=str(glass[0]))
            warnings.append(f"recorded in the break-glass journal {glass[0]} seq {glass[1]['seq']} because {problem}; "
                            f"the next change or 'slotgen audit repair --env {env.name}' folds it into the audit log "
                            "once the log is sound")
        else:
            warnings.append(f"NOT RECORDED anywhere ({problem}); keep this line: operator="
                            f"{actor.claimed or '(none)'} reason={reason!r} at {utc(now_utc())}")
    info["totalMs"] = round((time.perf_counter() - start) * 1000, 3)
    result.message = f"kill-switch engaged and read back {engaged_ms:.0f} ms after start" + (
        "" if info["auditSeq"] else " (recorded in the break-glass journal)")
    if verifier is not None and env.config is not None:
        _verify_after_rollback(env, actor, result, verifier, values)
    elif verifier is not None:
        warnings.append("verification after the rollback skipped: slotgen.yaml cannot be read")
    return result


def _reason(reason: str | None, warnings: list[str]) -> str:
    """A rollback is never refused for want of a reason (SPEC section 6): none is recorded as '(none given)'."""
    if not reason or not reason.strip():
        warnings.append("no --reason given: recorded as '(none given)'")
        return "(none given)"
    return reason.strip()


def _controls_named(env: Environment) -> str:
    """The controls a rollback of `env` engages, as an operator would look for them: the file (and where a
    symlink leads), or the database row and this host's rendered files."""
    if env.backend == "files":
        path = env.controls_path
        try:
            if path.is_symlink():
                import os

                return f"{path} -> {os.path.realpath(path)}"
        except OSError:
            pass
        return str(path)
    from .hostfiles import rendered

    try:
        described = env.controls.describe()
    except Exception:  # noqa: BLE001 - a name for the operator only
        described = f"the state database, environment {env.name}"
    files = [str(p) for p in rendered(env.workspace.root, env.name)]
    return described + (f" and {', '.join(files)}" if files else "")


def _engage_local_file(env: Environment) -> list[tuple[Any, bool, str]]:
    """The database is out of reach: a controls file left in environments/ on this host (a workspace whose
    state moved, or a redirect that does not answer) may still be what a runtime here reads: engage it too,
    so that what the rollback says is what that runtime reads (SPEC section 15)."""
    from .controls_file import KillSwitchNotEngaged, engage_kill_switch

    path = env.controls_path
    if not (path.exists() or path.is_symlink()):
        return []
    try:
        _, how, _ = engage_kill_switch(path, env.name)
        return [(path, True, how)]
    except (KillSwitchNotEngaged, OSError) as exc:
        return [(path, False, str(exc))]


def rollback_controls_file(path: str, *, env: str | None, actor: Actor, reason: str | None,
                           decision_record: str | None, dry_run: bool, start: float | None = None,
                           early: dict[str, Any] | None = None) -> Result:
    """`rollback --controls FILE`: engage that env-file directly, with no workspace at all (SPEC section 15).

    Nobody and no policy can be proven here, so the act is unidentified (the claim and the OS account are
    kept) and is journalled beside the file (`<file>.breakglass.jsonl`, a hash chain of its own), for a
    workspace's `audit repair` or a person to pick up. Exit 5 unless the file reads engaged.
    """
    from pathlib import Path

    from ..audit.log import AuditLog
    from .controls_file import KillSwitchNotEngaged, engage_kill_switch
    from ..files.locking import FileLock
    from ..policy.paths import env_name_for_controls

    start = time.perf_counter() if start is None else start
    warnings: list[str] = []
    reason = _reason(reason, warnings)
    target = Path(path)
    name = env_name_for_controls(path, env)
    where = {"workspace": None, "controlsFile": str(target)}
    change = {"control": KILL_VAR, "old": None, "new": "true"}
    if dry_run:
        return Result(ok=True, change=change, dry_run=True, warnings=warnings, extra=where,
                      message=f"dry-run: would engage the kill-switch in {target} and journal it beside it; "
                              "nothing written")
    try:
        values, how, old = engage_kill_switch(target, name)
    except KillSwitchNotEngaged as exc:
        raise KillSwitchNotEngagedError(f"KILL-SWITCH NOT ENGAGED: {exc}") from None
    engaged_ms = round((time.perf_counter() - start) * 1000, 3)
    if early is not None and early.get("engaged") and early.get("controls") == str(path):
        engaged_ms, old, how = early["engagedMs"], early["old"], early["written"]  # engaged before the CLI loaded
    change["old"] = old
    who = actor.unidentified()
    journal = target.with_name(f"{target.name}.breakglass.jsonl")
    fields = journal_entry(name, who, action=ROLLBACK, control=KILL_VAR, old=old, new="true",
                           decisionRecord=decision_record.strip() if decision_record else None, reason=reason,
                           details={"trigger": "operator", "engagedMs": int(engaged_ms), "written": how,
                                    "controlsFile": str(target), "breakGlass": True,
                                    "problem": "rollback --controls: no workspace"})
    info: dict[str, Any] = {"auditSeq": None, "engaged": True, "old": old, "new": values[KILL_VAR],
                            "engagedMs": engaged_ms, "written": how, "reason": reason, "breakGlass": True,
                            "controlsFile": str(target)}
    try:
        log = AuditLog(journal, lock=FileLock(journal))
        with log.locked():
            entry = log.append(fields)
        info.update(breakGlassSeq=entry["seq"], breakGlassLog=str(journal))
        message = f"kill-switch engaged and read back {engaged_ms:.0f} ms after start; journalled in {journal}"
    except (IntegrityFailure, OSError, ValueError) as exc:
        warnings.append(f"NOT RECORDED anywhere ({getattr(exc, 'message', None) or exc}); keep this line: operator="
                        f"{actor.claimed or '(none)'} reason={reason!r} file={target} at {utc(now_utc())}")
        message = f"kill-switch engaged and read back {engaged_ms:.0f} ms after start (not journalled)"
    return Result(ok=True, change=change, rollback=info, warnings=warnings, extra=where, message=message)


def _record_rollback(env: Environment, actor: Actor, old: Any, reason: str, dr: str | None, details: dict[str, Any],
                     info: dict[str, Any], warnings: list[str]) -> str | None:
    """Record an engaged rollback in the audit log; the problem that stopped it, or None.

    Waits at most ROLLBACK_LOCK_WAIT_S for the lock (saying so at once). On a
    full disk the reserve file is released once and the record tried again.
    """
    import errno

    from .controls_file import release_ballast
    from ..files.locking import LockBusy

    def record(w) -> dict[str, Any]:
        snap = w.reconcile(recover=False)
        if snap.pending is not None:
            details["closesInterruptedSeq"] = snap.pending["seq"]
        entry = w.record(_entry(env, who, snap.state, action=ROLLBACK, control=KILL_VAR, old=old,
                                new="true", decisionRecord=dr, reason=reason, details=details))
        return {"seq": entry["seq"], "notes": list(w.notes)}

    who = actor
    attempts = 0
    while True:
        attempts += 1
        try:
            done = env.transact(who, record, timeout=ROLLBACK_LOCK_WAIT_S, what="recording the rollback",
                                reconcile=False, keep_reserve=False)
            info["auditSeq"] = done["seq"]
            warnings.extend(done["notes"])
            return None
        except LockBusy as exc:
            return f"the audit lock is held by {exc.holder}"
        except Refused as exc:
            if isinstance(exc, Superseded) or who.identity != "signed" or not who.proven:
                return exc.message
            # The key could not sign (no agent, a hardware key not touched, ...): the rollback is recorded anyway,
            # as unidentified (SPEC section 6).
            warnings.append(f"{exc.message}; the rollback is recorded as unidentified")
            who = who.unidentified()
        except (IntegrityFailure, BadInput, OSError) as exc:
            space = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            if attempts == 1 and space and release_ballast(env.dir):
                continue
            return getattr(exc, "message", None) or f"{exc.__class__.__name__}: {exc}"


def _verify_after_rollback(env: Environment, actor: Actor, result: Result, verifier: Verifier,
                           values: dict[str, Any]) -> None:
    """The verification after a rollback: outside the lock, recorded if the log takes it."""
    report = run_verifier(verifier, env, values)
    summary = verification_summary(report)
    result.verification = report
    if [c["name"] for c in report.get("checks", [])] == ["verification"]:
        # The workspace could not run it (broken runbook or samples): nothing was checked, nothing failed.
        # The rollback stands; say so instead of reporting a failed check.
        result.warnings.append(f"{report['checks'][0]['detail']}; the rollback stands")
        return
    if result.audit_seq is not None:
        from ..files.locking import LockBusy

        def record(w) -> int:
            assert w.snapshot is not None
            return w.record(_entry(env, actor, w.snapshot.state, action=VERIFY, verification=summary,
                                   details={"trigger": "after-rollback", "afterSeq": result.audit_seq}))["seq"]

        if actor.recordable().identity == "unidentified":
            # Only a proven operator's verification is recorded: an unsigned entry may only ever engage the
            # kill-switch (SPEC section 7).
            result.warnings.append("the verification after the rollback is not recorded: the operator is not proven")
        else:
            try:
                result.audit_seq = env.transact(actor, record, timeout=ROLLBACK_LOCK_WAIT_S,
                                                what="recording the verification")
            except (LockBusy, IntegrityFailure, Refused, OSError):
                result.warnings.append("the verification after the rollback could not be recorded")
    if not summary["passed"]:
        result.ok = False
        result.exit_code = EXIT_VERIFICATION_FAILED
        result.message += f"; verification after rollback failed ({', '.join(summary['failed'])})"


def _under_accepted_policy(env: Environment, actor: Actor) -> Actor:
    """The actor judged by the roster and identity mode the log accepted, when the log's head can be read
    (an edited operators.yaml or slotgen.yaml must not change who a rollback is recorded as)."""
    from ..policy.pins import accepted_actor

    try:
        head = env.log.head()
    except Exception:  # noqa: BLE001 - a log or database that cannot be read: judged by the files, as claimed
        return actor
    state = head.get("state") if isinstance(head, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("policy"), dict):
        return actor
    return accepted_actor(state, actor)


def _lenient_decision_record(env: Environment, ref: str | None, warnings: list[str]) -> str | None:
    """A rollback records the decision record it is given, well-formed or not (never refused)."""
    from ..policy.config import DEFAULT_DR_PATTERN

    try:
        pattern = env.workspace.config.decisionRecordPattern
    except BadInput:
        pattern = DEFAULT_DR_PATTERN
    try:
        return check_decision_record(ref, pattern, required=False)
    except BadInput as exc:
        warnings.append(f"{exc.message}; recorded as given")
        return ref.strip() if ref else None


def _journal_quietly(env: Environment, actor: Actor, old: Any, reason: str, dr: str | None, problem: str,
                     details: dict[str, Any] | None = None):
    """Append a rollback to the break-glass journal; None if no journal could take it."""
    from .breakglass import BreakGlassJournal

    fields = journal_entry(env.name, actor, action=ROLLBACK, control=KILL_VAR, old=old, new="true", decisionRecord=dr,
                           reason=reason, details={**(details or {}), "breakGlass": True, "problem": problem})
    try:
        return BreakGlassJournal(env).append(fields)
    except (IntegrityFailure, BadInput, OSError, ValueError):  # BadInput: fields canonical JSON cannot hold
        return None
