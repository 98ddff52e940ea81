"""The one gate between recorded text and a terminal (SPEC section 11).

Anything an operator, a file or a log can put into a string (an operator id,
a reason, a decision record, a file name) reaches the terminal only through
``visible``: control characters (C0, DEL, C1), bidirectional overrides and
invisible format characters are shown as escapes (``\\x1b``, ``\\u202e``), so
no recorded text can move the cursor, clear a line, open a hyperlink, change
the title, or reorder what is shown around it. ``escape`` adds Rich markup
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

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["DANGEROUS", "SafeConsole", "escape", "visible"]

#: C0 controls, DEL, C1 controls; the Unicode bidi embeddings/overrides/isolates and marks; zero-width and
#: other invisible format characters; line/paragraph separators; the BOM; interlinear annotation; tag characters.
_OTHERS = ("\x7f-\x9f\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164"
           "\ufeff\ufff9-\ufffb\U000e0000-\U000e007f")
DANGEROUS = re.compile(f"[\x00-\x1f{_OTHERS}]")
# The same without "\n": a multi-line text of our own (a table Rich laid out) keeps its line breaks.
_DANGEROUS_INLINE = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: Any, keep_newlines: bool = False) -> str:
    """``text`` (any value: str() of it) with every dangerous character shown as an escape.

    ``keep_newlines`` keeps ``\\n`` (for multi-line text that is ours); otherwise the result is one line.
    """
    value = text if isinstance(text, str) else str(text)
    pattern = _DANGEROUS_INLINE if keep_newlines else DANGEROUS
    if pattern.search(value) is None:
        return value
    return pattern.sub(_shown, value)


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
