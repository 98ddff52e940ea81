"""The one error boundary's words: every failure leaves as one line on stderr and an exit code (SPEC section 5).

Shared by the Typer group (``app.SlotgenGroup``) and the entry point's fast path, and free of the CLI
framework so that the fast path does not import it.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from ..errors import EXIT_BAD_INPUT
from .safe import visible


def fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"error: {visible(message)}\n")
    sys.stderr.flush()
    sys.exit(code)


def interrupted() -> NoReturn:
    fail("interrupted (SIGINT, SIGTERM or SIGHUP); nothing half-applied: a change is either in the audit log "
         "and the controls whole, or not at all ('slotgen status' shows which)", 130)


def unexpected(exc: Exception) -> NoReturn:
    """An exception no command turned into a SlotgenError: one line, never a traceback (unless SLOTGEN_DEBUG)."""
    if os.environ.get("SLOTGEN_DEBUG"):
        raise exc
    if type(exc).__module__.startswith("psycopg"):  # the state database failed mid-command
        from ..errors import EXIT_INTEGRITY

        fail(f"state database: {' '.join(str(exc).split())[:300]}; a change is committed whole or not at "
             "all ('slotgen status' shows which; 'slotgen rollback' still works)", EXIT_INTEGRITY)
    fail(f"internal error: {exc.__class__.__name__}: {' '.join(str(exc).split())} "
         "(set SLOTGEN_DEBUG=1 for details)", EXIT_BAD_INPUT)


#: Commands that change nothing an environment holds: when their reader leaves early (`| head -1`) the
#: answer was simply not read in full, and they exit 0.
READ_ONLY = frozenset({"status", "next", "decide", "exposure", "plan", "audit show", "audit verify", "audit export",
                       "audit report", "audit checkpoint", "config status", "endpoint serve"})


def command_words(argv: list[str]) -> str:
    """`slotgen audit show --env E` -> "audit show" (the command and, for a group, its subcommand)."""
    words = [a for a in argv if not a.startswith("-")][:2]
    if words and words[0] not in ("audit", "config", "state", "endpoint"):
        words = words[:1]
    return " ".join(words)


def reader_gone(argv: list[str]) -> NoReturn:
    """stdout's reader left before the output was written (`slotgen status | head -1`).

    A read-only command (or help, or a dry run) exits 0 quietly: the answer was simply not read in full.
    Python is kept from failing to flush the rest at exit (a warning and exit 1, which would read as
    "verification failed"). Any other command may have stopped before or after its change was committed:
    exit 2 and say how to find out.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    command = command_words(argv)
    if command in READ_ONLY or any(a in ("--help", "-h", "--version", "--dry-run") for a in argv):
        sys.exit(0)
    try:
        fail(f"standard output was closed before 'slotgen {command}' finished; whether it changed anything: "
             "'slotgen status' (the audit log has every change made)", EXIT_BAD_INPUT)
    except BrokenPipeError:  # stderr went with it (2>&1 | head)
        os._exit(EXIT_BAD_INPUT)


def wait_notice(message: str) -> None:
    sys.stderr.write(f"slotgen: {visible(message)}\n")
    sys.stderr.flush()
