"""The audit log file (audit/log.py) at its edges: what each refusal says, what a write failure leaves,
what repair keeps, and the tail reader at line and chunk boundaries.

Real files in tmp_path. A failing write is produced for real: a file size limit
(RLIMIT_FSIZE, with SIGXFSZ ignored) set at the `audit-before-write` point makes
the kernel write part of the line (a short write) or none of it (EFBIG).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import resource
import signal
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from slotgen_ops.audit.canonical import canonical_bytes, entry_hash
from slotgen_ops.audit.append import StaleHead, Unsealed, complete, extends, utc_timestamp
from slotgen_ops.audit.log import (
    GENESIS_HASH,
    AuditLog,
    VerifyReport,
)
from slotgen_ops.audit.logtail import MAX_LINE
from slotgen_ops.audit.review import REPAIR_HINT
from slotgen_ops.errors import BadInput, IntegrityFailure
from slotgen_ops.files import hooks

ENV = "staging"
TS = "2026-01-02T03:04:05.000006Z"


def build(path: Path, n: int) -> AuditLog:
    log = AuditLog(path)
    with log.locked():
        for i in range(n):
            log.append({"env": ENV, "action": "set", "ts": TS, "new": str(i)})
    return log


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return build(tmp_path / "log.jsonl", 3)


def entry_line(fields: dict[str, Any], prev: dict[str, Any] | None) -> tuple[dict[str, Any], bytes]:
    entry = complete({"ts": TS, **fields}, prev)
    entry["signature"] = None
    return entry, canonical_bytes(entry) + b"\n"


@contextlib.contextmanager
def hook(action: Any) -> Iterator[list[str]]:
    reached: list[str] = []

    def at(name: str) -> None:
        reached.append(name)
        action(name)

    hooks.install(at)
    try:
        yield reached
    finally:
        hooks.install(None)


@contextlib.contextmanager
def size_limit_at_write(limit: int) -> Iterator[list[str]]:
    """Limit the file size to `limit` bytes from the audit-before-write point on."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)

    def at(name: str) -> None:
        if name == "audit-before-write":
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))

    try:
        with hook(at) as reached:
            yield reached
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


# -- the fields the log fills --------------------------------------------------------


def test_utc_timestamp_format() -> None:
    moment = datetime(2026, 11, 22, 13, 40, 0, 123456, tzinfo=timezone.utc)
    assert utc_timestamp(moment) == "2026-11-22T13:40:00.123456Z"
    assert len(utc_timestamp()) == len("2026-11-22T13:40:00.123456Z")


def test_complete_fills_seq_prev_hash_and_hash() -> None:
    fields = {"action": "a", "ts": TS}
    first = complete(fields, None)
    assert fields == {"action": "a", "ts": TS}  # the caller's fields are not changed
    assert first == {"action": "a", "ts": TS, "seq": 1, "prevHash": GENESIS_HASH, "hash": first["hash"]}
    assert first["hash"] == entry_hash(first)
    second = complete({"action": "b", "ts": TS}, first)
    assert second["seq"] == 2 and second["prevHash"] == first["hash"] and second["hash"] == entry_hash(second)
    assert complete({"action": "c"}, {"seq": 41, "hash": "h"})["seq"] == 42


def test_complete_keeps_a_given_ts_and_stamps_one_otherwise() -> None:
    assert complete({"ts": "given"}, None)["ts"] == "given"
    stamped = complete({}, None)["ts"]
    assert stamped.endswith("Z") and len(stamped) == len(TS)


def test_complete_refuses_a_value_canonical_json_cannot_hold() -> None:
    with pytest.raises(BadInput) as caught:
        complete({"details": {"ratio": 0.5}}, None)
    assert str(caught.value) == (
        "audit entry cannot be recorded: $.details.ratio: float 0.5 is not allowed in canonical JSON (use int or str)"
    )


