"""A log cut short is reported as truncated, naming the first missing entry, however little was cut
(SPEC section 3); only an entry that is there with another hash says "rewritten" (firstBad 1)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from slotgen_ops.audit.canonical import _dumps
from slotgen_ops.audit.review import verify_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))
from helpers_runbook import T0, MemoryLog  # noqa: E402


def _log(n: int = 6) -> tuple[list[bytes], tuple[int, str]]:
    log = MemoryLog()
    log.init(T0)
    for i in range(n - 1):
        log.rollback(T0 + timedelta(minutes=i + 1))
    head = log.entries[-1]
    return [_dumps(e) + b"\n" for e in log.entries], (head["seq"], head["hash"])


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_a_log_cut_by_some_entries_is_truncated_from_the_first_missing_one(cut):
    lines, anchor = _log(6)
    report = verify_lines(lines[:-cut], anchor=anchor, env="staging")
    assert not report.valid
    assert report.first_bad == 6 - cut + 1 and report.entries == 6 - cut
    assert "(truncated)" in report.reason and "rewritten" not in report.reason
    missing = "entry 6 is missing" if cut == 1 else f"entries {6 - cut + 1}..6 are missing"
    assert missing in report.reason


def test_an_empty_log_under_a_controls_head_is_truncated_from_entry_1():
    lines, anchor = _log(3)
    report = verify_lines([], anchor=anchor, env="staging")
    assert not report.valid and report.first_bad == 1 and "entries 1..3 are missing (truncated)" in report.reason


def test_the_same_length_with_another_head_is_rewritten_from_entry_1():
    lines, (seq, _) = _log(4)
    report = verify_lines(lines, anchor=(seq, "f" * 64), env="staging")
    assert not report.valid and report.first_bad == 1 and "rewritten" in report.reason


def test_a_log_one_entry_longer_than_its_anchor_is_not_an_error():
    lines, _ = _log(4)
    shorter, anchor = _log(3)
    assert lines[:3] == shorter
    assert verify_lines(lines, anchor=anchor, env="staging").valid
