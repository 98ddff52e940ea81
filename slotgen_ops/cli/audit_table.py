"""The table `slotgen audit show` prints: one row per change (step, change, applied by, approved by,
decision record, verification), its columns fitted to the terminal, and paged when longer than the screen."""

from __future__ import annotations

import sys

from .common import change_text, console, escape


def print_paged(draw, no_pager: bool) -> None:
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


def show_rows(out, env: str, rows: list[dict], hidden: int, unused: list[dict]) -> None:
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