def test_extends_compares_the_head() -> None:
    head = {"seq": 4, "hash": "abc"}
    extends(head, None, "here")
    extends(head, (4, "abc"), "here")
    extends(head, [4, "abc"], "here")
    extends(None, (0, GENESIS_HASH), "here")
    with pytest.raises(StaleHead) as caught:
        extends(head, (3, "abc"), "here")
    assert str(caught.value) == ("here: the head is seq 4, not seq 3 that this change was judged against "
                                 "(another writer got there first)")
    with pytest.raises(StaleHead):
        extends(head, (4, "abd"), "here")
    with pytest.raises(StaleHead) as caught:
        extends(None, (1, GENESIS_HASH), "there")
    assert str(caught.value).startswith("there: the head is seq 0, not seq 1 ")
    assert isinstance(caught.value, IntegrityFailure)


# -- append ---------------------------------------------------------------------------


def test_append_refusals_say_why(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    with pytest.raises(RuntimeError) as caught:
        log.append({"action": "x"})
    assert str(caught.value) == "AuditLog.append() called without holding AuditLog.locked()"
    with log.locked():
        with pytest.raises(ValueError) as caught:
            log.append({"hash": "h", "action": "x", "seq": 1, "signature": None, "prevHash": "p"})
    assert str(caught.value) == "audit fields ['seq', 'prevHash', 'hash', 'signature'] are filled by the log, not the caller"
    assert not log.path.exists()


def test_append_checks_the_head_it_was_judged_against(log: AuditLog) -> None:
    head = log.head()
    before = log.path.read_bytes()
    with log.locked():
        with pytest.raises(StaleHead) as caught:
            log.append({"action": "x"}, after=(2, head["hash"]))
        assert str(caught.value).startswith(f"audit log {log.path}: the head is seq 3, not seq 2 ")
        assert log.path.read_bytes() == before
        assert log.append({"action": "x"}, after=(3, head["hash"]))["seq"] == 4
    empty = AuditLog(log.path.with_name("empty.jsonl"))
    with empty.locked():
        assert empty.append({"action": "x"}, after=(0, GENESIS_HASH))["seq"] == 1


def test_append_creates_the_file_readable_by_all_and_writable_by_owner(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        log = build(tmp_path / "log.jsonl", 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o644


def test_append_cannot_open_says_so(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    log.path.mkdir()
    with log.locked(), pytest.raises(IntegrityFailure) as caught:
        log.append({"action": "x"})
    assert str(caught.value) == f"audit log {log.path}: cannot open: Is a directory"


def test_append_seals_the_complete_entry(log: AuditLog) -> None:
    seen: list[dict[str, Any]] = []

    def seal(entry: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(entry))
        return {"by": "key", "over": entry["hash"]}

    with log.locked():
        entry = log.append({"action": "signed", "ts": TS}, seal=seal)
        unsigned = log.append({"action": "plain", "ts": TS})
    assert seen[0]["seq"] == 4 and seen[0]["hash"] == entry["hash"] and "signature" not in seen[0]
    assert entry["signature"] == {"by": "key", "over": entry["hash"]}
    assert unsigned["signature"] is None
    lines = log.path.read_bytes().splitlines()
    assert json.loads(lines[3]) == entry and json.loads(lines[4]) == unsigned


def test_an_unsealed_entry_writes_nothing(log: AuditLog) -> None:
    before = log.path.read_bytes()

    def seal(entry: dict[str, Any]) -> dict[str, Any]:
        raise Unsealed(entry)

    with log.locked(), pytest.raises(Unsealed) as caught:
        log.append({"action": "x"}, seal=seal)
    assert str(caught.value) == "entry seq 4 is not signed yet"
    assert caught.value.entry["seq"] == 4 and caught.value.entry["action"] == "x"
    assert log.path.read_bytes() == before


def test_append_reaches_the_write_point_once(log: AuditLog) -> None:
    with hook(lambda name: None) as reached, log.locked():
        log.append({"action": "x"})
    assert reached == ["audit-before-write"]


def test_a_failed_write_records_nothing(log: AuditLog) -> None:
    before = log.path.read_bytes()
    with size_limit_at_write(len(before)), log.locked(), pytest.raises(IntegrityFailure) as caught:
        log.append({"action": "x"})
    assert str(caught.value) == f"audit log {log.path}: write failed (File too large); nothing was recorded"
    assert caught.value.errno == errno.EFBIG
    assert log.path.read_bytes() == before
    with log.locked():
        assert log.append({"action": "after"})["seq"] == 4


def test_a_short_write_is_cut_back_off(log: AuditLog) -> None:
    before = log.path.read_bytes()
    with size_limit_at_write(len(before) + 10), log.locked(), pytest.raises(IntegrityFailure) as caught:
        log.append({"action": "x", "ts": TS})
    assert log.path.read_bytes() == before
    message = str(caught.value)
    assert message.startswith(f"audit log {log.path}: short write (10 of ")
    assert message.endswith(" bytes); nothing was recorded")
    assert log.verify() == VerifyReport(valid=True, entries=3)


# -- refusing to build on a bad end ------------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, -1, "4", None])
def test_append_refuses_a_last_entry_without_a_valid_seq(tmp_path: Path, seq: Any) -> None:
    path = tmp_path / "log.jsonl"
    entry = {"action": "x", "hash": "h", "prevHash": GENESIS_HASH, "seq": seq}
    if seq is None:
        del entry["seq"]
    path.write_bytes(canonical_bytes(entry) + b"\n")
    log = AuditLog(path)
    with log.locked(), pytest.raises(IntegrityFailure) as caught:
        log.append({"action": "y"})
    assert str(caught.value) == f"audit log {path}: the last entry has no valid seq; run `slotgen audit verify`"


def test_append_accepts_a_last_entry_at_seq_1(tmp_path: Path) -> None:
    log = build(tmp_path / "log.jsonl", 1)
    with log.locked():
        assert log.append({"action": "y"})["seq"] == 2


def test_append_refuses_a_last_entry_that_fails_its_hash(log: AuditLog) -> None:
    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[-1] = lines[-1].replace(b'"new":"2"', b'"new":"9"')
    log.path.write_bytes(b"".join(lines))
    with log.locked(), pytest.raises(IntegrityFailure) as caught:
        log.append({"action": "y"})
    assert str(caught.value) == (f"audit log {log.path}: the last entry (seq 3) fails its hash check; "
                                 "run `slotgen audit verify`")
    assert caught.value.first_bad == 3


def test_a_last_entry_holding_a_float_fails_its_hash_check(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"hash":"h","ratio":0.5,"seq":1}\n')
    log = AuditLog(path)
    with log.locked(), pytest.raises(IntegrityFailure) as caught:
        log.append({"action": "y"})
    assert "(seq 1) fails its hash check" in str(caught.value) and caught.value.first_bad == 1


def test_append_after_a_torn_line_names_the_repair(log: AuditLog) -> None:
    log.path.write_bytes(log.path.read_bytes() + b'{"torn')
    with log.locked(), pytest.raises(IntegrityFailure) as caught:
        log.append({"action": "y"})
    assert str(caught.value) == (f"audit log {log.path}: the last line is torn (an interrupted write?); "
                                 + REPAIR_HINT)


# -- reading ---------------------------------------------------------------------------------------------


def test_head_skips_a_torn_line_and_refuses_two_damaged_lines(log: AuditLog) -> None:
    good = log.path.read_bytes()
    log.path.write_bytes(good + b"[1,2]\n")  # a complete line that is not an entry
    assert log.head()["seq"] == 3
    log.path.write_bytes(good + b"{}garbage\n{\n")
    with pytest.raises(IntegrityFailure) as caught:
        log.head()
    assert str(caught.value) == f"audit log {log.path}: its last two lines are damaged; run `slotgen audit verify`"


def test_a_single_torn_line_is_not_damage_before_it(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"seq":1')
    log = AuditLog(path)
    assert log.head() is None and log.count() == 0
    assert list(log.lines()) == []


def test_lines_are_the_complete_lines_with_their_newline(log: AuditLog) -> None:
    stored = log.path.read_bytes()
    log.path.write_bytes(stored + b"partial")
    assert b"".join(log.lines()) == stored
    assert all(line.endswith(b"\n") for line in log.lines()) and len(list(log.lines())) == 3
    assert list(AuditLog(log.path.with_name("none.jsonl")).lines()) == []


def test_cache_key_and_identity(log: AuditLog, tmp_path: Path) -> None:
    link = tmp_path / "link.jsonl"
    link.symlink_to(log.path)
    assert AuditLog(link).cache_key() == str(log.path.resolve())
    st = log.path.stat()
    assert log.identity() == [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    assert AuditLog(tmp_path / "none.jsonl").identity() is None


def test_exists_counts_a_dangling_link(tmp_path: Path) -> None:
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "missing")
    assert AuditLog(link).exists() is True
    assert AuditLog(tmp_path / "none.jsonl").exists() is False


def test_count_is_the_head_seq(log: AuditLog) -> None:
    assert log.count() == 3


def test_entries_name_a_torn_line_and_a_non_object(log: AuditLog) -> None:
    stored = log.path.read_bytes()
    log.path.write_bytes(stored + b'{"seq":4')
    with pytest.raises(IntegrityFailure) as caught:
        list(log.entries())
    assert str(caught.value) == f"audit log {log.path}: line 4 is torn (no newline); " + REPAIR_HINT
    assert caught.value.first_bad == 4
    for bad in (b"[1]\n", b"[" * 100_000 + b"\n", b"nope\n"):
        log.path.write_bytes(stored + bad)
        with pytest.raises(IntegrityFailure) as caught:
            list(log.entries())
        assert str(caught.value) == f"audit log {log.path}: line 4 is not a JSON entry"
        assert caught.value.first_bad == 4


def test_verify_passes_anchor_env_and_check_through(log: AuditLog) -> None:
    head = log.head()
    assert log.verify(anchor=(3, head["hash"]), env=ENV) == VerifyReport(valid=True, entries=3)
    assert not log.verify(anchor=(3, "0" * 64)).valid
    assert log.verify(env="prod").first_bad == 1
    report = log.verify(check=lambda entry: "no" if entry["seq"] == 2 else None)
    assert (report.valid, report.first_bad, report.reason) == (False, 2, "no")
    missing = AuditLog(log.path.with_name("none.jsonl"))
    assert missing.verify() == VerifyReport(valid=True, entries=0)
    assert not missing.verify(anchor=(1, head["hash"])).valid


def test_exports_default_to_every_entry(log: AuditLog) -> None:
    out = io.StringIO()
    assert log.export_jsonl(out) == 3
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [1, 2, 3]
    out = io.StringIO()
    assert log.export_jsonl(out, [next(log.entries())]) == 1
    assert len(out.getvalue().splitlines()) == 1
    out = io.StringIO()
    assert log.export_csv(out) == 3
    assert len(out.getvalue().splitlines()) == 4
    out = io.StringIO()
    assert log.export_csv(out, []) == 0
    assert len(out.getvalue().splitlines()) == 1


# -- repair --------------------------------------------------------------------------------------------------


def test_repair_keeps_a_long_cut_beside_the_log(log: AuditLog) -> None:
    fragment = b'{"torn":"' + b"x" * 5000
    log.path.write_bytes(log.path.read_bytes() + fragment)
    calls: list[Any] = []

    def extra(previous: dict[str, Any] | None) -> dict[str, Any]:
        calls.append(previous)
        return {"who": "oncall", "action": "overridden"}

    entry = log.repair(ENV, {"id": "oncall"}, extra=extra)
    digest = hashlib.sha256(fragment).hexdigest()
    evidence = log.path.with_name(f"log.jsonl.cut-{digest[:12]}")
    assert calls == [json.loads(log.path.read_bytes().splitlines()[2])]
    assert entry["action"] == "audit-repair" and entry["who"] == "oncall" and entry["seq"] == 4
    assert entry["details"] == {"cutBytes": len(fragment), "cutSha256": digest,
                                "cutText": fragment[:4096].decode(), "cutSavedAs": evidence.name}
    assert evidence.read_bytes() == fragment
    assert log.verify(env=ENV) == VerifyReport(valid=True, entries=4)


def test_repair_of_exactly_4096_bytes_keeps_no_file(log: AuditLog) -> None:
    fragment = b"y" * 4096
    log.path.write_bytes(log.path.read_bytes() + fragment)
    entry = log.repair(ENV, {"id": "oncall"})
    assert entry["details"]["cutText"] == fragment.decode() and entry["details"]["cutSavedAs"] is None
    assert not list(log.path.parent.glob("*.cut-*"))


def test_repair_keeps_a_given_ts(log: AuditLog) -> None:
    log.path.write_bytes(log.path.read_bytes() + b"torn")
    entry = log.repair(ENV, {"id": "oncall"}, extra=lambda previous: {"ts": TS})
    assert entry["ts"] == TS


def test_repair_seals_before_it_cuts(log: AuditLog) -> None:
    damaged = log.path.read_bytes() + b"torn"
    log.path.write_bytes(damaged)
    seen: list[dict[str, Any]] = []

    def refuse(entry: dict[str, Any]) -> dict[str, Any]:
        seen.append(entry)
        raise Unsealed(entry)

    with pytest.raises(Unsealed):
        log.repair(ENV, {"id": "oncall"}, seal=refuse)
    assert log.path.read_bytes() == damaged
    assert not list(log.path.parent.glob("*.cut-*"))
    assert seen[0]["seq"] == 4 and seen[0]["action"] == "audit-repair"
    seals: list[int] = []

    def accept(entry: dict[str, Any]) -> dict[str, Any]:
        seals.append(entry["seq"])
        return {"sig": entry["hash"]}

    entry = log.repair(ENV, {"id": "oncall"}, seal=accept)
    assert entry["signature"] == {"sig": entry["hash"]} and seals == [4, 4]


def test_repair_refuses_two_damaged_lines_with_words(log: AuditLog) -> None:
    log.path.write_bytes(log.path.read_bytes() + b"garbage\npartial")
    with pytest.raises(IntegrityFailure) as caught:
        log.repair(ENV, {"id": "oncall"})
    assert str(caught.value) == (f"audit log {log.path}: more than the last line is damaged; "
                                 "not repairing — run `slotgen audit verify`")


def test_repair_of_a_missing_log_is_nothing(tmp_path: Path) -> None:
    assert AuditLog(tmp_path / "none.jsonl").repair(ENV, {"id": "oncall"}) is None
    assert not (tmp_path / "none.jsonl").exists()


def test_repair_of_a_log_that_is_only_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"seq":1')
    entry = AuditLog(path).repair(ENV, {"id": "oncall"})
    assert entry["seq"] == 1 and entry["prevHash"] == GENESIS_HASH and entry["details"]["cutBytes"] == 8


# -- the tail reader at its boundaries --------------------------------------------------------------------


def padded_line(prev: dict[str, Any] | None, length: int) -> tuple[dict[str, Any], bytes]:
    """A valid entry after `prev` whose line (newline included) is exactly `length` bytes."""
    entry, line = entry_line({"pad": ""}, prev)
    entry, line = entry_line({"pad": "p" * (length - len(line))}, prev)
    assert len(line) == length
    return entry, line


@pytest.mark.parametrize("length", [70_000, 64 * 1024, 64 * 1024 + 1, 2 * 64 * 1024 + 5])
def test_head_finds_a_last_line_longer_than_a_read_chunk(tmp_path: Path, length: int) -> None:
    first, line1 = padded_line(None, 300)
    second, line2 = padded_line(first, length)
    path = tmp_path / "log.jsonl"
    path.write_bytes(line1 + line2)
    assert AuditLog(path).head() == second
    path.write_bytes(line1 + line2 + b"torn")
    assert AuditLog(path).head() == second
    _, only = padded_line(None, length)
    path.write_bytes(only)
    assert AuditLog(path).head()["seq"] == 1


def test_a_last_line_of_max_line_bytes_is_read_one_more_is_damage(tmp_path: Path) -> None:
    first, line1 = entry_line({"action": "a"}, None)
    second, line2 = padded_line(first, MAX_LINE)
    path = tmp_path / "log.jsonl"
    path.write_bytes(line1 + line2)
    log = AuditLog(path)
    assert log.head() == second
    _, longer = padded_line(first, MAX_LINE + 1)
    path.write_bytes(line1 + longer)
    assert log.head() == first  # too long to be read: taken as a torn line, the entry before is the head
    with log.locked(), pytest.raises(IntegrityFailure, match="the last line is torn"):
        log.append({"action": "y"})
    path.write_bytes(line1 + longer + b"torn")
    with pytest.raises(IntegrityFailure, match="last two lines are damaged"):
        log.head()
    path.write_bytes(line1 + line2 + b"torn")
    assert log.head() == second


def test_an_empty_last_line_is_torn_and_cut_as_one_byte(log: AuditLog) -> None:
    good = log.path.read_bytes()
    log.path.write_bytes(good + b"\n")
    assert log.head()["seq"] == 3
    with log.locked(), pytest.raises(IntegrityFailure, match="the last line is torn"):
        log.append({"action": "y"})
    entry = log.repair(ENV, {"id": "oncall"})
    assert entry["details"]["cutBytes"] == 1 and entry["details"]["cutText"] == "\n"
    assert log.path.read_bytes().startswith(good) and log.verify().valid


def test_a_one_byte_torn_tail_is_cut_whole(log: AuditLog) -> None:
    log.path.write_bytes(log.path.read_bytes() + b"x")
    entry = log.repair(ENV, {"id": "oncall"})
    assert entry["details"]["cutBytes"] == 1 and entry["details"]["cutText"] == "x"
    assert entry["details"]["cutSha256"] == hashlib.sha256(b"x").hexdigest()


def test_two_empty_lines_are_damage(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n\n")
    with pytest.raises(IntegrityFailure, match="its last two lines are damaged"):
        AuditLog(path).head()


def test_repair_of_4097_bytes_keeps_the_file(log: AuditLog) -> None:
    fragment = b"z" * 4097
    log.path.write_bytes(log.path.read_bytes() + fragment)
    entry = log.repair(ENV, {"id": "oncall"})
    name = f"log.jsonl.cut-{hashlib.sha256(fragment).hexdigest()[:12]}"
    assert entry["details"]["cutSavedAs"] == name and entry["details"]["cutText"] == "z" * 4096
    assert log.path.with_name(name).read_bytes() == fragment


def test_the_repair_entry_has_its_fields_and_one_time(log: AuditLog) -> None:
    log.path.write_bytes(log.path.read_bytes() + b"torn")
    hashes: list[str] = []

    def seal(entry: dict[str, Any]) -> None:
        hashes.append(entry["hash"])
        return None

    entry = log.repair(ENV, {"id": "oncall"}, seal=seal)
    assert set(entry) == {"action", "env", "actor", "details", "ts", "seq", "prevHash", "hash", "signature"}
    assert isinstance(entry["ts"], str) and len(entry["ts"]) == len(TS) and entry["ts"].endswith("Z")
    assert hashes == [entry["hash"], entry["hash"]]  # sealed before the cut and at the append: the same entry


def test_a_log_that_cannot_be_opened_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.symlink_to(path)  # a loop: every open fails with ELOOP
    log = AuditLog(path)
    for read in (log.head, lambda: list(log.entries()), log.verify):
        with pytest.raises(IntegrityFailure) as caught:
            read()
        assert str(caught.value) == f"audit log {path}: cannot read: Too many levels of symbolic links"


def test_a_one_byte_file_is_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"{")
    log = AuditLog(path)
    assert log.head() is None
    with log.locked(), pytest.raises(IntegrityFailure, match="the last line is torn"):
        log.append({"action": "y"})
    assert path.read_bytes() == b"{"
