"""`slotgen status` and `slotgen next` without the CLI framework: what they show, for Typer and for the
entry point's fast path (the command an operator runs most starts without typer or its parameter coercion)."""

from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_INTEGRITY
from .output import change_text, console, emit_json, escape


def _environment(workspace, env):
    from ..workspace import Workspace

    return Workspace.locate(workspace).environment(env)


def run_status(env: str | None, workspace: Path | None, json_out: bool) -> int:
    """`slotgen status`: one environment in full, or (no --env) a line for each."""
    from ..oversight.report import status_report

    if env is None:
        return _summary(workspace, json_out)
    environment = _environment(workspace, env)
    doc, valid = status_report(environment)
    if json_out:
        emit_json(doc)
    else:
        _render_status(doc, _identities(environment, doc))
    return 0 if valid else EXIT_INTEGRITY


def _identities(environment, doc: dict) -> dict:
    """How each of the last entries' operator is known (seq -> "signed", "declared", "unidentified"...):
    an operator a rollback only claimed must not read as a proven one."""
    if not doc.get("lastChanges"):
        return {}
    from ..oversight.report import recent_entries

    try:
        recent = recent_entries(environment)
    except Exception:  # noqa: BLE001 - the table then marks nothing; status reports the log's problem elsewhere
        return {}
    found = {}
    for entry in recent:
        actor = entry.get("actor") if isinstance(entry, dict) else None
        if isinstance(actor, dict) and isinstance(entry.get("seq"), int):
            found[entry["seq"]] = actor.get("identity")
    return found


def operator_shown(operator, identity) -> str:
    """The operator column for humans: a name only claimed (a rollback by someone not proven, recorded
    `unidentified`) is marked as such, never shown as a bare operator name."""
    if not operator:
        return "(none)"
    return f"{operator}? (unidentified)" if identity == "unidentified" else str(operator)


def run_next(env: str, workspace: Path | None, json_out: bool) -> int:
    """`slotgen next`: the next allowed step and the exact command to run it."""
    from ..oversight.report import status_report

    doc, valid = status_report(_environment(workspace, env))
    nxt = dict(doc["next"])
    nxt["env"] = doc["env"]
    if json_out:
        emit_json(nxt)
    else:
        out = console()
        if nxt.get("step") is None:
            out.print(f"{doc['env']}: next is none - {escape(nxt['summary'])}")
        else:
            out.print(f"{doc['env']}: next is step {nxt['number']} ({nxt['step']}): {escape(nxt.get('title') or '')}")
            if nxt.get("position"):
                out.print(f"  ({escape(nxt['position'])})", soft_wrap=True)
            if nxt.get("blockedBy"):
                out.print(f"[yellow]not yet:[/] {escape(nxt['blockedBy'])}")
        for command in nxt.get("commands", []):
            out.print(f"  {escape(command)}", soft_wrap=True)
    return 0 if valid else EXIT_INTEGRITY


def _summary(workspace, json_out: bool) -> int:
    """Every environment of the workspace, a line each."""
    from ..oversight.report import status_report
    from ..workspace import Workspace

    ws = Workspace.locate(workspace)
    docs, all_valid = [], True
    for name in sorted(ws.config.environments):
        doc, valid = status_report(ws.environment(name))
        docs.append(doc)
        all_valid = all_valid and valid
    if json_out:
        emit_json({"environments": docs})
        return 0 if all_valid else EXIT_INTEGRITY
    out = console()
    for doc in docs:
        c = doc["controls"]
        from ..contract import kill_switch_engaged

        state = "kill-switch on" if kill_switch_engaged(c.get("SLOTGEN_AI_KILL")) else "[bold red]LIVE[/]"
        audit = "ok" if doc["audit"]["valid"] else "[bold red]INTEGRITY FAILED[/]"
        rollout = c.get("SLOTGEN_AI_ROLLOUT_PERCENT") or "0"
        out.print(f"[bold]{doc['env']}[/]: {state}, rollout {escape(str(rollout))}%, audit {doc['audit']['entries']} "
                  f"entries {audit}; next: {escape(doc['next']['summary'])}", soft_wrap=True)
        for warning in doc["warnings"]:
            out.print(f"  [yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    return 0 if all_valid else EXIT_INTEGRITY


def _render_status(doc: dict, identities: dict | None = None) -> None:
    from ..clock import readable_utc
    from rich.table import Table

    out = console()
    audit = doc["audit"]
    integrity = "[green]consistent[/]" if audit["valid"] else "[bold red]FAILED[/]"
    out.print(f"[bold]{doc['env']}[/]   audit: {audit['entries']} {'entry' if audit['entries'] == 1 else 'entries'}, {integrity}")
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("control", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("meaning", overflow="fold")
    for name, value in doc["controls"].items():
        table.add_row(name, "(unset)" if value is None else escape(str(value)), escape(doc["meaning"].get(name, "")))
    out.print(table)
    steps = doc["steps"]
    out.print(f"runbook: done {', '.join(steps['done']) or '(nothing yet)'}")
    out.print(f"next: {escape(doc['next']['summary'])}", soft_wrap=True)
    shadow = doc.get("shadowExposure")
    if shadow:
        out.print(f"shadow exposure: {shadow['count']} of {shadow['samples']} sample jobs would take the OpenAI path "
                  f"with the kill-switch off ({shadow['now']} now, {shadow['more']} more)")
    if doc["lastChanges"]:
        recent = Table(title="last entries", show_edge=False, pad_edge=False)
        for column in ("seq", "ts", "operator", "action", "step", "change", "record"):
            recent.add_column(column, overflow="fold", no_wrap=column in ("seq", "ts"))
        for e in doc["lastChanges"]:
            change = change_text(e.get("control"), e.get("old"), e.get("new"))
            recent.add_row(str(e["seq"]), readable_utc(e["ts"], minutes=True), escape(operator_shown(e["operator"], (identities or {}).get(e["seq"]))), e["action"] or "",
                           e["step"] or "", escape(change), escape(str(e["decisionRecord"] or "")))
        out.print(recent)
    for warning in doc["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning)}")
