"""Options shared by the commands that change state, and the confirmation prompt."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import Refused
from .safe import visible

OperatorOpt = Annotated[str | None, typer.Option("--operator", help="Operator id from operators.yaml (else $SLOTGEN_OPERATOR).")]
#: A key file is a few KiB at most; anything far larger is not a key.
MAX_KEY_FILE = 1024 * 1024


def check_key_file(path: str, where: str) -> None:
    """BadInput (exit 2) for a key path that names something other than a regular file of at most
    ``MAX_KEY_FILE`` bytes (/dev/zero, a FIFO, a directory, a huge file): reading it would never end or
    never start. Opened non-blocking and judged on the open descriptor. A path that does not exist here is
    left to the signer (it may be relative to the workspace, and says so in its own words)."""
    import os
    import stat

    from ..errors import BadInput

    try:
        fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:
        raise BadInput(f"{where} {path}: is a directory, not a key file") from None
    except OSError:
        return  # missing or unreadable: the signer says which, in one line
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a character device" if stat.S_ISCHR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        raise BadInput(f"{where} {path}: is {kind}, not a key file")
    if st.st_size > MAX_KEY_FILE:
        raise BadInput(f"{where} {path}: {st.st_size} bytes, far larger than any key file")


def _key_option(ctx: typer.Context, value: str | None) -> str | None:
    """--key (else $SLOTGEN_SIGNING_KEY) checked before anything reads it. Never for a rollback: it engages
    the kill-switch whatever its key (SPEC section 6)."""
    import os

    if ctx.info_name == "rollback" or ctx.resilient_parsing:
        return value
    path = value if value else os.environ.get("SLOTGEN_SIGNING_KEY")
    if path:
        check_key_file(path, "--key" if value else "SLOTGEN_SIGNING_KEY")
    return value


KeyOpt = Annotated[str | None, typer.Option(
    "--key", metavar="FILE", show_default=False, callback=_key_option,
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
        sys.stderr.write(confirm_text(preview))
        question = ("Record this approval?" if preview.approval else
                    f"Apply {'step ' + preview.step if preview.step else 'this change'} to {preview.env}?")
        if not typer.confirm(visible(question), default=False, err=True):
            raise Refused("declined at the prompt; nothing changed")
        return True

    return confirm


def verifier_with_progress(json_out: bool):
    """The real verification, with a progress bar on a terminal."""

    def verify(env, controls):
        from ..verification.samples import run_verification

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


def confirm_text(preview) -> str:
    """What the prompt shows: what is approved or applied, what it means, and the exposure it reaches."""
    from ..contract import KILL_VAR, Controls, describe_controls

    def shown(value) -> str:
        return "(unset)" if value is None or value == "" else visible(value)

    meaning_before = describe_controls(Controls.from_mapping({preview.control: preview.old})).get(preview.control)
    meaning_after = describe_controls(Controls.from_mapping({preview.control: preview.new})).get(preview.control)
    if preview.approval:
        ttl = f"; single-use, valid {preview.ttl_hours:g} h" if preview.ttl_hours else ""
        head = (f"APPROVAL in {visible(preview.env)}: you approve {preview.control}={shown(preview.new)} "
                f"(now {shown(preview.old)}) for whoever applies it next with 'slotgen set --approval'{ttl}")
    else:
        what = f"step {visible(preview.step)}" if preview.step else "change"
        head = f"{what} in {visible(preview.env)}: {preview.control}: {shown(preview.old)} -> {shown(preview.new)}"
    lines = [head]
    if meaning_before is not None and meaning_after is not None:
        lines += [f"  before: {meaning_before}", f"  after:  {meaning_after}"]
    exposure = preview.exposure
    if exposure is not None:
        before, after, samples = exposure["before"], exposure["after"], exposure["samples"]
        lines.append(f"  exposure: {after} of {samples} sample jobs take the OpenAI path (now {before})")
        if preview.control == KILL_VAR and after > before:
            lines.append(f"  THIS IS THE STEP THAT EXPOSES JOBS: {after - before} more sample job(s) "
                         "will now reach the OpenAI path")
    return "\n".join(lines) + "\n"
