"""Human renderings (Rich). Text from files, jobs or models is escaped before printing."""

from __future__ import annotations

from typing import Any

from .safe import escape

from .common import console


def render_checks(report: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    table = Table(title="verification", show_edge=False, pad_edge=False)
    table.add_column("check", overflow="fold")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for check in report.get("checks", []):
        mark = "[green]pass[/]" if check["passed"] else "[bold red]FAIL[/]"
        table.add_row(check["name"], mark, escape(str(check["detail"])))
    out.print(table)
    if report.get("cause"):
        out.print(f"[bold red]cause[/] ({escape(str(report.get('causeKind') or 'unknown'))}): {escape(report['cause'])}",
                  soft_wrap=True)
    shadow = report.get("shadowExposure")
    if shadow:
        out.print(f"shadow exposure: {shadow.get('count')} sample job(s) would take the OpenAI path with the "
                  f"kill-switch off ({shadow.get('now')} now, {shadow.get('more')} more)")


def render_result(result) -> None:
    out = console()
    extra = getattr(result, "extra", None) or {}
    if "controlsFile" in extra:  # a rollback: what it engaged comes first (SPEC section 15)
        ws = extra.get("workspace")
        verb = "would engage" if result.dry_run else "engaged"
        out.print(f"rollback {verb}: {escape(str(extra['controlsFile']))}"
                  + (f" (workspace {escape(str(ws))})" if ws else " (no workspace)"), soft_wrap=True)
    if result.verification:
        render_checks(result.verification)
    change = result.change
    if change:
        old = change.get("old")
        line = f"{change['control']}: {'(unset)' if old is None else escape(str(old))} -> {escape(str(change['new']))}"
        if result.step:
            line = f"step {result.step}: " + line
        out.print(line)
    if result.approval_id:
        out.print(f"approval id: [bold]{result.approval_id}[/]  (use: slotgen set ... --approval {result.approval_id})")
    if result.rollback:
        rb = result.rollback
        out.print(f"[bold red]rollback[/]: kill-switch {'engaged and read back' if rb.get('engaged') else 'NOT CONFIRMED'} "
                  f"{rb.get('engagedMs')} ms after start; {escape(str(rb.get('reason')))}")
    status = "[green]ok[/]" if result.ok else "[bold red]failed[/]"
    seq = f" (audit seq {result.audit_seq})" if result.audit_seq is not None else ""
    out.print(f"{status}: {escape(result.message)}{seq}" if result.message else f"{status}{seq}")
