"""The one error boundary's words: every failure leaves as one line on stderr and an exit code (SPEC section 5).

Shared by the Typer group (``app.SlotgenGroup``) and the entry point's fast path, and free of the CLI
framework so that the fast path does not import it.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

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
    if isinstance(exc, OSError) and exc.strerror:  # a file that is not what was expected: bad input, said plainly
        where = f"{os.fsdecode(exc.filename)}: " if exc.filename is not None else ""
        fail(f"{where}{' '.join(str(exc.strerror).split())}", EXIT_BAD_INPUT)
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


def _unraisable(unraisable: Any) -> None:
    """An interrupt that landed where Python cannot raise it (a weakref callback inside an import, a __del__):
    Python would print "Exception ignored ... KeyboardInterrupt" with a traceback and carry on as if nothing
    happened. Deliver it again instead, as SIGINT to this process from a short-lived thread that blocks the stop
    signals itself, so that only the main thread takes it: it is raised at the next point Python can raise it
    (and, inside a critical section, once the section unblocks the signals), and ends as usual in one line and
    exit 130. Should it land in such a place again, this runs again."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        import signal
        import threading
        import time

        def again() -> None:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
            time.sleep(0.005)  # out of the callback first (were it still there, this hook runs again)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=again, name="slotgen-interrupt", daemon=True).start()
        return
    sys.__unraisablehook__(unraisable)


def keep_interrupts() -> None:
    """Install the hook above (every entry point, before the first signal may arrive)."""
    sys.unraisablehook = _unraisable


def wait_notice(message: str) -> None:
    sys.stderr.write(f"slotgen: {visible(message)}\n")
    sys.stderr.flush()
