"""The `slotgen` command: the root group and the one error boundary.

Every failure leaves as one line on stderr and an exit code (SPEC section 5):
0 ok, 1 verification failed (rolled back), 2 bad usage or input, 3 refused by
policy, 4 integrity failure. Commands return their exit code.

Heavy libraries (openai, jsonschema, rich tables) are imported inside the
commands that need them, so `slotgen --help`, `decide`, `status` and
`rollback` start fast.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException, UsageError

    class NoArgsIsHelpError(UsageError):  # type: ignore[no-redef]
        """Never raised by plain click."""

from ..errors import EXIT_BAD_INPUT, SlotgenError


from .boundary import fail as _fail, interrupted as _interrupted, reader_gone as _reader_gone, unexpected as _unexpected
from .boundary import keep_interrupts, wait_notice as _wait_notice


class SlotgenGroup(TyperGroup):
    """A Typer group whose every error is one line on stderr with its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # before click's own handler, which exits 1
            _reader_gone(sys.argv[1:])

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name or "slotgen", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except SlotgenError as exc:
            _fail(str(exc), exc.exit_code)
        except NoArgsIsHelpError as exc:  # `slotgen audit` alone: show the help, as asked
            sys.stdout.write(exc.ctx.get_help() + "\n" if exc.ctx is not None else "")
            sys.exit(EXIT_BAD_INPUT)
        except UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            from .early import EARLY

            if EARLY is not None and EARLY.get("engaged"):
                hint += ("; the kill-switch WAS engaged (SLOTGEN_AI_KILL=true) before the command line was read: "
                         "the next slotgen command records it")
            _fail(" ".join(exc.format_message().split()) + hint, EXIT_BAD_INPUT)
        except ClickException as exc:
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        except typer.Abort:
            _fail("aborted, nothing changed", EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            _interrupted()
        except BrokenPipeError:
            _reader_gone(sys.argv[1:])
        except Exception as exc:  # never a traceback for an operator
            _unexpected(exc)
        if rv == 130:  # typer turns KeyboardInterrupt (SIGINT, and our SIGTERM/SIGHUP) into a silent Exit(130)
            _interrupted()
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _reader_gone(sys.argv[1:])
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=SlotgenGroup,
    name="slotgen",
    help="Switch on the AI path of slot generation in Beta, one verified, recorded step at a time.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,  # an API key may be in scope
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("slotgen-ops")
        except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
            number = "unknown (not installed)"
        sys.stdout.write(f"slotgen {number}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print slotgen's version and exit."),
) -> None:
    """Switch on the AI path of slot generation in Beta, one verified, recorded step at a time."""


def _register() -> None:
    from . import (audit, change, decide, demo, endpoint, exposure, init_cmd, plan, render_cmd, state, status,
                   traffic_cmd, guard_cmd)

    for module in (init_cmd, status, change, decide, exposure, plan, audit, render_cmd, state, demo, endpoint,
                   traffic_cmd, guard_cmd):
        module.register(app)


_register()


#: What an option's value is, shown in --help instead of a Python type ("<str>", "<list[str]>").
_METAVARS = {
    "--env": "ENV", "--decision-record": "REF", "--approval": "ID", "--expect": "VALUE", "--operator": "ID",
    "--workspace": "DIR", "--reason": "TEXT", "--output": "FILE", "--format": "jsonl|csv", "--since": "TIME",
    "--until": "TIME", "--with": "KEY=VALUE", "--action": "ACTION", "--state": "URL", "--to": "URL",
    "--jobs": "FILE", "--control": "CONTROL", "--checkpoint": "FILE", "--port": "PORT", "--host": "HOST",
    "--mode": "MODE", "--key": "FILE", "--install-completion": "", "--show-completion": "",
}


def tidy_help(command: Any) -> Any:
    """Help that shows what a value is, not Python's type: flags take no placeholder (--yes, not
    --yes <bool>), options name their value (--env ENV), arguments show their own metavar only."""
    from typer.core import TyperArgument, TyperOption

    for param in getattr(command, "params", []):
        if isinstance(param, TyperOption):
            if param.is_flag or param.count:
                param.metavar = ""
            elif param.metavar is None:
                long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
                param.metavar = _METAVARS.get(long, long.lstrip("-").upper())
        elif isinstance(param, TyperArgument):
            param.display_type_rich = lambda ctx: None  # the name column already says KEY=VALUE / JOB_FILE
    original = command.get_help_option

    def help_option(ctx: Any, original: Any = original) -> Any:
        option = original(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)
    return command


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(early: dict[str, Any] | None = None) -> None:
    """The CLI (`entry.main` engages a rollback's kill-switch first, then calls this).

    SIGTERM and SIGHUP (a dropped SSH session) behave like SIGINT: an
    interrupted command stops where it is, and a change is either committed
    whole or not at all (the critical section defers these signals).
    """
    from . import early as early_state

    early_state.EARLY = early
    keep_interrupts()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    from ..files.locking import set_wait_notice

    set_wait_notice(_wait_notice)
    try:
        command = tidy_help(typer.main.get_command(app))
    except KeyboardInterrupt:
        _fail("interrupted (SIGINT, SIGTERM or SIGHUP) before the command started; nothing changed", 130)
    command.main(prog_name="slotgen")
