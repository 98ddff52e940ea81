"""The one byte grammar of a controls file (SPEC section 14). Pure: no I/O.

A controls file is read by systemd (`EnvironmentFile=`), by docker
(`--env-file`) and by slotgen, and they disagree on much: systemd splits lines
on "\\r" as well as "\\n", joins a line ending in a backslash (comments too)
with the next, strips quotes and blanks; docker does none of that. Under this
grammar they cannot disagree, because nothing they treat differently is
allowed:

- lines `NAME=VALUE\\n`, each ending in "\\n", NAME one of the four controls of
  SPEC section 1, at most once each;
- VALUE only `[A-Za-z0-9._/+-]*` (no quote, blank, backslash, "\\r", "$", "#");
- comments only the header lines slotgen writes (`render_controls`), first, once each, in its order;
- at most MAX_BYTES bytes.

Anything else is a hand edit. The tests hold this argument to systemd's own
parser and docker's rules (tests/envfile_oracle.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..contract import CONTROL_VARS

#: A controls file is a few short lines; anything larger is not one of ours.
MAX_BYTES = 4096

#: The bytes a value may hold: [A-Za-z0-9._/+-].
_VALUE_BYTE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/+-")
_CONTROL_NAMES = frozenset(name.encode("ascii") for name in CONTROL_VARS)
# Two regular expressions and two literal lines (this module is imported by a rollback's first write, where
# every millisecond counts: each pattern compiled costs some).
HEAD_RE = re.compile(rb"# slotgen-head: seq=(0|[1-9][0-9]{0,17}) hash=([0-9a-f]{64})")
_ENV_LINE_RE = re.compile(rb"# slotgen runtime controls for environment '[a-z][a-z0-9-]{0,31}'\.")


class _Literal:
    """A fixed line, matched like a pattern."""

    def __init__(self, line: bytes) -> None:
        self.line = line

    def fullmatch(self, other: bytes) -> bool:
        return other == self.line


#: The comment lines slotgen writes, and only those (render_controls), in their order.
_COMMENT_RES = (
    _ENV_LINE_RE,
    _Literal(b"# Written by slotgen; do not edit by hand: an edit is detected and blocks every change."),
    _Literal(b"# Load it with systemd EnvironmentFile= or docker --env-file. Empty = unset."),
    HEAD_RE,
)


class GrammarError(ValueError):
    """Bytes that are not a controls file: `line` (1-based) and `offset` (0-based byte in the file)."""

    def __init__(self, line: int, offset: int, what: str) -> None:
        super().__init__(f"line {line}, byte {offset}: {what}")
        self.line, self.offset, self.what = line, offset, what


@dataclass(frozen=True)
class Parsed:
    values: dict[str, str | None]  # the controls present (None: present and empty); absent ones missing
    head: tuple[int, str] | None


def value_problem(value: str | None) -> str | None:
    """Why `value` cannot be written as a control's value; None if it can (None: unset, written empty)."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"a control value must be text, not {type(value).__name__}"
    data = value.encode("utf-8", "surrogatepass")
    for index, byte in enumerate(data):
        if byte not in _VALUE_BYTE:
            return f"character {_show(byte)} at position {index} is not allowed in a control value " \
                   "(only A-Z a-z 0-9 . _ / + -)"
    return None


def check_value(name: str, value: str | None) -> None:
    """ValueError naming the control unless `value` fits the grammar (before a byte is written)."""
    if name not in CONTROL_VARS:
        raise ValueError(f"{name!r} is not a runtime control")
    problem = value_problem(value)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")


def parse(raw: bytes) -> Parsed:
    """The controls these bytes hold; GrammarError at the first byte outside the grammar."""
    if len(raw) > MAX_BYTES:
        raise GrammarError(1 + raw[:MAX_BYTES].count(b"\n"), MAX_BYTES,
                           f"the file is over {MAX_BYTES} bytes ({len(raw)})")
    values: dict[str, str | None] = {}
    head: tuple[int, str] | None = None
    offset = 0
    number = 0
    while offset < len(raw):
        number += 1
        end = raw.find(b"\n", offset)
        if end < 0:
            raise GrammarError(number, len(raw), "the last line does not end with a newline")
        line = raw[offset:end]
        if line.startswith(b"#"):
            expected = _COMMENT_RES[number - 1] if number <= len(_COMMENT_RES) and not values else None
            if any(rx.fullmatch(line) for rx in _COMMENT_RES) and (expected is None or not expected.fullmatch(line)):
                raise GrammarError(number, offset, "slotgen's header lines come first, once each, in the order "
                                                   "slotgen writes them")
            if expected is None or not expected.fullmatch(line):
                bad = _first_outside(line, comment=True)
                where = offset + (bad if bad is not None else 0)
                raise GrammarError(number, where, "a comment slotgen did not write" + (
                    f" (byte {_show(line[bad])})" if bad is not None else ""))
            match = HEAD_RE.fullmatch(line)
            if match:  # only ever line 4 (the header's order is checked above)
                head = (int(match.group(1)), match.group(2).decode("ascii"))
        else:
            name, eq, value = line.partition(b"=")
            if not eq:
                bad = _first_outside(line, comment=False)
                raise GrammarError(number, offset + (bad if bad is not None else 0),
                                   "not a NAME=VALUE line" + (f" (byte {_show(line[bad])})" if bad is not None
                                                              else ""))
            if name not in _CONTROL_NAMES:
                bad = _first_outside(name, comment=False, name=True)
                raise GrammarError(number, offset + (bad if bad is not None else 0),
                                   f"{name.decode('ascii', 'backslashreplace')!r} is not a runtime control")
            key = name.decode("ascii")
            if key in values:
                raise GrammarError(number, offset, f"{key} is set twice")
            for index, byte in enumerate(value):
                if byte not in _VALUE_BYTE:
                    raise GrammarError(number, offset + len(name) + 1 + index,
                                       f"{_show(byte)} is not allowed in a value (only A-Z a-z 0-9 . _ / + -)")
            values[key] = value.decode("ascii") or None
        offset = end + 1
    return Parsed(values=values, head=head)


def problem(raw: bytes) -> str | None:
    """The grammar's one-line verdict on `raw`: None if it holds."""
    try:
        parse(raw)
    except GrammarError as exc:
        return str(exc)
    return None


def _first_outside(line: bytes, *, comment: bool, name: bool = False) -> int | None:
    """Index of the first byte that no line of this kind may hold (a control character, a backslash, ...)."""
    for index, byte in enumerate(line):
        if byte == 0x5C or byte < 0x20 or byte >= 0x7F:  # a backslash, any control ("\r" too), non-ASCII
            return index
        if name and not (0x41 <= byte <= 0x5A or 0x30 <= byte <= 0x39 or byte == 0x5F):
            return index
        if not comment and not name and byte in b" \t\"'":
            return index
    return None


def _show(byte: int) -> str:
    if byte == 0x0D:
        return "'\\r'"
    if byte == 0x5C:
        return "'\\\\' (backslash)"
    if 0x20 <= byte < 0x7F:
        return repr(chr(byte))
    return f"0x{byte:02x}"
