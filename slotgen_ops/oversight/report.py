"""What `status` and `audit verify` report. Reads only; never prints.

`status` costs the same for 10 or 100,000 audit entries: it reads the log's
tail and trusts the head the controls file records (the full chain is
`audit verify`'s job).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..contract import KILL_VAR, Controls, describe_controls, kill_switch_engaged
from ..errors import BadInput, IntegrityFailure
from ..audit.canonical import entry_hash
from ..clock import utc_display
from ..changes.environment import Environment
from ..runbook.guidance import describe_next
from ..runbook.judge import soak_ready_at
from ..runbook.runbook import STEP_ORDER
from ..policy.samples import load_sample_jobs, shadow_exposure
from ..changes.chain import chain_report, replay_checker, verify_log  # noqa: F401 - chain_report is part of this module's API

_RECENT = 5


def recent_entries(env: Environment, count: int = _RECENT) -> list[dict[str, Any]]:
    """The last `count` complete entries, read from the end of the file (or the database)."""
    recent = getattr(env.log, "recent", None)
    if recent is not None:
        return recent(count)
    path = env.log.path
    try:
        with os.fdopen(env.log._open(os.O_RDONLY), "rb") as fh:  # a regular file only: never waits on a FIFO
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            chunk = 16384
            while True:
                start = max(0, size - chunk)
                fh.seek(start)
                data = fh.read(size - start)
                lines = data.split(b"\n")
                if start > 0:
                    lines = lines[1:]  # possibly partial
                complete = [ln for ln in lines if ln.strip()]
                if len(complete) > count or start == 0:
                    break
                chunk *= 4
    except OSError:  # missing, a directory, unreadable: status reports the log's problem elsewhere
        return []
    out = []
    for line in complete[-count:]:
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def sample_shadow(env: Environment, controls: dict[str, Any]) -> dict[str, Any] | None:
    """Shadow exposure over the runbook's sample jobs (decide only, no calls); None if unreadable."""
    from ..runtime.allowlist_file import load_allowlist

    try:
        jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    except BadInput:
        return None
    allowlist = load_allowlist(Controls.from_mapping(controls).allowlist_path, env.workspace.root)
    return {**shadow_exposure(jobs, controls, allowlist), "samples": len(jobs)}


