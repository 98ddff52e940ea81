"""Options shared by the commands that change state, and the confirmation prompt."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import Refused

OperatorOpt = Annotated[str | None, typer.Option("--operator", help="Operator id from operators.yaml (else $SLOTGEN_OPERATOR).")]
KeyOpt = Annotated[str | None, typer.Option(
    "--key", metavar="FILE", show_default=False,
    help="Your signing key (else $SLOTGEN_SIGNING_KEY): a private key file, or a public key whose private half "
         "is in ssh-agent, as 'ssh-keygen -Y sign -f' takes it.")]
DecisionRecordOpt = Annotated[str | None, typer.Option("--decision-record", help="Release decision record: DR-123 or an https URL.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Do every check and predict the outcome; write nothing.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Skip the confirmation (required with no terminal).")]
RequiredEnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment in the workspace (e.g. staging).", show_default=False)]


def make_confirm(yes: bool):
    """On a terminal, show before/after and its meaning and ask; with no terminal, only --yes proceeds."""

    def confirm(preview) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        from ..contract import Controls, describe_controls

        meaning_before = describe_controls(Controls.from_mapping({preview.control: preview.old}))[preview.control]
        meaning_after = describe_controls(Controls.from_mapping({preview.control: preview.new}))[preview.control]
        what = f"step {preview.step}" if preview.step else "approval"
        sys.stderr.write(
            f"{what} in {preview.env}:\n"
            f"  {preview.control}: {preview.old if preview.old is not None else '(unset)'} -> {preview.new}\n"
            f"  before: {meaning_before}\n  after:  {meaning_after}\n")
        if not typer.confirm("Apply this change?", default=False, err=True):
            raise Refused("declined at the prompt; nothing changed")
        return True

    return confirm


def verifier_with_progress(json_out: bool):
    """The real verification, with a progress bar on a terminal."""

    def verify(env, controls):
        from ..ops.verification import run_verification

        if json_out or not sys.stderr.isatty():
            return run_verification(env, controls)
        from rich.progress import Progress

        from .common import console

        with Progress(console=console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"verifying {env.name}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return run_verification(env, controls, progress=progress)

    return verify
