"""`slotgen audit checkpoint|repair`: the audit commands that write: a signed checkpoint of the log, and
the repair of a torn last line or of controls that disagree with the log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInput
from .audit_args import open_environment
from .common import JsonOpt, WorkspaceOpt, console, emit_json, escape
from .options import KeyOpt, OperatorOpt, RequiredEnvOpt


def checkpoint_cmd(
    env: RequiredEnvOpt = ...,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    operator: OperatorOpt = None,
    key: KeyOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output file (never a workspace file).")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Write a signed checkpoint of the audit log (C2SP tlog-checkpoint: origin, size, Merkle root, then an
    SSH signature). Keep it outside the workspace; 'audit verify --checkpoint FILE' later proves the log
    only grew since.

    Example: slotgen audit checkpoint --env production --operator approver --output ~/checkpoints/production-today
    """
    from ..policy.authority import resolve_actor
    from ..oversight.checkpoints import make_checkpoint

    environment = open_environment(workspace, env)
    ws = environment.workspace
    actor = resolve_actor(ws.roster, operator, key, identity=ws.config.identity, base=ws.root)
    from .common import checked_output, write_output

    if output is not None:
        checked_output(output, ws.root, force)  # before anything is signed
    done = make_checkpoint(environment, actor)
    if output is not None:
        try:
            write_output(output, lambda out: out.write(done["text"]))
        except OSError as exc:
            raise BadInput(f"--output {output}: cannot write it ({exc.strerror})") from None
    if json_out:
        emit_json({"ok": True, "env": env, "size": done["size"], "signer": done["signer"],
                   "fingerprint": done["fingerprint"], "output": str(output) if output else None,
                   "checkpoint": done["text"], "signedNote": done.get("note", False),
                   "verifierKey": done.get("vkey")})
    elif output is None:
        sys.stdout.write(done["text"])
    if output is not None or json_out:
        sys.stderr.write(f"checkpoint of {env} at {done['size']} entries, signed by {done['signer']} "
                         f"({done['fingerprint']})" + (f", written to {output}" if output else "") + "\n")
    return 0


def repair(env: RequiredEnvOpt = ..., operator: OperatorOpt = None, key: KeyOpt = None,
           workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> int:
    """Cut off a torn last line, and restore controls that disagree with a verified log
    (always with the kill-switch engaged); each repair is recorded.

    Example: slotgen audit repair --env staging --operator owner
    """
    from ..changes.repair import repair_log

    done = repair_log(open_environment(workspace, env), operator, key)
    cut, restored, folded = done["cut"], done["restored"], list(done.get("folded") or [])
    if json_out:
        emit_json({"ok": True, "repaired": bool(cut or restored or folded), "folded": folded,
                   "cut": {"auditSeq": cut["seq"], "details": cut.get("details")} if cut else None,
                   "restored": {"auditSeq": restored["seq"], "controls": restored["state"]["controls"]} if restored else None,
                   "auditSeq": (restored or cut or {}).get("seq")})
        return 0
    out = console()
    if cut:
        out.print(f"cut a torn last line of {cut['details']['cutBytes']} bytes (recorded as seq {cut['seq']})")
    if restored:
        out.print(f"controls restored from the audit log with the kill-switch engaged (recorded as seq {restored['seq']}); "
                  f"next: slotgen next --env {env}")
    for note in folded:
        out.print(escape(str(note)), soft_wrap=True)
    if not (cut or restored or folded):
        out.print("nothing to repair: the log's last line is complete and the controls agree with it")
    return 0
