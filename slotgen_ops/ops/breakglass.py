"""Rollback when the environment fails verification (break-glass).

The controls file is forced to kill-switch on before anything else, keeping
its other values as found, and read back. The act is recorded in a separate
log (`<env>.breakglass.jsonl`, its own hash chain), because the main audit log
is the thing under doubt. The environment stays refused for changes until an
operator restores agreement; rollback keeps working.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Any

from ..contract import CONTROL_VARS, KILL_VAR, kill_switch_engaged
from ..errors import EXIT_OK, EXIT_VERIFICATION_FAILED, IntegrityFailure
from .atomic import atomic_write
from .audit import AuditLog
from .environment import parse_controls, render_controls
from .state import ROLLBACK, SAFE_CONTROLS

_LOCK_WAIT_S = 5.0


def break_glass_rollback(env, actor, reason: str, decision_record: str | None, problem: str, dry_run: bool,
                         verifier, start: float):
    from .changes import Result, run_verifier, verification_summary

    values, seq, digest = _controls_as_found(env)
    old = values.get(KILL_VAR)
    if dry_run:
        return Result(ok=True, change={"control": KILL_VAR, "old": old, "new": "true"}, dry_run=True,
                      message=f"dry-run: break-glass: would force SLOTGEN_AI_KILL=true ({problem}); nothing written")
    values[KILL_VAR] = "true"
    lock_fd = _try_lock(env.log.lock_path)
    try:
        atomic_write(env.controls_path, render_controls(env.name, values, seq, digest))
        back = parse_controls(env.controls_path)
        engaged = kill_switch_engaged(back.values[KILL_VAR])
        engaged_ms = round((time.perf_counter() - start) * 1000, 3)
        log = AuditLog(env.controls_path.with_name(f"{env.name}.breakglass.jsonl"))
        with log.locked():
            entry = log.append({"env": env.name, **actor.audit_fields(), "action": ROLLBACK, "control": KILL_VAR,
                                "old": old, "new": "true", "decisionRecord": decision_record, "reason": reason,
                                "step": None, "verification": None, "approvalId": None,
                                "details": {"breakGlass": True, "problem": problem, "lockHeld": lock_fd is not None}})
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    info = {"auditSeq": None, "breakGlassSeq": entry["seq"], "breakGlassLog": str(log.path), "engaged": engaged,
            "old": old, "new": "true", "engagedMs": engaged_ms, "reason": reason, "breakGlass": True,
            "problem": problem, "totalMs": round((time.perf_counter() - start) * 1000, 3)}
    result = Result(ok=engaged, change={"control": KILL_VAR, "old": old, "new": "true"}, rollback=info,
                    message=f"break-glass: kill-switch engaged and read back in {engaged_ms:.0f} ms despite: {problem}; "
                    f"recorded in {log.path.name} seq {entry['seq']}",
                    extra={"breakGlass": True})
    if verifier is not None:
        report = run_verifier(verifier, env, back.values)
        result.verification = report
        if not verification_summary(report)["passed"]:
            result.ok = False
    result.exit_code = EXIT_OK if result.ok else EXIT_VERIFICATION_FAILED
    return result


def _controls_as_found(env) -> tuple[dict[str, Any], int, str]:
    """The controls file read leniently: whatever can be read, safe defaults for the rest."""
    try:
        found = parse_controls(env.controls_path)
        return dict(found.values), found.head_seq, found.head_hash
    except IntegrityFailure:
        pass
    values: dict[str, Any] = dict(SAFE_CONTROLS)
    try:
        for line in env.controls_path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key in CONTROL_VARS:
                values[key] = value or None
    except OSError:
        pass
    return values, 0, "0" * 64


def _try_lock(path) -> int | None:
    """The audit lock if it comes within a few seconds; break-glass does not wait on a hung holder."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)
