"""Text made inert before it leaves slotgen (SPEC sections 11 and 14, "Output is inert").

Pure, standard library only, and below every layer that writes text for a person or a program: the CLI's
output gate (``cli.safe``) and the HTML report (``audit.report_html``) both use it, so there is one list of
dangerous characters and one way to show them.

- ``visible``: any text as a terminal may show it. Control characters (C0, DEL, C1), bidirectional
  embeddings, overrides, isolates and marks, and invisible format characters are shown as escapes
  (``\\x1b``, ``\\u202e``); the password of any URL in the text is shown as ``***``.
- ``inert_json``: a JSON text with the same characters as ``\\u`` escapes (and any URL password hidden,
  unless it is a faithful copy of recorded entries):
  still JSON, and it decodes to the same values, but a terminal, a pager or an editor that shows it raw
  is not steered by it.
- ``hide_passwords``: the password of every URL in a text, even a malformed one, replaced by ``***``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DANGEROUS", "JSON_UNSAFE", "hide_passwords", "inert_json", "visible"]

#: DEL, C1 controls; the Unicode bidi embeddings/overrides/isolates and marks (U+061C, U+200E/F, U+202A..E,
#: U+2066..9); zero-width and other invisible format characters; line/paragraph separators; the BOM;
#: interlinear annotation; tag characters.
_OTHERS = ("\x7f-\x9f\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164"
           "\ufeff\ufff9-\ufffb\U000e0000-\U000e007f")
DANGEROUS = re.compile(f"[\x00-\x1f{_OTHERS}]")
# The same without "\n": a multi-line text of our own (a table Rich laid out) keeps its line breaks.
_DANGEROUS_INLINE = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")
#: What a JSON text may still hold raw after json.dumps(ensure_ascii=False), which escapes C0 only.
JSON_UNSAFE = re.compile(f"[{_OTHERS}]")

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}

#: Where a word ends, for `hide_passwords`: white space, quotes, angle brackets, a backslash.
_WORD_BREAKS = re.compile(r"""([\s"'<>\\]+)""")
#: `password=...` in a query string or a libpq conninfo string (a quoted value at most 1 KiB, so that the
#: search stays linear however the text repeats it).
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('[^'\n]{0,1024}'|[^\s&;\"'<>\\]+)")
_HINT = re.compile(r"://|[Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]")


def _hide_in_word(word: str) -> str:
    """`word` (no white space) with the password of a URL in it hidden: after a `://`, the user information
    runs to the word's last '@'; when it holds a ':' before any '/', what follows that ':' is the password.
    A malformed URL too (better hide a character too many than show one). Linear in the word's length."""
    out, pos = [], 0
    while True:
        mark = word.find("://", pos)
        if mark < 0:
            break
        start = mark + 3
        at = word.rfind("@", start)
        if at < 0:
            break
        colon = word.find(":", start, at)
        if colon >= 0 and "/" not in word[start:colon]:
            out.append(word[pos:colon + 1] + "***")
            pos = at
        else:
            out.append(word[pos:at])
            pos = at
        if word.find("://", at) < 0:
            break
    out.append(word[pos:])
    return "".join(out)


def hide_passwords(text: str) -> str:
    """``text`` with the password of any URL in it (``scheme://user:PASSWORD@host``, ``?password=...``)
    replaced by ``***``; a malformed URL too. Text with no URL is returned as it is. Linear in its length."""
    if _HINT.search(text) is None:
        return text
    if "://" in text:
        parts = _WORD_BREAKS.split(text)
        text = "".join(_hide_in_word(part) if "://" in part else part for part in parts)
    return _PASSWORD_PARAM.sub(lambda m: f"{m.group(1)}***", text)


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
    """``text`` (any value: str() of it) with every dangerous character shown as an escape, and any URL's
    password hidden.

    ``keep_newlines`` keeps ``\\n`` (for multi-line text that is ours); otherwise the result is one line.
    """
    value = hide_passwords(text if isinstance(text, str) else str(text))
    pattern = _DANGEROUS_INLINE if keep_newlines else DANGEROUS
    if pattern.search(value) is None:
        return value
    return pattern.sub(_shown, value)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes a character beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def inert_json(text: str, *, passwords: bool = False) -> str:
    """A JSON text (as ``json.dumps(..., ensure_ascii=False)`` writes it) made inert: every DEL, C1 control,
    bidi override, isolate or mark and invisible format character as a ``\\u`` escape. JSON's own syntax is
    ASCII, so these characters only ever occur inside strings, where the escape means the same character:
    the text stays JSON and decodes to the same values. Unless ``passwords``, any URL's password is hidden
    too (then a value holding one decodes with ``***`` in its place); a faithful copy of recorded entries
    (the audit export, whose hashes must still verify) keeps them."""
    if not passwords:
        text = hide_passwords(text)
    if JSON_UNSAFE.search(text) is None:
        return text
    return JSON_UNSAFE.sub(_json_escape, text)
