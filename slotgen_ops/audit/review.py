"""Reviewing an audit log: chain verification, filters, exports (SPEC section 3).

The reading side of ``log.AuditLog``, kept apart from the writing side;
everything here works on streams of lines or entries and holds no state.

Verification: ``slotgen audit verify`` detects any edited, deleted, inserted,
reordered or truncated entry and names the first bad sequence number.

In a valid log, line ``p`` holds the entry with ``seq == p``, its ``hash`` is
the SHA-256 of its canonical bytes without ``hash``, and its ``prevHash`` is
line ``p-1``'s ``hash`` (64 zeros for line 1). ``first_bad`` is the seq the
first untrustworthy position should hold. A chain break between two entries
says one of the two changed; one line of lookahead decides which:

- edited and rehashed: entry ``p`` is self-consistent, but entry ``p+1`` was
  chained to something else -> ``p``;
- inserted: an extra entry ``p`` whose successor is chained to entry ``p-1``
  -> ``p``;
- deleted / reordered: line ``p`` holds a seq other than ``p`` -> ``p``;
- duplicated: line ``p`` is a copy of an earlier entry -> ``p``.

A chain alone cannot see its tail cut off, nor a whole log rewritten with
fresh hashes. The ``anchor`` — the head ``(seq, hash)`` the controls file
recorded — can: a log shorter than the anchor is truncated (``first_bad`` =
the first missing seq); an entry at the anchor's seq with another hash means
the history up to it was rewritten, and since the anchor commits to the
whole prefix but says nothing about where it diverged, ``first_bad`` is 1.
A log *longer* than its anchor is not an error: a crash between recording an
action and applying it leaves exactly that, and the caller reconciles it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from ..errors import IntegrityFailure
from ..clock import as_utc, parse_utc
from .canonical import _dumps, parse_canonical, parse_entry

__all__ = [
    "AUDIT_FIELDS",
    "GENESIS_HASH",
    "REPAIR_HINT",
    "VerifyReport",
    "export_csv",
    "export_jsonl",
    "filter_entries",
    "verify_lines",
]

#: The entry fields the product writes, in the column order of the CSV export.
#: The log itself requires/fills only seq, ts, prevHash and hash and carries
#: the rest as given.
AUDIT_FIELDS: tuple[str, ...] = (
    "seq", "ts", "env", "operator", "roles", "actor", "action", "control",
    "old", "new", "decisionRecord", "reason", "step", "verification",
    "approvalId", "details", "prevHash", "hash", "signature",
)  # fmt: skip

#: ``prevHash`` of the first entry.
GENESIS_HASH = "0" * 64

REPAIR_HINT = "run `slotgen audit repair` to cut it off (what is cut is recorded)"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``AuditLog.verify``.

    ``entries`` counts the lines of the file, damaged ones included;
    ``first_bad`` is the first bad sequence number (``None`` when valid);
    ``reason`` is one line for the operator (``None`` when valid).
    """

    valid: bool
    entries: int
    first_bad: int | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``audit verify --json`` fields (SPEC section 5), plus ``reason``."""
        return {
            "valid": self.valid,
            "entries": self.entries,
            "firstBad": self.first_bad,
            "reason": self.reason,
        }


class _Bad(Exception):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


def verify_lines(
    lines: Iterable[bytes],
    anchor: tuple[int, str] | None = None,
    env: str | None = None,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> VerifyReport:
    """Verify the raw lines of a log (each ending in ``\\n`` except a torn last one).

    ``check(entry)`` runs in the same pass on every entry whose hash and link
    hold, in order; a non-None answer makes that entry the first bad one.
    """
    anchor_seq, anchor_hash = _check_anchor(anchor)
    stream: Iterator[bytes] = iter(lines)
    prev: dict[str, Any] | None = None
    at_anchor: str | None = None  # hash of the entry at anchor_seq, once seen
    pos = 0
    bad: _Bad | None = None
    current = next(stream, None)
    while current is not None:
        pos += 1
        following = next(stream, None)
        try:
            entry = _local(current, pos, last=following is None)
            _link(entry, pos, prev, following)
            if env is not None and entry.get("env") != env:
                raise _Bad(pos, f"entry {pos} is for env {entry.get('env')!r}, not {env!r}")
            if check is not None:
                problem = check(entry)
                if problem is not None:
                    raise _Bad(pos, problem)
        except _Bad as exc:
            bad = exc
            current = following
            break
        if pos == anchor_seq:
            at_anchor = entry["hash"]
        prev, current = entry, following

    if bad is None:
        if anchor_seq > pos:
            missing = f"entries {pos + 1}..{anchor_seq} are"
            if pos + 1 == anchor_seq:
                missing = f"entry {anchor_seq} is"
            bad = _Bad(
                pos + 1,
                f"the log ends at seq {pos} but the controls recorded seq {anchor_seq}: "
                f"{missing} missing (truncated)",
            )
        elif anchor_seq and at_anchor != anchor_hash:
            bad = _rewritten(anchor_seq, at_anchor, anchor_hash)
    else:
        # Past the first defect positions are unreliable; count the lines, and
        # look the anchor's seq up by content: a rewrite beneath the damage
        # still shows there.
        rest = 0
        while current is not None:
            rest += 1
            if anchor_seq and at_anchor is None:
                at_anchor = _hash_if_seq(current, anchor_seq)
            current = next(stream, None)
        pos += rest
        if anchor_seq and at_anchor is not None and at_anchor != anchor_hash:
            bad = _rewritten(anchor_seq, at_anchor, anchor_hash)

    if bad is None:
        return VerifyReport(valid=True, entries=pos)
    return VerifyReport(valid=False, entries=pos, first_bad=bad.seq, reason=bad.reason)


def _check_anchor(anchor: tuple[int, str] | None) -> tuple[int, str]:
    if anchor is None:
        return 0, GENESIS_HASH
    seq, digest = anchor
    if type(seq) is not int or seq < 0 or not isinstance(digest, str):
        raise ValueError(f"anchor must be (seq >= 0, hash), not {anchor!r}")
    return seq, digest


def _rewritten(seq: int, found: str | None, recorded: str) -> _Bad:
    return _Bad(
        1,
        f"entry {seq} has hash {str(found)[:12]}… but the controls recorded {recorded[:12]}…: "
        "the log was rewritten or replaced; no entry up to it can be trusted",
    )


def _local(raw: bytes, pos: int, last: bool) -> dict[str, Any]:
    """Checks one line on its own: complete, canonical, seq present, own hash right."""
    if not raw.endswith(b"\n"):
        raise _Bad(pos, f"line {pos} is torn (no trailing newline); {REPAIR_HINT}")
    try:
        entry, digest = parse_entry(raw[:-1])
    except ValueError as exc:
        if last and not _is_json_object(raw):  # torn as `repair` sees it: unreadable
            raise _Bad(pos, f"the last line ({pos}) is torn: {exc}; {REPAIR_HINT}") from None
        raise _Bad(pos, f"line {pos}: {exc}") from None
    if type(entry.get("seq")) is not int:
        raise _Bad(pos, f"line {pos}: seq is missing or not an integer")
    if entry["hash"] != digest:
        raise _Bad(pos, f"entry {pos}: hash mismatch (edited after it was written)")
    return entry


def _link(
    entry: dict[str, Any], pos: int, prev: dict[str, Any] | None, following: bytes | None
) -> None:
    """Checks that ``entry`` (self-consistent) continues the valid chain ending at ``prev``."""
    seq, prev_hash = entry["seq"], entry.get("prevHash")
    expected = prev["hash"] if prev else GENESIS_HASH
    if seq == pos and prev_hash == expected:
        return
    if seq > pos:
        raise _Bad(pos, f"entry {pos} is missing (line {pos} holds seq {seq}): deleted or reordered")
    if seq == pos:  # right place, wrong predecessor
        if prev is None:
            raise _Bad(1, "entry 1's prevHash is not 64 zeros: the log's start was cut or replaced")
        if _prev_hash_of(following) == entry["hash"] or following is None:
            # Entry pos is vouched for by its successor (or has none to say
            # otherwise): the suspect is the entry it no longer matches.
            raise _Bad(
                pos - 1,
                f"entry {pos - 1} is not the entry that entry {pos} was chained to (edited and rehashed?)",
            )
        raise _Bad(pos, f"entry {pos} is chained to neither neighbour: inserted or replaced")
    # seq < pos: a seq seen already (or no seq at all).
    if seq < 1 or seq < pos - 1 or prev is None or entry["hash"] == prev["hash"]:
        raise _Bad(pos, f"line {pos} holds seq {seq}: duplicated or moved entry")
    if prev_hash == prev.get("prevHash"):
        # Two entries claim seq pos-1 after the same predecessor. The genuine
        # one is the one the chain continues from.
        if _prev_hash_of(following) == entry["hash"]:
            raise _Bad(
                pos - 1, f"entry {pos - 1} was inserted: the chain continues from another entry {seq}"
            )
        if _prev_hash_of(following) == prev["hash"]:
            raise _Bad(pos, f"line {pos} is a second entry {seq}: inserted")
        raise _Bad(pos - 1, f"two different entries claim seq {seq}: one was inserted")
    raise _Bad(pos, f"line {pos} holds seq {seq}: duplicated or moved entry")


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


def _prev_hash_of(raw: bytes | None) -> Any:
    """``prevHash`` of a following raw line, or ``None`` if it cannot be read."""
    if raw is None or not raw.endswith(b"\n"):
        return None
    try:
        value = parse_canonical(raw[:-1])
    except ValueError:
        return None
    return value.get("prevHash") if isinstance(value, dict) else None


def _hash_if_seq(raw: bytes, seq: int) -> str | None:
    """The recomputed hash of the raw line if it is a readable entry with ``seq``."""
    if not raw.endswith(b"\n"):
        return None
    try:
        entry, digest = parse_entry(raw[:-1])
    except ValueError:
        return None
    return digest if entry.get("seq") == seq else None


# -- filters and exports -------------------------------------------------------


def export_jsonl(entries: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Write ``entries`` as canonical JSON lines; return how many."""
    written = 0
    for entry in entries:
        out.write(_dumps(entry).decode("utf-8") + "\n")
        written += 1
    return written


