"""Populations of jobs as JSON lines: read in blocks, each line parsed, checked and counted, nothing kept.

Shared by `slotgen exposure` (one set of controls) and `slotgen plan --jobs` (every step's controls in one
pass). A bad line (not UTF-8, not JSON, not a valid job) is named as FILE:LINE:COL: the 1-based line, and
the 1-based character column in that line as an editor shows it (a UTF-8 BOM at the start of a line and the
line ending are not part of the line; a multi-byte character is one column). For a line that is JSON but
not a valid job the column is 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, BinaryIO

from ..contract.order import _ALL_PASSED, _GATE_CODES, GATING_CODES
from ..contract.job import job_problem
from ..errors import BadInput

BLOCK_BYTES = 1024 * 1024  # lines are read about this many bytes at a time
FIRST_SHOWN = 10  # bad lines listed in `Invalid.first`
_BOM = b"\xef\xbb\xbf"

#: One way of deciding a job (``contract.order.decider(controls, allowlist)``) and the counts it fills,
#: indexed by the deciding gate (``_ALL_PASSED``: the OpenAI path).
Target = tuple[Callable[[Any], int], list[int]]


def new_counts() -> list[int]:
    return [0] * (_ALL_PASSED + 1)


def summary(counts: Sequence[int]) -> dict[str, Any]:
    """{total, openai, stub, codes} from counts indexed by the deciding gate, as `exposure` reports them."""
    codes: dict[str, int] = {}
    for index, count in enumerate(counts[:_ALL_PASSED]):
        if count:
            code = _GATE_CODES[index]
            codes[code] = codes.get(code, 0) + count
    total = sum(counts)
    return {"total": total, "openai": counts[_ALL_PASSED], "stub": total - counts[_ALL_PASSED],
            "codes": {code: codes[code] for code in GATING_CODES if code in codes}}


class Invalid:
    """Bad lines met so far: how many, and where the first few are."""

    __slots__ = ("name", "skip", "hint", "count", "first")

    def __init__(self, name: str, skip: bool, hint: str = " (--skip-invalid counts past bad lines)") -> None:
        self.name = name
        self.skip = skip
        self.hint = hint
        self.count = 0
        self.first: list[dict[str, Any]] = []

    def add(self, line: int, column: int, problem: str) -> None:
        """Record one bad line; without --skip-invalid, stop the count with it (exit 2)."""
        if not self.skip:
            raise BadInput(f"{self.name}:{line}:{column}: {problem}{self.hint}")
        self.count += 1
        if len(self.first) < FIRST_SHOWN:
            self.first.append({"line": line, "column": column, "problem": problem})

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "first": list(self.first)}


def count(fh: BinaryIO, targets: Sequence[Target], invalid: Invalid,
          on_block: Callable[[int], None] | None = None) -> None:
    """The hot loop: parse, check, decide, count. Nothing is kept per job.

    The common line, one JSON object and its line ending, costs one decode,
    one JSON scan, one job check and one decision. Anything else (a BOM,
    whitespace around the object, a blank line, a bad line) is refused by the
    fast parse and then read by `_slow_parse` with `json.loads`, which has the
    last word on what is JSON.
    """
    import json

    parse = json.JSONDecoder().raw_decode
    check = job_problem
    only = targets[0] if len(targets) == 1 else None
    done = 0
    lineno = 0
    for block in iter(partial(fh.readlines, BLOCK_BYTES), []):
        for lineno, raw in enumerate(block, lineno + 1):
            try:
                text = raw.decode()
                job, end = parse(text)
                if end != len(text) and text[end:] not in _LINE_ENDS:
                    raise ValueError
            except (ValueError, RecursionError):
                job = _slow_parse(raw, lineno, invalid)
                if job is _SKIP:
                    continue
            problem = check(job)
            if problem is not None:
                invalid.add(lineno, 1, problem)
                continue
            if only is not None:
                only[1][only[0](job)] += 1
            else:
                for decide, counts in targets:
                    counts[decide(job)] += 1
        if on_block is not None:
            done += sum(map(len, block))
            on_block(done)


_SKIP = object()  # a blank line, or a bad one already recorded
_LINE_ENDS = ("\n", "\r\n")


def _slow_parse(raw: bytes, lineno: int, invalid: Invalid) -> Any:
    """The job on a line the fast parse refused (a line that starts with a BOM), else _SKIP:
    a blank line, or a bad line, recorded in `invalid` with its true column."""
    import json

    body = raw[:-1] if raw.endswith(b"\n") else raw
    if body.endswith(b"\r"):
        body = body[:-1]
    if body.startswith(_BOM):
        body = body[len(_BOM):]
    if not body or body.isspace():
        return _SKIP
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        column = len(body[:exc.start].decode()) + 1
        invalid.add(lineno, column, f"not UTF-8 text (byte 0x{body[exc.start]:02x})")
        return _SKIP
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = exc.msg[:-3] + " here" if exc.msg.endswith(" at") else exc.msg
        invalid.add(lineno, exc.pos + 1, f"not JSON: {message}")
    except ValueError as exc:  # e.g. an integer longer than Python reads
        invalid.add(lineno, 1, f"not JSON: {exc}")
    except RecursionError:
        invalid.add(lineno, 1, "not JSON: nested too deeply")
    return _SKIP


