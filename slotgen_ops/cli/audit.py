"""`slotgen audit show|verify|export|repair`: review and prove the audit log."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_INTEGRITY, BadInput
from .common import JsonOpt, WorkspaceOpt, change_text, console, emit_json, escape, visible
from .output import InertJsonLines
from .options import KeyOpt, OperatorOpt, RequiredEnvOpt

audit_app = typer.Typer(help="Review, verify, export and repair an environment's audit log.", no_args_is_help=True)


def _environment(workspace, env):
    from ..workspace import Workspace

    return Workspace.locate(workspace).environment(env)


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time (UTC when no offset is given), or a duration back from now: 30m, 1h, 2d, 1w."""
    from datetime import timedelta
    import re

    from ..clock import now_utc, parse_utc

    if value is None:
        return None
    match = re.fullmatch(r"\s*([0-9]+)\s*([smhdw])\s*", value)
    if match:
        try:
            return now_utc() - timedelta(seconds=int(match.group(1)) * _DURATION[match.group(2)])
        except (OverflowError, ValueError):  # before year 1, or more days than a timedelta holds
            raise BadInput(f"{name} {value!r}: a duration that reaches back before the year 1; "
                           "give a shorter one (30m, 1h, 2d, 1w) or a time") from None
    try:
        return parse_utc(value.strip())
    except ValueError:
        raise BadInput(f"{name} {value!r}: expected an ISO 8601 time (2026-11-22T13:00:00Z) or a duration back "
                       "from now (30m, 1h, 2d, 1w)") from None


