"""`slotgen audit show|verify|export|repair`: review and prove the audit log."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_INTEGRITY, BadInput, SlotgenError
from .common import JsonOpt, WorkspaceOpt, change_text, console, emit_json, escape, visible
from .options import KeyOpt, OperatorOpt, RequiredEnvOpt

audit_app = typer.Typer(help="Review, verify, export and repair an environment's audit log.", no_args_is_help=True)


def _environment(workspace, env):
    from ..ops.workspace import Workspace

    return Workspace.locate(workspace).environment(env)


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time (UTC when no offset is given), or a duration back from now: 30m, 1h, 2d, 1w."""
    from datetime import timedelta, timezone
    import re

    if value is None:
        return None
    match = re.fullmatch(r"\s*([0-9]+)\s*([smhdw])\s*", value)
    if match:
        return datetime.now(timezone.utc) - timedelta(seconds=int(match.group(1)) * _DURATION[match.group(2)])
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{name} {value!r}: expected an ISO 8601 time (2026-11-22T13:00:00Z) or a duration back "
                       "from now (30m, 1h, 2d, 1w)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def _action(value: str | None) -> str | None:
    """--action checked against the actions the log records: a typo is exit 2, never an empty table."""
    from ..ops.state import ACTIONS

    if value is None or value in ACTIONS:
        return value
    import difflib

    near = difflib.get_close_matches(value, ACTIONS, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise BadInput(f"--action {value!r} is not an action{hint}; one of: {', '.join(ACTIONS)}")


@audit_app.command("show")
def show(
    env: RequiredEnvOpt = ...,
    operator: Annotated[str | None, typer.Option("--operator", help="Only entries by this operator.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (set, approve, verify, rollback, refused, init, audit-repair).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only entries at or after this time (ISO 8601, UTC) or this long ago (30m, 1h, 2d).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only entries before this time (ISO 8601, UTC) or this long ago (30m, 1h, 2d).")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Show audit entries, filtered by operator, action and time.

    Example: slotgen audit show --env production --action rollback --since 2d
    """
    from ..audit.log import filter_entries

    action = _action(action)
    environment = _environment(workspace, env)
    entries = filter_entries(environment.log.entries(), operator=operator, action=action,
                             since=_time(since, "--since"), until=_time(until, "--until"))
    glass = _break_glass(environment, operator, action, since, until)
    if json_out:
        emit_json({"env": env, "entries": list(entries), "breakGlass": glass})
        return 0
    from rich.table import Table

    table = Table(title=f"audit log of {env}", show_edge=False, pad_edge=False)
    for column in ("seq", "ts (UTC)", "operator", "action", "step", "change", "record", "verification", "reason"):
        table.add_column(column, overflow="fold")
    for e in entries:
        change = change_text(e.get("control"), e.get("old"), e.get("new"))
        verification = e.get("verification") or {}
        verdict = ("pass" if verification.get("passed") else "FAIL") if verification else ""
        table.add_row(str(e.get("seq")), str(e.get("ts", ""))[:19], escape(str(e.get("operator") or "(none)")),
                      str(e.get("action")), str(e.get("step") or ""), escape(change),
                      escape(str(e.get("decisionRecord") or "")), verdict, escape(str(e.get("reason") or "")))
    console().print(table)
    if glass:
        extra = Table(title="break-glass journal (rollbacks the audit log could not take)", show_edge=False,
                      pad_edge=False)
        for column in ("seq", "ts (UTC)", "operator", "change", "in the audit log", "reason", "problem"):
            extra.add_column(column, overflow="fold")
        for g in glass:
            e = g["entry"]
            extra.add_row(str(e.get("seq")), str(e.get("ts", ""))[:19], escape(str(e.get("operator") or "(none)")),
                          escape(change_text(e.get("control"), e.get("old"), e.get("new"))),
                          "folded" if g["folded"] else "NOT YET", escape(str(e.get("reason") or "")),
                          escape(str((e.get("details") or {}).get("problem") or "")))
        console().print(extra)
    return 0


def _break_glass(environment, operator, action, since, until) -> list[dict]:
    """The break-glass journal's entries under the same filters, each marked folded or not."""
    from ..audit.log import filter_entries
    from ..ops.breakglass import BreakGlassJournal

    journal = BreakGlassJournal(environment)
    found = journal.entries()
    if not found:
        return []
    try:
        head = environment.log.head()
        folded = set((head or {}).get("state", {}).get("breakGlassFolded") or [])
    except SlotgenError:
        folded = set()
    by_hash = {id(e): str(p) for p, e in found}
    kept = filter_entries((e for _, e in found), operator=operator, action=action,
                          since=_time(since, "--since"), until=_time(until, "--until"))
    return [{"journal": by_hash.get(id(e)), "folded": e.get("hash") in folded, "entry": e} for e in kept]


@audit_app.command("verify")
def verify(
    env: RequiredEnvOpt = ...,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", metavar="FILE", show_default=False,
        help="A checkpoint from 'slotgen audit checkpoint': also prove the log extends it (repeatable).")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Check the whole hash chain, every signature, and agreement with the controls; names the first bad
    entry (exit 4). With --checkpoint, also prove the log is an append-only extension of each checkpoint.

    Example: slotgen audit verify --env production --checkpoint ~/checkpoints/production-2026-11-20
    """
    from ..ops.checkpoints import read_checkpoint
    from ..ops.report import audit_verify

    given = [read_checkpoint(path) for path in checkpoint] if checkpoint else None
    doc = audit_verify(_environment(workspace, env), given)
    if json_out:
        emit_json(doc)
    else:
        out = console()
        if doc["valid"]:
            out.print(f"[green]valid[/]: {doc['entries']} entries, chain, signatures and controls agree")
        else:
            out.print(f"[bold red]INVALID[/]: first bad entry seq {doc['firstBad']}: {escape(str(doc['reason']))}")
        for item in doc.get("checkpoints") or []:
            verdict = "extends" if item["consistent"] and item["signed"] else "DOES NOT extend"
            who = f", signed by {item['signer']}" if item["signer"] else ""
            out.print(f"  checkpoint {escape(item['file'])} ({item['size']} entries{escape(who)}): the log {verdict} it"
                      + (f" ({escape(str(item['reason']))})" if item["reason"] else ""), soft_wrap=True)
    if not doc["valid"]:
        sys.stderr.write(f"error: audit log of {env} failed verification at seq {doc['firstBad']}: {visible(doc['reason'])}\n")
        return EXIT_INTEGRITY
    return 0


@audit_app.command("checkpoint")
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
    from ..ops.authority import resolve_actor
    from ..ops.checkpoints import make_checkpoint

    environment = _environment(workspace, env)
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
                   "checkpoint": done["text"]})
    elif output is None:
        sys.stdout.write(done["text"])
    if output is not None or json_out:
        sys.stderr.write(f"checkpoint of {env} at {done['size']} entries, signed by {done['signer']} "
                         f"({done['fingerprint']})" + (f", written to {output}" if output else "") + "\n")
    return 0


@audit_app.command("export")
def export(
    env: RequiredEnvOpt = ...,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    operator: Annotated[str | None, typer.Option("--operator", help="Only entries by this operator.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only entries at or after this time (ISO 8601, UTC) or this long ago (30m, 1h, 2d).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only entries before this time (ISO 8601, UTC) or this long ago (30m, 1h, 2d).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output file (never a workspace file).")] = False,
    workspace: WorkspaceOpt = None,
) -> int:
    """Export audit entries as JSON lines or CSV (cells a spreadsheet would run as formulas are neutralised).

    Example: slotgen audit export --env production --format csv --output audit.csv
    """
    from ..audit.log import filter_entries
    from .common import checked_output, write_output

    if fmt not in ("jsonl", "csv"):
        raise BadInput(f"--format {fmt!r}: expected jsonl or csv")
    action = _action(action)
    environment = _environment(workspace, env)
    target = checked_output(output, environment.workspace.root, force) if output is not None else None
    entries = filter_entries(environment.log.entries(), operator=operator, action=action,
                             since=_time(since, "--since"), until=_time(until, "--until"))
    writer = environment.log.export_jsonl if fmt == "jsonl" else environment.log.export_csv
    if target is None:
        writer(sys.stdout, entries)
        return 0
    count = write_output(target, lambda out: writer(out, entries))
    sys.stderr.write(f"exported {count} entries to {visible(target)}\n")
    return 0


@audit_app.command("repair")
def repair(env: RequiredEnvOpt = ..., operator: OperatorOpt = None, key: KeyOpt = None,
           workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> int:
    """Cut off a torn last line, and restore controls that disagree with a verified log
    (always with the kill-switch engaged); each repair is recorded.

    Example: slotgen audit repair --env staging --operator owner
    """
    from ..ops.repair import repair_log

    done = repair_log(_environment(workspace, env), operator, key)
    cut, restored = done["cut"], done["restored"]
    if json_out:
        emit_json({"ok": True, "repaired": bool(cut or restored),
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
    if not (cut or restored):
        out.print("nothing to repair: the log's last line is complete and the controls agree with it")
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