def export_csv(entries: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Write ``entries`` as CSV; return how many rows (header excluded).

    Columns are ``AUDIT_FIELDS`` plus ``extra`` (any other fields, as JSON).
    Strings and integers are written as is, booleans as ``true``/``false``,
    null as empty, lists and objects as JSON text. A text cell that starts
    like a spreadsheet formula (``=``, ``+``, ``-``, ``@``, tab, carriage
    return) gets a leading ``'`` so that no spreadsheet runs it (SPEC section
    11); the JSON-lines export is the faithful one.
    """
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; and any \r or \n in a cell gets quoted
    writer.writerow([*AUDIT_FIELDS, "extra"])
    known = set(AUDIT_FIELDS)
    rows = 0
    for entry in entries:
        extra = {k: v for k, v in entry.items() if k not in known}
        row = [_csv_cell(entry.get(name)) for name in AUDIT_FIELDS]
        row.append(_dumps(extra).decode("utf-8") if extra else "")
        writer.writerow(row)
        rows += 1
    return rows


def filter_entries(
    entries: Iterable[dict[str, Any]],
    operator: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Entries matching every given filter, lazily.

    ``operator`` matches the ``operator`` field or ``actor.id``; ``action`` is
    exact; ``since <= ts < until`` (a naive datetime is taken as UTC). An entry
    whose ``ts`` cannot be read raises ``IntegrityFailure`` when a time filter
    is given.
    """
    lo, hi = _as_utc(since), _as_utc(until)
    for entry in entries:
        if operator is not None and operator not in _operators_of(entry):
            continue
        if action is not None and entry.get("action") != action:
            continue
        if lo is not None or hi is not None:
            ts = _parse_ts(entry)
            if (lo is not None and ts < lo) or (hi is not None and ts >= hi):
                continue
        yield entry


def _operators_of(entry: dict[str, Any]) -> set[Any]:
    found = {entry.get("operator")}
    actor = entry.get("actor")
    if isinstance(actor, dict):
        found.add(actor.get("id"))
    found.discard(None)
    return found


def _as_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def _parse_ts(entry: dict[str, Any]) -> datetime:
    raw = entry.get("ts")
    try:
        return parse_utc(raw)
    except ValueError:
        raise IntegrityFailure(f"audit entry seq {entry.get('seq')}: unreadable ts {raw!r}") from None


#: A cell a spreadsheet would run as a formula starts with one of these (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula is prefixed with a quote (SPEC section 11)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = value if isinstance(value, str) else _dumps(value).decode("utf-8")
    return "'" + text if text.startswith(FORMULA_STARTS) else text