def status_report(env: Environment) -> tuple[dict[str, Any], bool]:
    """The status document (SPEC section 5) and whether the audit integrity holds."""
    from ..changes.breakglass import BreakGlassJournal

    warnings: list[str] = []
    remedy = None
    try:
        snap = _settle(env, warnings)
        state, head, valid, problem = snap.state, snap.head, True, None
        controls = snap.controls.values  # what the service reads
        if snap.pending is not None:
            warnings.append(f"audit entry seq {snap.pending['seq']} is recorded but its controls were not written "
                            "(interrupted); the next change records a rollback and engages the kill-switch")
        if snap.engaged_outside:
            warnings.append("the kill-switch is engaged in the controls file but that rollback is not in the audit "
                            "log yet; the next change records it")
    except IntegrityFailure as exc:
        valid, problem = False, exc.message
        remedy = getattr(exc, "remedy", None)
        try:
            head = env.log.head() if env.log.exists() else None
            state = head.get("state") if head and entry_hash(head) == head.get("hash") else None
        except (IntegrityFailure, ValueError):
            head, state = None, None
        warnings.append(f"audit integrity: {problem}")
        controls = env.controls.lenient().values
        if env.backend != "files" and controls and not kill_switch_engaged(controls.get(KILL_VAR)):
            # A row is not an authority (SPEC section 14): every host `render`s this environment with the
            # kill-switch engaged while the log and the row disagree; show what the runtime reads, say the row.
            warnings.append(f"the controls row says {KILL_VAR}={controls.get(KILL_VAR)!r}, but it is not what the "
                            "verified log leads to: every 'slotgen render' host writes the kill-switch engaged "
                            "(fail closed) until this is resolved")
            controls = {**controls, KILL_VAR: "true"}
    meaning = describe_controls(Controls.from_mapping(controls)) if controls else {}
    if state is not None and valid:
        nxt = describe_next(env, state)
        done = list(STEP_ORDER) if nxt["step"] is None else list(STEP_ORDER[: STEP_ORDER.index(nxt["step"])])
        if nxt["blockedBy"]:
            warnings.append(nxt["blockedBy"])
        ready = soak_ready_at(state, env.workspace.runbook, env.name)
        approvals = state.get("approvals", {})
    elif remedy:
        nxt = {"step": None, "summary": f"none: changes are refused until the controls agree with the audit log: "
               f"{remedy} (rollback still works)", "commands": [remedy]}
        done, ready, approvals = [], None, {}
    else:
        nxt = {"step": None, "summary": "none: changes are refused until the audit log and controls agree; "
               f"'slotgen audit verify --env {env.name}' names the first bad entry (rollback still works)",
               "commands": [f"slotgen audit verify --env {env.name}"]}
        done, ready, approvals = [], None, {}
    if controls and not kill_switch_engaged(controls.get(KILL_VAR)):
        warnings.append("the kill-switch is OFF: admitted jobs take the OpenAI path")
    from ..policy.pins import describe, drift, remedy as policy_remedy

    accepted = state.get("policy") if state else None
    policy_drift = drift(accepted, env.workspace.root) if isinstance(accepted, dict) else []
    if policy_drift:
        warnings.append(f"policy files differ from what was accepted: {describe(policy_drift)}; changes are refused "
                        f"until then: {policy_remedy(policy_drift, env.name)}")
    identity = ((accepted or {}).get("identity") if isinstance(accepted, dict) else None) or "signed"
    from ..policy.pins import accepted_roster

    roster = accepted_roster(state) if state else None
    for fp, ids in (roster.shared_keys() if roster is not None else {}).items():
        warnings.append(f"key {fp} is listed for {', '.join(ids)}: it proves only that one of them acted, and an "
                        "approval it signs cannot be used by any of them")
    if identity == "declared":
        warnings.append("identity: declared: this environment's entries only claim who acted, nobody's key proves "
                        "it (slotgen.yaml opts out of signing; 'identity: signed' turns it back on)")
    journal = BreakGlassJournal(env)
    folded = set(state.get("breakGlassFolded") or []) if state else set()
    glass = [{"log": str(path), "seq": e.get("seq"), "ts": e.get("ts"), "operator": e.get("operator"),
              "reason": e.get("reason"), "problem": (e.get("details") or {}).get("problem"),
              "folded": e.get("hash") in folded} for path, e in journal.entries()]
    for path, what in journal.unsafe():
        warnings.append(f"{path} is {what}, not a regular file: not read as a break-glass journal (remove it; "
                        "a rollback keeps its journal in your state directory meanwhile)")
    unfolded = [g for g in glass if not g["folded"]]
    if unfolded:
        warnings.append(f"{len(unfolded)} break-glass rollback(s) not yet in the audit log (latest: "
                        f"{unfolded[-1]['ts']} by {unfolded[-1]['operator'] or 'unidentified'}); "
                        f"'slotgen audit repair --env {env.name}' folds them in")
    doc = {
        "env": env.name,
        "controls": controls,
        "meaning": meaning,
        "steps": {"done": done, "next": nxt["step"]},
        "next": nxt,
        "audit": {"entries": int(head["seq"]) if head else 0, "valid": valid, "head": head.get("hash") if head else None,
                  "problem": problem},
        "shadowExposure": sample_shadow(env, controls) if controls else None,
        "lastChanges": [_brief(e) for e in recent_entries(env)],
        "approvals": approvals,
        "soakReadyAt": utc_display(ready) if ready else None,
        "verificationPassing": state.get("verificationPassing") if state else None,
        "breakGlass": glass,
        "identity": identity,
        "policy": {"accepted": accepted.get("digest") if isinstance(accepted, dict) else None,
                   "drift": policy_drift},
        "warnings": warnings,
    }
    return doc, valid


