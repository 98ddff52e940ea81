"""`slotgen guard`: judge the growing window every interval and roll back on a fail (SPEC section 12).

One line per round (`--json`: one JSON object per line). It writes nothing
while the fleet is healthy or the data too thin: no entry per round. On a
fail it rolls back at once through the ordinary rollback (kill-switch first,
recorded after), with a reason naming the check and its detail and the
judgement kept in the entry as evidence, then exits 1. SIGINT and SIGTERM
stop it between rounds (or in its wait) with exit 0. `--once`: one round,
exit 0 pass, 1 fail (rolled back), 3 inconclusive.
"""

from __future__ import annotations

import signal
import time
from typing import Annotated, Any

import typer

from ..errors import EXIT_OK, EXIT_REFUSED, EXIT_VERIFICATION_FAILED
from .common import JsonOpt, WorkspaceOpt
from .options import KeyOpt, OperatorOpt, RequiredEnvOpt

__all__ = ["guard", "register"]


def _line(judgement: dict[str, Any]) -> str:
    off = [f"{c['name']} {c['outcome']}" for c in judgement["checks"] if c["outcome"] not in ("pass", "not-applicable")]
    return (f"{judgement['window']['to']} {judgement['outcome']}: {judgement['events']} events from "
            f"{len(judgement['hosts'])} host(s)" + (f"; {', '.join(off)}" if off else ""))


#: Which failed check a rollback's reason names first: exposure is proof of jobs on the AI path they should
#: not be on; the others follow by how directly they show harm.
SEVERITY = ("observed-exposure", "observed-controls", "observed-errors", "observed-latency", "observed-share",
            "observed-schema")


def _reason(judgement: dict[str, Any]) -> str:
    failed = sorted((c for c in judgement["checks"] if c["outcome"] == "fail"), key=lambda c: SEVERITY.index(c["name"]))
    also = f" (also failed: {', '.join(c['name'] for c in failed[1:])})" if len(failed) > 1 else ""
    return f"guard: {failed[0]['name']} failed: {failed[0]['detail']}"[:900] + also


def guard(
    env: RequiredEnvOpt = ...,
    interval: Annotated[float, typer.Option("--interval", min=0.5, max=3600.0, help="Seconds between rounds.")] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="Judge once (exit 0 pass, 1 fail and rolled back, 3 inconclusive).")] = False,
    operator: OperatorOpt = None,
    key: KeyOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line, per round.")] = False,
) -> int:
    """Watch the hosts' telemetry and engage the kill-switch when a check fails.

    Each round judges the window since the environment's last change, as
    'verify --observed' does. A fail rolls back at once (the reason names the
    check; the entry keeps the evidence) and stops the guard with exit 1.

    Example: slotgen guard --env production --interval 10 --operator oncall
    """
    from ..changes.rollback import rollback
    from ..policy.authority import Actor, resolve_actor
    from ..verification.observe import evidence, telemetry_directory
    from ..workspace import Workspace
    from .common import console, escape, warn
    from .observed_cmd import judge
    from .output import json_text

    environment = Workspace.locate(workspace).environment(env)
    telemetry_directory(environment)  # off or not from files: one line, exit 2, before any round
    ws = environment.workspace
    actor = (resolve_actor(ws.roster, operator, key, identity=ws.config.identity, base=ws.root)
             if operator or key else Actor(claimed=None, operator=None))
    stopped: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, _frame: stopped.append(signum))
    out = console()
    while not stopped:
        judgement = judge(environment)
        if json_out:
            print(json_text(judgement), flush=True)
        else:
            out.print(escape(_line(judgement)), soft_wrap=True)
            out.file.flush()
        if judgement["outcome"] == "fail":
            reason = _reason(judgement)
            result = rollback(environment, actor=actor, reason=reason, decision_record=None,
                              dry_run=False, verifier=None, evidence=evidence(judgement))
            for warning in result.warnings:
                warn(warning)
            done = result.rollback or {}
            message = (f"guard rolled back {env}: {reason}; kill-switch engaged "
                       f"({done.get('written')}), audit seq {done.get('auditSeq')}")
            if json_out:
                print(json_text({"rolledBack": True, "reason": reason, "auditSeq": done.get("auditSeq"),
                                 "engagedMs": done.get("engagedMs")}), flush=True)
            else:
                out.print(escape(message), soft_wrap=True)
            return EXIT_VERIFICATION_FAILED
        if once:
            return EXIT_OK if judgement["outcome"] == "pass" else EXIT_REFUSED
        deadline = time.monotonic() + interval
        while not stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.1, left))
    return EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("guard")(guard)
