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


def reader_gone() -> NoReturn:
    """stdout's reader left (`slotgen status | head -1`): exit 0 quietly, without Python failing to flush the
    rest at exit (which would print a warning and exit 1)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(0)


def wait_notice(message: str) -> None:
    sys.stderr.write(f"slotgen: {visible(message)}\n")
    sys.stderr.flush()
