"""Output for humans and for machines, without the CLI framework (the fast `status` path imports only this).

JSON goes to stdout through json.dumps, never through Rich (it wraps at 80 columns when piped). Human output
goes to stdout through Rich, behind the output-safety gate (``safe``); warnings and errors go to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .safe import SafeConsole, escape, visible

__all__ = ["change_text", "console", "emit_json", "escape", "visible", "warn"]


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {visible(message)}\n")


def console(stderr: bool = False):  # -> rich.console.Console
    """Rich output for humans, through the one output-safety gate (``safe.SafeConsole``)."""
    return SafeConsole(stderr=stderr, highlight=False, soft_wrap=False)


def change_text(control: str | None, old: object, new: object) -> str:
    """'CONTROL: old -> new' for humans: an unset value is '(unset)', never Python's None."""
    if not control:
        return ""
    def shown(value: object) -> str:
        return "(unset)" if value is None or value == "" else str(value)

    return f"{control}: {shown(old)} -> {shown(new)}"
