"""The one gate between recorded text and a terminal (SPEC section 11).

Anything an operator, a file or a log can put into a string (an operator id,
a reason, a decision record, a file name) reaches the terminal only through
``visible`` (``slotgen_ops.inert``): control characters (C0, DEL, C1),
bidirectional overrides and invisible format characters are shown as escapes
(``\\x1b``, ``\\u202e``), so no recorded text can move the cursor, clear a
line, open a hyperlink, change the title, or reorder what is shown around it;
and a URL's password is shown as ``***``. ``escape`` adds Rich markup
escaping for text printed through Rich.

Two layers use it:

- every place that formats recorded text for humans calls ``escape`` (Rich)
  or ``visible`` (plain stderr lines); widths are computed on the escaped
  text, so tables stay aligned;
- ``SafeConsole`` (what ``common.console()`` returns) passes every plain
  text segment through ``visible`` once more as it is written, so a string
  that reached Rich without ``escape`` still cannot carry an escape sequence.
  Rich's own styling (colour, bold) is emitted as separate control-free
  style codes and is not touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..inert import DANGEROUS, hide_passwords, inert_json, visible

__all__ = ["DANGEROUS", "SafeConsole", "escape", "hide_passwords", "inert_json", "visible"]


def escape(text: Any) -> str:
    """Recorded text made safe to print through Rich: dangerous characters escaped, then Rich markup escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(visible(text))


def _console_class():
    from rich.console import Console
    from rich.segment import Segment

    class _SafeConsole(Console):
        """A Rich console whose written text never carries a control character it did not put there itself."""

        def _render_buffer(self, buffer: Iterable[Segment]) -> str:
            cleaned = (
                Segment(visible(text, keep_newlines=True), style, control) if control is None else segment
                for segment in buffer
                for text, style, control in (segment,)
            )
            return super()._render_buffer(cleaned)

        def on_broken_pipe(self) -> None:
            """The reader left (`| head`): Rich would exit 1 here; the CLI's boundary exits 0 quietly instead."""
            self.quiet = True
            raise BrokenPipeError

    return _SafeConsole


_CLASS: Any = None


def SafeConsole(**options: Any):  # noqa: N802 - a class, built lazily so `rich` loads only when output is drawn
    """A ``rich.console.Console`` (same options) whose plain text segments pass through ``visible``."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _console_class()
    return _CLASS(**options)