def _action(value: str | None) -> str | None:
    """--action checked against the actions the log records: a typo is exit 2, never an empty table."""
    from ..runbook.state import ACTIONS

    if value is None or value in ACTIONS:
        return value
    import difflib

    near = difflib.get_close_matches(value, ACTIONS, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise BadInput(f"--action {value!r} is not an action{hint}; one of: {', '.join(ACTIONS)}")


def _control(value: str | None) -> str | None:
    """--control checked against the control names (and `policy`): a typo is exit 2, never an empty table."""
    from ..audit.timeline import CONTROL_NAMES

    if value is None or value in CONTROL_NAMES:
        return value
    import difflib

    near = difflib.get_close_matches(value.upper(), CONTROL_NAMES, n=1, cutoff=0.6)
    if not near:
        near = [name for name in CONTROL_NAMES if value.strip() and value.strip().lower() in name.lower()][:1]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise BadInput(f"--control {value!r} is not a control{hint}; one of: {', '.join(CONTROL_NAMES)}")


ControlOpt = Annotated[str | None, typer.Option(
    "--control", help="Only changes of this control (SLOTGEN_AI_KILL, FEATURE_SLOTGEN_AI, "
    "SLOTGEN_AI_ROLLOUT_PERCENT, SLOTGEN_AI_ALLOWLIST_PATH, or policy).")]
DecisionRecordFilterOpt = Annotated[str | None, typer.Option(
    "--decision-record", metavar="REF", help="Only changes made under this decision record (exact).")]


@audit_app.command("show")
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

    action = _action(action)
    control = _control(control)
    lo, hi = _time(since, "--since"), _time(until, "--until")
    environment = _environment(workspace, env)
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
    _print_paged(lambda out: _show_rows(out, env, shown, hidden, unused), no_pager)
    return 0


def _print_paged(draw, no_pager: bool) -> None:
    """Draw once; on a terminal, through the pager when it is longer than the screen (never when piped)."""
    out = console()
    if not no_pager and sys.stdout.isatty():
        with out.capture() as captured:
            draw(out)
        if captured.get().count("\n") > out.height:
            import os

            os.environ.setdefault("LESS", "-R")  # less shows the table's styles instead of their escape codes
            with out.pager(styles=True):
                draw(out)
            return
    draw(out)


def _key(fingerprint: str | None) -> str:
    """A signer key as an approver compares it at a glance: the first 12 characters of its SHA256 fingerprint."""
    if not fingerprint:
        return ""
    body = fingerprint.split(":", 1)[1] if fingerprint.startswith("SHA256:") else fingerprint
    return f"key {escape(body[:12])}"


def _value(value: str | None, control: str | None) -> str:
    if value is None or value == "":
        return "(unset)"
    return value[:12] if control == "policy" and len(value) == 64 else value


def _what(row: dict) -> str:
    """The step column: what kind of change, marked when it was a rollback, a break-glass act or a refusal."""
    glass = row["breakGlass"]
    if glass:
        where = f"folded as seq {glass['foldedSeq']}" if glass["foldedSeq"] is not None else (
            "folded" if glass["folded"] else "NOT YET in the log")
        return f"[bold red]ROLLBACK[/] BREAK-GLASS, {where}"
    if row["refused"]:
        return "[bold]REFUSED[/]" if row["action"] == "refused" else "[bold]SUPERSEDED[/]"
    if row["rollback"]:
        trigger = row["trigger"] if row["trigger"] not in (None, "operator") else ""
        return f"[bold red]{'ROLLBACK' if row['action'] == 'rollback' else escape(row['action'])}[/]" + (
            f" {escape(trigger)}" if trigger else "")
    return escape(row["action"]) + (f" {escape(row['step'])}" if row["step"] else "")


def _change(row: dict) -> str:
    control = row["control"]
    if row["refused"]:
        asked = f"asked {control}: {_value(row['new'], control)}" if control else ""
        text = " ".join(part for part in (asked, f"refused: {row['refusal']}" if row["refusal"] else "") if part)
        return escape(text)
    parts = []
    if control:
        parts.append(f"{control}: {_value(row['old'], control)} -> {_value(row['new'], control)}")
    if row["reason"]:
        parts.append(f"reason: {row['reason']}")
    return escape("; ".join(parts))


def _applied_by(row: dict) -> str:
    by = row["appliedBy"]
    text = escape(by["operator"] or "(none)")
    if by["identity"] and by["identity"] != "signed":
        text += f" ({escape(by['identity'])})"
    key = _key(by["key"]) if by.get("signed") or by["identity"] == "signed" else ""
    return text + (f" {key}" if key else "")


def _approved_by(row: dict) -> str:
    approval = row["approval"]
    if not approval:
        return ""
    if approval.get("missing"):
        return f"{escape(approval['id'])} (no such approval in the log)"
    seq = f" (seq {approval['seq']})" if approval["seq"] is not None else ""
    key = _key(approval["approverKey"])
    return f"{escape(approval['approver'] or '(none)')} {escape(approval['id'])}{seq}" + (f" {key}" if key else "")


#: From this terminal width on, every part of a change has a column of its own; below it, related parts share one.
WIDE = 140


def _fit(headers: tuple[str, ...], rows: list[tuple[str, ...]], width: int, give_way: tuple[int, ...]) -> list[int]:
    """Column widths for `width` terminal columns: every column at least as wide as its longest word (so words
    wrap whole), the room left shared by how much more each column's longest line needs. When even the longest
    words do not fit, the columns in `give_way` narrow first, in that order, down to their header's longest word;
    then the widest (a word longer than its column is then broken at a separator: `_break_long`)."""
    from rich.text import Text

    columns = [[header, *(Text.from_markup(row[i]).plain for row in rows)] for i, header in enumerate(headers)]
    longest_word = [max((len(word) for cell in col for word in cell.split()), default=1) for col in columns]
    longest_line = [max((len(line) for cell in col for line in cell.splitlines() or [""]), default=1)
                    for col in columns]
    room = max(width - 3 * (len(headers) - 1), len(headers) * 3)  # " │ " between columns
    cap = max(room * 2 // 5, 27)  # a longer word (a file path, a URL) is broken rather than crowd the other columns
    widths = [min(word, cap) for word in longest_word]
    for i in give_way:
        floor = max(len(word) for word in headers[i].split())
        widths[i] -= max(min(sum(widths) - room, widths[i] - floor), 0)
    while sum(widths) > room and max(widths) > 3:
        widths[widths.index(max(widths))] -= 1
    spare = room - sum(widths)
    wants = [max(line - w, 0) for line, w in zip(longest_line, widths)]
    waiting = sorted((i for i, want in enumerate(wants) if want), key=lambda i: wants[i])
    while spare > 0 and waiting:  # the smallest needs are met in full, the rest share what is left evenly
        i = waiting.pop(0)
        extra = min(wants[i], spare // (len(waiting) + 1))
        widths[i] += extra
        spare -= extra
    return widths


_SEPARATORS = "/-_.?&=:,+"


def _break_long(cell: str, width: int):
    """A cell whose words all fit in `width`: a longer word (a path, a URL, a digest) is broken after a
    separator ('/', '-', '.', ...) where one fits, else at the width. Words that fit are never broken, and
    nothing is cut off."""
    import re

    from rich.text import Text

    text = Text.from_markup(cell)
    plain, offsets = text.plain, []
    for word in re.finditer(r"\S+", plain):
        pos, end = word.span()
        while end - pos > width:
            chunk = plain[pos:pos + width]
            cut = max(chunk.rfind(sep) for sep in _SEPARATORS) + 1
            pos += cut if cut > 0 else width
            offsets.append(pos)
    if not offsets:
        return text
    return Text("\n").join(text.divide(offsets))


def _show_rows(out, env: str, rows: list[dict], hidden: int, unused: list[dict]) -> None:
    from rich.table import Table

    from ..audit.timeline import verification_text

    wide = out.width >= WIDE
    headers = ("seq", "time (UTC)", *(("step", "change", "applied by", "approved by", "record", "verification")
                                      if wide else ("step / change", "applied by / approved by",
                                                    "record / verification")))
    body = []
    for row in rows:
        seq = "" if row["seq"] is None else str(row["seq"])
        from ..clock import readable_utc

        when = escape(readable_utc(row["ts"]))
        what, change, applied, approved = _what(row), _change(row), _applied_by(row), _approved_by(row)
        record, verified = escape(row["decisionRecord"] or ""), escape(verification_text(row))
        if wide:
            cells = (what, change, applied, approved, record, verified)
        else:
            cells = ("\n".join(p for p in (what, change) if p),
                     f"applied: {applied}" + (f"\napproved: {approved}" if approved else ""),
                     "\n".join(p for p in (record, verified) if p))
        body.append((row, (seq, when, *cells)))
    give_way = (6, 7, 5, 4) if wide else (4, 3)  # decision record and verification first, the change itself last
    widths = _fit(headers, [cells for _, cells in body], out.width, give_way)
    table = Table(title=f"changes to {escape(env)}", show_edge=False, pad_edge=False, leading=1)
    for index, (header, width) in enumerate(zip(headers, widths)):
        table.add_column(header, width=width, overflow="fold", no_wrap=index == 0,
                         justify="right" if index == 0 else "left")
    for row, cells in body:
        table.add_row(*(_break_long(cell, width) for cell, width in zip(cells, widths)),
                      style="dim" if row["refused"] else None)
    if rows:
        out.print(table)
    else:
        out.print(f"no changes to {escape(env)} match")
    if hidden:
        out.print(f"{hidden} refused attempt{'s' if hidden != 1 else ''} hidden; --refusals lists "
                  f"{'them' if hidden != 1 else 'it'}")
    for entry in unused:
        out.print(f"approval {escape(entry.get('approvalId'))} by {escape(entry.get('operator') or '(none)')} "
                  f"(seq {entry.get('seq')}, {escape(change_text(entry.get('control'), entry.get('old'), entry.get('new')))}) "
                  "was not used by any change")


def _break_glass(environment, operator, action, since, until) -> list[dict]:
    """The break-glass journal's entries under the same filters, each marked folded or not."""
    from ..audit.log import filter_entries
    from .audit_input import break_glass_items

    items = break_glass_items(environment)
    if not items:
        return []
    kept = {id(e) for e in filter_entries((item["entry"] for item in items), operator=operator, action=action,
                                          since=_time(since, "--since"), until=_time(until, "--until"))}
    return [item for item in items if id(item["entry"]) in kept]


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
    from ..oversight.checkpoints import read_checkpoint
    from ..oversight.report import audit_verify

    given = [read_checkpoint(path) for path in checkpoint] if checkpoint else None
    doc = audit_verify(_environment(workspace, env), given)
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
    from ..policy.authority import resolve_actor
    from ..oversight.checkpoints import make_checkpoint

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
                   "checkpoint": done["text"], "signedNote": done.get("note", False),
                   "verifierKey": done.get("vkey")})
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

    action = _action(action)
    control = _control(control)
    environment = _environment(workspace, env)
    target = checked_output(output, environment.workspace.root, force) if output is not None else None
    entries = (e for e in filter_entries(environment.log.entries(), operator=operator, action=action,
                                         since=_time(since, "--since"), until=_time(until, "--until"))
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


@audit_app.command("repair")
def repair(env: RequiredEnvOpt = ..., operator: OperatorOpt = None, key: KeyOpt = None,
           workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> int:
    """Cut off a torn last line, and restore controls that disagree with a verified log
    (always with the kill-switch engaged); each repair is recorded.

    Example: slotgen audit repair --env staging --operator owner
    """
    from ..changes.repair import repair_log

    done = repair_log(_environment(workspace, env), operator, key)
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


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    from . import audit_report

    audit_report.register(audit_app)
