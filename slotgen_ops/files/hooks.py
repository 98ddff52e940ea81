"""Named points in the write protocol where a test may crash or pause the process.

The installed CLI registers nothing, so `point()` does nothing there: no
option or environment variable can turn a hook on (SPEC section 6, "No switch
weakens safety"). Tests install one through `tests/faultwrap.py`, a launcher
that imports the package, calls `install()` and then runs the CLI.
"""

from __future__ import annotations

from collections.abc import Callable

_hook: Callable[[str], None] | None = None


def point(name: str) -> None:
    """Call the installed hook with this point's name (no-op when none is installed)."""
    if _hook is not None:
        _hook(name)


def install(hook: Callable[[str], None] | None) -> None:
    """Install (or with None remove) the one hook. Only tests call this."""
    global _hook
    _hook = hook
