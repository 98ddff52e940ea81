"""Output for humans and for machines, without the CLI framework (the fast `status` path imports only this).

JSON goes to stdout through json.dumps, never through Rich (it wraps at 80 columns when piped). Human output
goes to stdout through Rich, behind the output-safety gate (``safe``); warnings and errors go to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .safe import SafeConsole, escape, inert_json, visible

__all__ = ["InertJsonLines", "change_text", "console", "emit_json", "escape", "json_text", "visible", "warn"]


def json_text(doc: Any, **options: Any) -> str:
    """`doc` as JSON text, inert (SPEC section 14): C1 controls, bidi overrides and isolates and other
    invisible characters as \\u escapes, a URL's password hidden. The one way slotgen writes JSON for
    anyone to read (every --json, the JSON-lines export)."""
    return inert_json(json.dumps(doc, ensure_ascii=False, **options))


def emit_json(doc: Any) -> None:
    sys.stdout.write(json_text(doc, indent=2) + "\n")


class InertJsonLines:
    """A text stream that makes every JSON text written to it inert (``inert_json``) on its way to `out`:
    for a writer that produces JSON lines itself (the audit export's canonical lines, kept faithful:
    every entry decodes to what was recorded, so its hash still verifies)."""

    def __init__(self, out: Any) -> None:
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(inert_json(text, passwords=True))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


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
