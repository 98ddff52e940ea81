"""The audit log: append, read, repair, and the tamper corpus verify must catch.

Real files in tmp_path. Each tamper case names the first bad sequence number
the operator must be told (SPEC section 3).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slotgen_ops.errors import BadInput, IntegrityFailure
from slotgen_ops.audit.log import (
    AUDIT_FIELDS,
    GENESIS_HASH,
    AuditLog,
    VerifyReport,
    filter_entries,
)
from slotgen_ops.audit.canonical import canonical_bytes, entry_hash, parse_canonical, parse_entry

ENV = "staging"
N = 10


# -- helpers -------------------------------------------------------------------


def build(directory: Path, n: int = N, env: str = ENV, name: str = "log.jsonl") -> AuditLog:
    """A real log of n entries written through append()."""
    log = AuditLog(directory / name)
    with log.locked():
        for i in range(n):
            log.append({"env": env, "action": "set", "operator": f"op{i % 3}", "new": str(i)})
    return log


def read_lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def write_lines(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


def as_entry(line: bytes) -> dict[str, Any]:
    return json.loads(line)


def as_line(entry: dict[str, Any], rehash: bool = False) -> bytes:
    if rehash:
        entry = {**entry, "hash": entry_hash(entry)}
    return canonical_bytes(entry) + b"\n"


def head_anchor(log: AuditLog) -> tuple[int, str]:
    head = log.head()
    assert head is not None
    return head["seq"], head["hash"]


def assert_bad(report: VerifyReport, first_bad: int) -> None:
    assert not report.valid, report
    assert report.first_bad == first_bad, report
    assert report.reason and "\n" not in report.reason


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return build(tmp_path)


# -- a valid log ---------------------------------------------------------------


def test_valid_log_verifies(log: AuditLog) -> None:
    report = log.verify(anchor=head_anchor(log), env=ENV)
    assert report == VerifyReport(valid=True, entries=N, first_bad=None, reason=None)
    assert report.as_json() == {"valid": True, "entries": N, "firstBad": None, "reason": None}


def test_entries_are_canonical_chained_lines(log: AuditLog) -> None:
    lines = read_lines(log)
    entries = list(log.entries())
    assert [e["seq"] for e in entries] == list(range(1, N + 1))
    assert entries[0]["prevHash"] == GENESIS_HASH
    for before, after in zip(entries, entries[1:]):
        assert after["prevHash"] == before["hash"]
    for line, entry in zip(lines, entries):
        assert line == canonical_bytes(entry) + b"\n"
        assert entry["hash"] == hashlib.sha256(
            canonical_bytes({k: v for k, v in entry.items() if k not in ("hash", "signature")})
        ).hexdigest()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["ts"])


def test_missing_log_is_empty_and_valid(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "none.jsonl")
    assert log.head() is None and log.count() == 0 and list(log.entries()) == []
    assert log.verify().valid
    assert_bad(log.verify(anchor=(3, "a" * 64)), 1)  # the recorded history is gone


# -- the tamper corpus ---------------------------------------------------------


def test_edited_entry(log: AuditLog) -> None:
    lines = read_lines(log)
    lines[3] = lines[3].replace(b'"new":"3"', b'"new":"9"')
    write_lines(log, lines)
    assert_bad(log.verify(), 4)


def test_edited_and_rehashed_entry(log: AuditLog) -> None:
    lines = read_lines(log)
    lines[3] = as_line({**as_entry(lines[3]), "new": "99"}, rehash=True)
    write_lines(log, lines)
    assert_bad(log.verify(), 4)


def test_edited_seq_field(log: AuditLog) -> None:
    lines = read_lines(log)
    lines[3] = as_line({**as_entry(lines[3]), "seq": 40})  # not rehashed
    write_lines(log, lines)
    assert_bad(log.verify(), 4)
    lines[3] = as_line({**as_entry(lines[3]), "seq": 40}, rehash=True)
    write_lines(log, lines)
    assert_bad(log.verify(), 4)


def test_deleted_middle_entry(log: AuditLog) -> None:
    lines = read_lines(log)
    del lines[4]
    write_lines(log, lines)
    assert_bad(log.verify(), 5)


def test_deleted_first_entry(log: AuditLog) -> None:
    write_lines(log, read_lines(log)[1:])
    assert_bad(log.verify(), 1)


def _forged(lines: list[bytes], seq: int, prev_hash: str) -> bytes:
    forged = {**as_entry(lines[seq - 1]), "new": "forged", "prevHash": prev_hash}
    return as_line(forged, rehash=True)


def test_inserted_forged_entry(log: AuditLog) -> None:
    lines = read_lines(log)
    # A careful forger: seq 5, chained to entry 4, own hash right.
    lines.insert(4, _forged(lines, 5, as_entry(lines[3])["hash"]))
    write_lines(log, lines)
    assert_bad(log.verify(), 5)


def test_inserted_forged_entry_after_the_genuine_one(log: AuditLog) -> None:
    lines = read_lines(log)
    lines.insert(5, _forged(lines, 5, as_entry(lines[3])["hash"]))
    write_lines(log, lines)
    assert_bad(log.verify(), 6)


def test_inserted_entry_with_wrong_prev_hash(log: AuditLog) -> None:
    lines = read_lines(log)
    lines.insert(4, _forged(lines, 5, "f" * 64))
    write_lines(log, lines)
    assert_bad(log.verify(), 5)


@pytest.mark.parametrize(("a", "b"), [(3, 4), (3, 7)])
def test_swapped_entries(log: AuditLog, a: int, b: int) -> None:
    lines = read_lines(log)
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    write_lines(log, lines)
    assert_bad(log.verify(), a)


def test_duplicated_entry(log: AuditLog) -> None:
    lines = read_lines(log)
    lines.insert(6, lines[5])  # entry 6 twice: line 7 is the copy
    write_lines(log, lines)
    assert_bad(log.verify(), 7)


def test_duplicated_last_entry(log: AuditLog) -> None:
    lines = read_lines(log)
    write_lines(log, [*lines, lines[-1]])
    assert_bad(log.verify(), N + 1)


def test_earlier_entry_replayed_later(log: AuditLog) -> None:
    lines = read_lines(log)
    lines.insert(8, lines[1])
    write_lines(log, lines)
    assert_bad(log.verify(), 9)


def test_truncated_tail_needs_the_anchor(log: AuditLog) -> None:
    anchor = head_anchor(log)
    write_lines(log, read_lines(log)[:-3])
    assert log.verify().valid  # a chain alone cannot see its end cut off
    assert_bad(log.verify(anchor=anchor), N - 2)


def test_torn_last_line(log: AuditLog) -> None:
    whole = log.path.read_bytes()
    log.path.write_bytes(whole + read_lines(log)[-1][:37])
    assert_bad(log.verify(), N + 1)
    log.path.write_bytes(whole[:-1])  # the last entry's newline lost
    assert_bad(log.verify(), N)


def test_whole_log_replaced_by_another_valid_log(tmp_path: Path, log: AuditLog) -> None:
    anchor = head_anchor(log)
    other = build(tmp_path, n=N + 2, name="other.jsonl")
    log.path.write_bytes(other.path.read_bytes())
    assert log.verify(env=ENV).valid  # internally perfect
    assert_bad(log.verify(anchor=anchor, env=ENV), 1)


def test_rewritten_from_the_middle_with_fresh_hashes(log: AuditLog) -> None:
    anchor = head_anchor(log)
    lines = read_lines(log)
    prev_hash = as_entry(lines[4])["hash"]
    for i in range(5, N):  # rewrite entries 6..10 and re-chain them
        entry = {**as_entry(lines[i]), "new": f"x{i}", "prevHash": prev_hash}
        lines[i] = as_line(entry, rehash=True)
        prev_hash = as_entry(lines[i])["hash"]
    write_lines(log, lines)
    assert log.verify().valid
    assert_bad(log.verify(anchor=anchor), 1)


def test_wrong_env(tmp_path: Path, log: AuditLog) -> None:
    assert_bad(log.verify(env="production"), 1)
    mixed = build(tmp_path, n=5, name="mixed.jsonl")
    with mixed.locked():
        mixed.append({"env": "production", "action": "set"})
    assert_bad(mixed.verify(env=ENV), 6)


def test_first_entry_prev_hash_not_zeros(log: AuditLog) -> None:
    lines = read_lines(log)
    lines[0] = as_line({**as_entry(lines[0]), "prevHash": "1" * 64}, rehash=True)
    write_lines(log, lines)
    assert_bad(log.verify(), 1)


@pytest.mark.parametrize("seq", [0, -3])
def test_seq_below_one(log: AuditLog, seq: int) -> None:
    lines = read_lines(log)
    lines[0] = as_line({**as_entry(lines[0]), "seq": seq}, rehash=True)
    write_lines(log, lines)
    assert_bad(log.verify(), 1)


def test_entry_replaced_by_one_chained_to_neither_neighbour(log: AuditLog) -> None:
    lines = read_lines(log)
    lines[4] = _forged(lines, 5, "e" * 64)
    write_lines(log, lines)
    assert_bad(log.verify(), 5)


@pytest.mark.parametrize(
    "edit",
    [
        lambda line: line.replace(b'","', b'", "', 1),  # whitespace only: same value
        lambda line: line.replace(b'"new":"3"', b'"new":"3","new":"3"'),  # duplicate key
        lambda line: b"not json at all\n",
        lambda line: line.replace(b'"new":"3"', b'"new":3.0'),  # a float
        lambda line: b"[1,2,3]\n",
    ],
)
def test_malformed_middle_line(log: AuditLog, edit: Any) -> None:
    lines = read_lines(log)
    lines[3] = edit(lines[3])
    write_lines(log, lines)
    report = log.verify()
    assert_bad(report, 4)
    assert report.entries == N


def test_anchor_does_not_hide_an_earlier_defect(log: AuditLog) -> None:
    anchor = head_anchor(log)
    lines = read_lines(log)
    lines[2] = lines[2].replace(b'"new":"2"', b'"new":"7"')
    write_lines(log, lines)
    assert_bad(log.verify(anchor=anchor), 3)


def test_log_longer_than_anchor_is_valid(log: AuditLog) -> None:
    # A crash between appending and applying leaves the log one ahead.
    anchor = head_anchor(log)
    with log.locked():
        log.append({"env": ENV, "action": "set"})
    assert log.verify(anchor=anchor).valid


# -- append, head, entries -----------------------------------------------------


def test_append_requires_the_lock(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        AuditLog(tmp_path / "log.jsonl").append({"action": "x"})


def test_lock_is_reentrant_and_not_taken_inside_a_read(log: AuditLog) -> None:
    with log.locked(), log.locked():
        log.append({"env": ENV, "action": "nested"})
    with pytest.raises(RuntimeError):
        for _ in log.entries():
            with log.locked():
                pass


def test_append_refuses_fields_it_fills_and_floats(log: AuditLog) -> None:
    with log.locked():
        with pytest.raises(ValueError):
            log.append({"seq": 3})
        with pytest.raises(BadInput, match=r"\$\.details\.ratio"):
            log.append({"details": {"ratio": 0.5}})
        entry = log.append({"ts": "2026-01-01T00:00:00.000000Z", "action": "x"})
    assert entry["ts"] == "2026-01-01T00:00:00.000000Z" and entry["seq"] == N + 1
    assert log.head() == entry


def test_append_refuses_after_torn_last_line_then_repair(log: AuditLog) -> None:
    fragment = read_lines(log)[-1][:50]
    log.path.write_bytes(log.path.read_bytes() + fragment)
    before = log.path.read_bytes()
    with log.locked(), pytest.raises(IntegrityFailure, match="slotgen audit repair"):
        log.append({"env": ENV, "action": "set"})
    assert log.path.read_bytes() == before
    assert log.head() is not None and log.head()["seq"] == N  # the last complete entry

    actor = {"id": "oncall", "roles": ["on-call"]}
    entry = log.repair(ENV, actor)
    assert entry is not None
    assert entry["action"] == "audit-repair" and entry["env"] == ENV and entry["actor"] == actor
    assert entry["seq"] == N + 1
    assert entry["details"] == {
        "cutBytes": len(fragment),
        "cutSha256": hashlib.sha256(fragment).hexdigest(),
        "cutText": fragment.decode(),
        "cutSavedAs": None,
    }
    assert not list(log.path.parent.glob("*.cut-*"))  # evidence file removed once recorded
    with log.locked():
        log.append({"env": ENV, "action": "set"})
    assert log.verify(env=ENV) == VerifyReport(valid=True, entries=N + 2)


def test_repair_cuts_a_garbage_last_line_and_keeps_invalid_utf8_readable(log: AuditLog) -> None:
    log.path.write_bytes(log.path.read_bytes() + b"\xff\xfe garbage\n")
    entry = log.repair(ENV, {"id": "owner"})
    assert entry is not None and entry["details"]["cutBytes"] == 11
    assert "\ufffd" in entry["details"]["cutText"]
    assert log.verify(env=ENV).valid


def test_repair_with_nothing_torn_changes_nothing(log: AuditLog) -> None:
    before = log.path.read_bytes()
    assert log.repair(ENV, {"id": "owner"}) is None
    assert log.path.read_bytes() == before


def test_repair_refuses_when_more_than_the_last_line_is_damaged(log: AuditLog) -> None:
    log.path.write_bytes(log.path.read_bytes() + b"garbage\npartial")
    before = log.path.read_bytes()
    with pytest.raises(IntegrityFailure):
        log.repair(ENV, {"id": "owner"})
    assert log.path.read_bytes() == before


def test_repair_refuses_before_cutting_when_the_entry_before_is_edited(log: AuditLog) -> None:
    lines = read_lines(log)
    lines[-1] = lines[-1].replace(b'"new":"9"', b'"new":"0"')
    write_lines(log, [*lines, b"partial"])
    before = log.path.read_bytes()
    with pytest.raises(IntegrityFailure, match="hash check"):
        log.repair(ENV, {"id": "owner"})
    assert log.path.read_bytes() == before


def test_append_refuses_to_extend_an_edited_last_entry(log: AuditLog) -> None:
    lines = read_lines(log)
    lines[-1] = lines[-1].replace(b'"new":"9"', b'"new":"0"')
    write_lines(log, lines)
    with log.locked(), pytest.raises(IntegrityFailure, match="hash check"):
        log.append({"env": ENV, "action": "set"})
    assert log.repair(ENV, {"id": "owner"}) is None  # an edit is not a torn write


def test_entries_names_the_bad_line(log: AuditLog) -> None:
    lines = read_lines(log)
    lines[6] = b"{oops\n"
    write_lines(log, lines)
    with pytest.raises(IntegrityFailure, match="line 7") as caught:
        list(log.entries())
    assert caught.value.first_bad == 7


def test_head_of_a_100k_log_reads_the_tail(tmp_path: Path) -> None:
    # Built by formatting canonical lines directly (keys in sorted order):
    # going through append() would fsync 100,000 times.
    body = '{"action":"set","env":"%s","new":"%d","prevHash":"%s","seq":%d,"ts":"2026-11-22T13:40:00.000000Z"}'
    prev, chunks = GENESIS_HASH, []
    for seq in range(1, 100_001):
        unhashed = body % (ENV, seq, prev, seq)
        digest = hashlib.sha256(unhashed.encode()).hexdigest()
        chunks.append(unhashed.replace('"new"', f'"hash":"{digest}","new"') + "\n")
        prev = digest
    path = tmp_path / "big.jsonl"
    path.write_text("".join(chunks))
    for line in (chunks[0], chunks[-1]):  # the shortcut really is canonical and hashed
        entry = parse_canonical(line.encode()[:-1])
        assert entry["hash"] == entry_hash(entry)
    log = AuditLog(path)
    head = log.head()
    assert head is not None and head["seq"] == 100_000 and head["hash"] == prev
    assert log.count() == 100_000
    with log.locked():
        assert log.append({"env": ENV, "action": "set"})["seq"] == 100_001


# -- review: filters and exports -------------------------------------------------


def test_filter_entries(log: AuditLog) -> None:
    with log.locked():
        log.append({"env": ENV, "action": "audit-repair", "actor": {"id": "op1"},
                    "ts": "2030-01-01T00:00:00.000000Z"})  # fmt: skip
    entries = list(log.entries())
    assert [e["seq"] for e in filter_entries(entries, operator="op1")] == [2, 5, 8, 11]
    assert [e["seq"] for e in filter_entries(entries, action="audit-repair")] == [11]
    cut = datetime(2029, 1, 1, tzinfo=timezone.utc)
    assert [e["seq"] for e in filter_entries(entries, since=cut)] == [11]
    assert len(list(filter_entries(entries, until=cut.replace(tzinfo=None)))) == N
    with pytest.raises(IntegrityFailure):
        list(filter_entries([{"seq": 1, "ts": "yesterday"}], since=cut))


def test_export_jsonl_round_trips(log: AuditLog) -> None:
    out = io.StringIO()
    assert log.export_jsonl(out) == N
    assert out.getvalue().encode() == log.path.read_bytes()


def test_export_csv(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    with log.locked():
        log.append({"env": ENV, "action": "set", "roles": ["on-call"], "old": None, "new": "1",
                    "verification": {"passed": True}, "surprise": 7})  # fmt: skip
    out = io.StringIO()
    assert log.export_csv(out) == 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == [*AUDIT_FIELDS, "extra"]
    assert rows[0]["seq"] == "1" and rows[0]["old"] == "" and rows[0]["new"] == "1"
    assert json.loads(rows[0]["roles"]) == ["on-call"]
    assert json.loads(rows[0]["verification"]) == {"passed": True}
    assert json.loads(rows[0]["extra"]) == {"surprise": 7}


# -- properties ------------------------------------------------------------------

_PRISTINE: list[bytes] = []


def _pristine() -> list[bytes]:
    """One real 8-entry log, built once for the tamper property."""
    if not _PRISTINE:
        with tempfile.TemporaryDirectory() as directory:
            _PRISTINE.extend(read_lines(build(Path(directory), n=8)))
    return list(_PRISTINE)


@st.composite
def tampered(draw: st.DrawFn) -> list[bytes]:
    lines = _pristine()
    for _ in range(draw(st.integers(1, 3))):
        n = len(lines)
        op = draw(st.sampled_from(["delete", "copy", "swap", "flip", "cut"] if n else ["cut"]))
        i, j = draw(st.integers(0, max(n - 1, 0))), draw(st.integers(0, n))
        if op == "delete":
            del lines[i]
        elif op == "copy":
            lines.insert(j, lines[i])
        elif op == "swap":
            j = min(j, n - 1)
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "flip":
            k = draw(st.integers(0, len(lines[i]) - 1))
            line = bytearray(lines[i])
            line[k] ^= 1 << draw(st.integers(0, 7))
            lines[i] = bytes(line)
        else:
            whole = b"".join(lines)
            whole = whole[: len(whole) - draw(st.integers(0, 120))]
            lines = whole.splitlines(keepends=True)
    return lines


@settings(max_examples=150, deadline=None)
@given(tampered())
def test_any_tampering_is_caught_no_later_than_the_first_change(lines: list[bytes]) -> None:
    original = _pristine()
    last = as_entry(original[-1])
    with tempfile.TemporaryDirectory() as directory:
        log = AuditLog(Path(directory) / "log.jsonl")
        write_lines(log, lines)
        report = log.verify(anchor=(last["seq"], last["hash"]), env=ENV)
    first_diff = next(
        (n for n, (a, b) in enumerate(zip(lines, original), start=1) if a != b),
        min(len(lines), len(original)) + 1,
    )
    assert report.valid == (lines == original)
    if not report.valid:
        assert report.first_bad is not None and 1 <= report.first_bad <= first_diff
        assert report.reason and "\n" not in report.reason

_RESERVED = {"seq", "ts", "prevHash", "hash"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
fields = st.dictionaries(st.text(max_size=6).filter(lambda k: k not in _RESERVED), json_values, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fields, max_size=6))
def test_appends_round_trip_and_verify(batch: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        log = AuditLog(Path(directory) / "log.jsonl")
        with log.locked():
            returned = [log.append(f) for f in batch]
        entries = list(log.entries())
        assert entries == returned
        assert [e["seq"] for e in entries] == list(range(1, len(batch) + 1))
        for given_fields, entry in zip(batch, entries):
            assert {k: entry[k] for k in given_fields} == given_fields
        assert log.verify() == VerifyReport(valid=True, entries=len(batch))


@given(json_values)
def test_canonical_round_trip(value: Any) -> None:
    assert parse_canonical(canonical_bytes(value)) == value


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5), st.text(max_size=64))
def test_parse_entry_hashes_like_entry_hash(value: dict[str, Any], stored: str) -> None:
    entry = {**value, "hash": stored}
    assert parse_entry(canonical_bytes(entry)) == (entry, entry_hash(entry))


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_canonical_ignores_insertion_order(value: dict[str, Any]) -> None:
    assert canonical_bytes(dict(reversed(list(value.items())))) == canonical_bytes(value)


@given(json_values, st.floats(allow_nan=True, allow_infinity=True))
def test_canonical_rejects_floats_anywhere(value: Any, number: float) -> None:
    with pytest.raises(ValueError, match=r"\$"):
        canonical_bytes({"outer": [value, {"x": number}]})


def test_canonical_rejects_other_types_and_bad_text() -> None:
    for bad in ({1: "int key"}, (1, 2), {"s": {1, 2}}, "\ud800", b"bytes"):
        with pytest.raises(ValueError):
            canonical_bytes(bad)


def test_unreadable_log_is_an_integrity_failure(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    log.path.mkdir()  # not a file: reading it fails with an OS error
    for read in (log.head, lambda: list(log.entries()), log.verify):
        with pytest.raises(IntegrityFailure, match="cannot read"):
            read()
