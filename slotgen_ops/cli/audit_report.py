"""`slotgen audit report`: the audit log as one self-contained HTML page for approvers (SPEC section 11)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_INTEGRITY, BadInput, IntegrityFailure
from .common import JsonOpt, WorkspaceOpt, emit_json, visible
from .options import RequiredEnvOpt


def _readable(environment) -> tuple[list[dict], str | None]:
    """Every entry that can be read, and what stopped the reading (None: the whole log)."""
    entries: list[dict] = []
    try:
        for entry in environment.log.entries():
            entries.append(entry)
    except IntegrityFailure as exc:
        return entries, exc.message
    return entries, None


def report(
    env: RequiredEnvOpt = ...,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE.html", show_default=False,
                                         help="The page to write (never a workspace file).")] = ...,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", metavar="FILE", show_default=False,
        help="A checkpoint from 'slotgen audit checkpoint': the page also says whether the log extends it "
             "(repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output file (never a workspace file).")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Write one HTML page for approvers: integrity status, exposure over time as a chart (kill-switch,
    rollout percent, allowlist, every change and rollback marked), and every change with its operator,
    signer key, approver, decision record and verification outcome. The page loads nothing from anywhere.
    Exit 4 (the page still written, saying so) when the log fails verification.

    Example: slotgen audit report --env production --output production-audit.html
    """
    from .. import __version__
    from ..audit import report_html, timeline
    from ..oversight.checkpoints import read_checkpoint
    from ..clock import now_utc, utc
    from ..oversight.report import audit_verify
    from ..workspace import Workspace
    from .audit_input import break_glass_items
    from .common import checked_output, write_output

    environment = Workspace.locate(workspace).environment(env)
    target = checked_output(output, environment.workspace.root, force)
    given = [read_checkpoint(path) for path in checkpoint] if checkpoint else None
    integrity = audit_verify(environment, given)
    entries, unreadable = _readable(environment)
    model = timeline.build(entries, break_glass_items(environment))
    page = report_html.render(env, model, integrity, generated=utc(now_utc()), version=__version__,
                              unreadable=unreadable)
    try:
        write_output(target, lambda out: out.write(page))
    except OSError as exc:
        raise BadInput(f"--output {output}: cannot write it ({exc.strerror})") from None
    valid = bool(integrity["valid"]) and unreadable is None
    changes = sum(1 for row in model["changes"] if not row["refused"])
    if json_out:
        emit_json({"ok": valid, "env": env, "output": str(target), "changes": changes, "valid": valid})
    else:
        sys.stderr.write(f"wrote the audit report of {visible(env)} ({changes} changes) to {visible(target)}\n")
    if not valid:
        sys.stderr.write(f"error: audit log of {visible(env)} failed verification at seq {integrity['firstBad']}: "
                         f"{visible(integrity['reason'] or unreadable)}; the report says so\n")
        return EXIT_INTEGRITY
    return 0


def register(audit_app: typer.Typer) -> None:
    audit_app.command("report")(report)
