"""`slotgen audit`: the group, and its sub-commands that review the audit log: show, verify, export.

`checkpoint` and `repair` are in `audit_upkeep`, `report` in `audit_report`; the options and value checks
they share in `audit_args`, the table `show` prints in `audit_table`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_INTEGRITY, BadInput
from .audit_args import (ControlOpt, DecisionRecordFilterOpt, checked_action, checked_control, open_environment,
                         parse_time)
from .audit_table import print_paged, show_rows
from .audit_upkeep import checkpoint_cmd, repair
from .common import JsonOpt, WorkspaceOpt, console, emit_json, escape, visible
from .output import InertJsonLines
from .options import RequiredEnvOpt

audit_app = typer.Typer(help="Review, verify, export and repair an environment's audit log.", no_args_is_help=True)


def show(
    env: RequiredEnvOpt = ...,
    operator: Annotated[str | None, typer.Option("--operator", help="Only changes this operator applied or approved.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (set, rollback, refused, init, config-accept, audit-repair; approve/verify: changes that used an approval / carry a verification).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only changes at or after this time (ISO 8601, UTC) or this long ago (30m, 1h, 2d).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only changes before this time (ISO 8601, UTC) or this long ago (30m, 1h, 2d).")] = None,
    control: ControlOpt = None,
    decision_record: DecisionRecordFilterOpt = None,
    refusals: Annotated[bool, typer.Option("--refusals", help="Also list refused attempts (hidden by default; --json always has them, flagged).")] = False,
    no_pager: Annotated[bool, typer.Option("--no-pager", help="Never page the output (it is paged only on a terminal, when longer than the screen).")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """The audit log as an approver reads it: one row per change, with who applied it (and the key that
    signed it), who approved it (approval id), its decision record and what its verification showed.
    Break-glass rollbacks are in the same timeline; refusals are hidden unless --refusals.

    Example: slotgen audit show --env production --control SLOTGEN_AI_ROLLOUT_PERCENT --since 2d
    """
    from ..audit import timeline
    from ..audit.log import filter_entries
    from .audit_input import break_glass_items

    action = checked_action(action)
    control = checked_control(control)
    lo, hi = parse_time(since, "--since"), parse_time(until, "--until")
    environment = open_environment(workspace, env)
    every = list(environment.log.entries())
    model = timeline.build(every, break_glass_items(environment))
    rows = timeline.select(model["changes"], operator=operator, action=action, since=lo, until=hi, control=control,
                           decision_record=decision_record)
    entries = [e for e in filter_entries(every, operator=operator, action=action, since=lo, until=hi)
               if timeline.entry_matches(e, control, decision_record)]
    glass = [g for g in _break_glass(environment, operator, action, since, until)
             if timeline.entry_matches(g["entry"], control, decision_record)]
    if json_out:
        emit_json({"env": env, "entries": entries, "changes": rows, "breakGlass": glass,
                   "approvals": model["approvals"]})
        return 0
    shown = [r for r in rows if refusals or not r["refused"]]
    hidden = len(rows) - len(shown)
    used = {a["id"] for a in model["approvals"] if a["usedBy"] is not None}
    unused = [e for e in entries if e.get("action") == "approve" and e.get("approvalId") not in used]
    print_paged(lambda out: show_rows(out, env, shown, hidden, unused), no_pager)
    return 0


def _break_glass(environment, operator, action, since, until) -> list[dict]:
    """The break-glass journal's entries under the same filters, each marked folded or not."""
    from ..audit.log import filter_entries
    from .audit_input import break_glass_items

    items = break_glass_items(environment)
    if not items:
        return []
    kept = {id(e) for e in filter_entries((item["entry"] for item in items), operator=operator, action=action,
                                          since=parse_time(since, "--since"), until=parse_time(until, "--until"))}
    return [item for item in items if id(item["entry"]) in kept]


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
    from ..oversight.checkpoints import read_checkpoint
    from ..oversight.report import audit_verify

    given = [read_checkpoint(path) for path in checkpoint] if checkpoint else None
    doc = audit_verify(open_environment(workspace, env), given)
    if json_out:
        emit_json(doc)
    else:
        out = console()
        if doc["valid"]:
            out.print(f"[green]valid[/]: {doc['entries']} entries, chain, signatures and controls agree")
        else:
            at = f"first bad entry seq {doc['firstBad']}: " if doc["firstBad"] is not None else ""
            out.print(f"[bold red]INVALID[/]: {at}{escape(str(doc['reason']))}")
        for item in doc.get("checkpoints") or []:
            verdict = "extends" if item["consistent"] and item["signed"] else "DOES NOT extend"
            who = f", signed by {item['signer']}" if item["signer"] else ""
            out.print(f"  checkpoint {escape(item['file'])} ({item['size']} entries{escape(who)}): the log {verdict} it"
                      + (f" ({escape(str(item['reason']))})" if item["reason"] else ""), soft_wrap=True)
    if not doc["valid"]:
        where = f" at seq {doc['firstBad']}" if doc["firstBad"] is not None else ""
        sys.stderr.write(f"error: audit log of {env} failed verification{where}: {visible(doc['reason'])}\n")
        return EXIT_INTEGRITY
    return 0


def export(
    env: RequiredEnvOpt = ...,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    operator: Annotated[str | None, typer.Option("--operator", help="Only entries by this operator.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only entries at or after this time (ISO 8601, UTC) or this long ago (30m, 1h, 2d).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only entries before this time (ISO 8601, UTC) or this long ago (30m, 1h, 2d).")] = None,
    control: ControlOpt = None,
    decision_record: DecisionRecordFilterOpt = None,
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
    from ..audit.timeline import entry_matches

    action = checked_action(action)
    control = checked_control(control)
    environment = open_environment(workspace, env)
    target = checked_output(output, environment.workspace.root, force) if output is not None else None
    entries = (e for e in filter_entries(environment.log.entries(), operator=operator, action=action,
                                         since=parse_time(since, "--since"), until=parse_time(until, "--until"))
               if entry_matches(e, control, decision_record))
    if fmt == "jsonl":  # inert JSON lines: C1 controls and bidi overrides as \\u escapes, the same entries
        def writer(out, items):
            return environment.log.export_jsonl(InertJsonLines(out), items)
    elif target is None and sys.stdout.isatty():  # a CSV on a terminal is shown as human output is
        def writer(out, items):
            return environment.log.export_csv(out, (_shown_entry(e) for e in items))
    else:  # a true CSV for a spreadsheet (formulas neutralised by the writer)
        writer = environment.log.export_csv
    if target is None:
        writer(sys.stdout, entries)
        return 0
    try:
        count = write_output(target, lambda out: writer(out, entries))
    except OSError as exc:
        raise BadInput(f"--output {output}: cannot write it ({exc.strerror})") from None
    sys.stderr.write(f"exported {count} entries to {visible(target)}\n")
    return 0


def _shown_entry(value):
    """An entry with every text in it (at any depth) as the terminal shows it: control characters, escape
    sequences and bidi overrides escaped (``visible``)."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(k): _shown_entry(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown_entry(v) for v in value]
    return value


# Registered here, in one place, in the order `slotgen audit --help` lists them.
audit_app.command("show")(show)
audit_app.command("verify")(verify)
audit_app.command("checkpoint")(checkpoint_cmd)
audit_app.command("export")(export)
audit_app.command("repair")(repair)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    from . import audit_report

    audit_report.register(audit_app)