def _settle(env: Environment, warnings: list[str]):
    """The snapshot; an interrupted change found here is closed fail closed at once (and said)."""
    from ..policy.authority import Actor, resolve_actor
    from ..changes.settling import _settled, needs_settling
    from ..files.locking import LockBusy

    snap, needed = needs_settling(env)  # also checks the whole log (SPEC section 9)
    if env.backend == "files":  # a temp file of a writer or rollback that was killed (SIGKILL) goes too
        from ..files.atomic import clean_stale_temps

        try:
            clean_stale_temps(env.controls.folder)
        except OSError:
            pass  # a read-only directory, say: the next writer tries again
    if not needed:
        return snap
    try:
        try:
            actor = resolve_actor(env.workspace.roster, None)
        except BadInput:
            actor = Actor(None, None)
        snap, notes = _settled(env, actor.unidentified() if actor.operator is None else actor, dry_run=False,
                               timeout=2.0)
        warnings.extend(notes)
    except LockBusy as exc:
        warnings.append(f"could not close what was found now: the lock is held by {exc.holder}; the next change will")
    except (IntegrityFailure, OSError) as exc:
        warnings.append(f"could not close the interrupted change here ({exc}); the next change will")
    return snap


def _brief(entry: dict[str, Any]) -> dict[str, Any]:
    verification = entry.get("verification") or {}
    return {"seq": entry.get("seq"), "ts": entry.get("ts"), "operator": entry.get("operator"),
            "action": entry.get("action"), "step": entry.get("step"), "control": entry.get("control"),
            "old": entry.get("old"), "new": entry.get("new"), "decisionRecord": entry.get("decisionRecord"),
            "passed": verification.get("passed") if verification else None, "reason": entry.get("reason")}


def audit_verify(env: Environment, checkpoints: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The full check: hash chain, environment, anchor, that every `state` replays and every signature
    proves its operator; with `checkpoints` ((name, text) pairs), that the log extends each (SPEC section 9)."""
    anchor = None
    problems: list[str] = []
    remedy = None
    try:
        found = env.controls.read()
        anchor = (found.head_seq, found.head_hash)
    except IntegrityFailure as exc:
        failure = env.controls_unreadable(exc)
        problems.append(failure.message)
        remedy = getattr(failure, "remedy", None)
    try:
        report = verify_log(env, anchor)  # held to this machine's memory of the head too (SPEC 14, no rewind)
    except IntegrityFailure as exc:  # the log cannot be read at all (a directory, say): still a report
        from ..audit.review import VerifyReport

        report = VerifyReport(valid=False, entries=0, first_bad=exc.first_bad, reason=exc.message)
    first_bad, reason = report.first_bad, report.reason
    if report.valid and not problems:
        try:  # the chain holds; do the controls say what its head says?
            env.snapshot()
        except IntegrityFailure as exc:
            problems.append(exc.message)
            remedy = getattr(exc, "remedy", None)
    from ..changes.breakglass import BreakGlassJournal

    journal = BreakGlassJournal(env)
    glass = journal.verify()
    for item in glass:
        if not item["valid"]:
            problems.append(f"break-glass journal {item['path']} fails at seq {item['firstBad']}: {item['reason']}")
    valid = report.valid and not problems
    if reason is None and problems:
        reason = problems[0]
    # Folded entries are named by hash in the log (details.breakGlassHash). A text search of the log
    # counts them even when the log fails verification.
    pending = {str(e.get("hash")).encode() for _, e in journal.entries()}
    if pending and env.log.exists():
        try:
            for line in env.log.lines():
                pending = {h for h in pending if h not in line}
                if not pending:
                    break
        except (OSError, IntegrityFailure):
            pass
    unfolded = len(pending)
    doc = {"env": env.name, "valid": valid, "entries": report.entries, "firstBad": first_bad, "reason": reason,
           "remedy": remedy if report.valid else None,  # the command that puts the controls right, if any
           "breakGlass": {"journals": glass, "unfolded": unfolded}}
    if checkpoints is not None:
        from .checkpoints import check_checkpoint

        doc["checkpoints"] = [check_checkpoint(env, name, text) for name, text in checkpoints]
        failed = next((c for c in doc["checkpoints"] if not (c["consistent"] and c["signed"])), None)
        if failed is not None and doc["valid"]:
            # A checkpoint commits to its whole prefix but not to where a rewrite began: the first entry.
            doc.update(valid=False, firstBad=1, reason=f"checkpoint {failed['file']}: {failed['reason']}")
    return doc
