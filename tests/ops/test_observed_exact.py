"""Each observed check's whole document (outcome, detail, counts) on hand-made windows, and every boundary
exactly: the counts an audit entry keeps as evidence are part of the contract, not decoration."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from slotgen_ops.contract import bucket
from slotgen_ops.runbook.runbook import ObservedSettings
from slotgen_ops.verification import events as ev
from slotgen_ops.verification.bounds import binomial_p_value, rate_bounds
from slotgen_ops.verification.events import Event, Reading
from slotgen_ops.verification.observed import Expected, judge_window
from tests.ops.test_observed_checks import CHANGED, LIVE, NOW, event

PARAMS = ObservedSettings(minEvents=10, minGateEvents=10, minOpenaiEvents=10)
AT = CHANGED + timedelta(seconds=30)


def _reading(docs: list[dict], tmp_path=None) -> Reading:
    reading = Reading(directory=tmp_path)
    for i, doc in enumerate(docs):
        reading.events.append(Event("h", f"h.jsonl:{i + 1}", AT, doc))
        reading.last_seen["h"] = AT
    return reading


def _judge(docs: list[dict], **expected) -> dict:
    return {c["name"]: c for c in judge_window(_reading(docs), Expected(**{**LIVE, **expected}), PARAMS, NOW)["checks"]}


def _jobs(n: int, inside: bool, rollout: int = 5) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        if (bucket(f"j-{i}") < rollout) == inside:
            out.append(f"j-{i}")
        i += 1
    return out


def test_the_share_document_and_its_boundaries():
    docs = [event(j) for j in _jobs(1, True)] + [event(j) for j in _jobs(8, False)]
    share = _judge(docs)["observed-share"]
    assert share == {"name": "observed-share", "outcome": "inconclusive", "detail": "9 of 10 events at the rollout gate",
                     "gateEvents": 9, "openai": 1, "expected": 0.05}
    docs.append(event(_jobs(9, False)[-1]))
    share = _judge(docs)["observed-share"]
    p = binomial_p_value(1, 10, 0.05)
    assert share == {"name": "observed-share", "outcome": "pass", "gateEvents": 10, "openai": 1, "expected": 0.05,
                     "pValue": p, "detail": f"1 of 10 on OpenAI (10.0%) against 5%: p = {p:.2g}"}
    off = _judge(docs, feature_on=False)["observed-share"]
    assert off == {"name": "observed-share", "outcome": "not-applicable", "detail": "the feature is off",
                   "gateEvents": 10, "openai": 1}


@pytest.mark.parametrize("rollout, expected", [(0, 1.0), (100, 1.0), (1, 0.01), (99, 0.99), (None, 0.0)])
def test_the_expected_share_of_each_rollout(rollout, expected):
    docs = [event(f"k-{i}", rollout=rollout) for i in range(20)]
    assert _judge(docs, rollout=rollout)["observed-share"]["expected"] == expected


def test_a_share_at_the_srm_alpha_is_a_pass_and_below_it_a_fail():
    n, k = 200, 25  # 12.5% against 5%
    p = binomial_p_value(k, n, 0.05)
    docs = [event(j) for j in _jobs(k, True)] + [event(j) for j in _jobs(n - k, False)]
    at = judge_window(_reading(docs), Expected(**LIVE), ObservedSettings(minGateEvents=10, srmAlpha=p), NOW)
    assert next(c for c in at["checks"] if c["name"] == "observed-share")["outcome"] == "pass"
    above = judge_window(_reading(docs), Expected(**LIVE), ObservedSettings(minGateEvents=10, srmAlpha=p * 1.0001), NOW)
    assert next(c for c in above["checks"] if c["name"] == "observed-share")["outcome"] == "fail"


def test_the_error_document_and_its_boundary():
    jobs = _jobs(40, True)
    docs = [event(j, outcome="FAILED" if i < 20 else None) for i, j in enumerate(jobs)]
    lower, upper = rate_bounds(20, 40, 0.01)
    errors = _judge(docs)["observed-errors"]
    assert errors == {"name": "observed-errors", "outcome": "fail", "openai": 40, "failed": 20, "lower": lower,
                      "upper": upper, "detail": f"20 of 40 failed; the rate is within [{lower:.2%}, {upper:.2%}] "
                                                "(99%), the limit 5.00%"}
    at_lower = judge_window(_reading(docs), Expected(**LIVE),
                            ObservedSettings(minOpenaiEvents=10, maxErrorRate=lower), NOW)
    assert next(c for c in at_lower["checks"] if c["name"] == "observed-errors")["outcome"] == "inconclusive"
    at_upper = judge_window(_reading(docs), Expected(**LIVE),
                            ObservedSettings(minOpenaiEvents=10, maxErrorRate=min(1.0, upper)), NOW)
    assert next(c for c in at_upper["checks"] if c["name"] == "observed-errors")["outcome"] == "pass"
    waiting = _judge(docs[:9])["observed-errors"]
    assert waiting == {"name": "observed-errors", "outcome": "inconclusive", "detail": "9 of 10 OpenAI-path events",
                       "openai": 9, "failed": 9}
    assert _judge(docs[:10])["observed-errors"]["outcome"] == "fail"  # ten of ten failed: enough to judge


def test_the_latency_document_counts_each_event_at_the_bound_as_within():
    jobs = _jobs(12, True)
    docs = [event(j, latency=2000 if i % 2 else 2001) for i, j in enumerate(jobs)]
    latency = _judge(docs)["observed-latency"]
    lower, upper = rate_bounds(6, 12, 0.01)
    assert upper < 0.95
    assert latency == {"name": "observed-latency", "outcome": "fail",
                       "openai": 12, "within": 6, "lower": lower, "upper": upper, "boundMs": 2000,
                       "detail": f"6 of 12 within 2000 ms; the share within is in [{lower:.1%}, {upper:.1%}] (99%): "
                                 "the p95 is above it"}


def test_volume_schema_exposure_and_controls_documents():
    docs = [event(j) for j in _jobs(9, False)]
    checks = _judge(docs)
    assert checks["observed-volume"] == {"name": "observed-volume", "outcome": "inconclusive",
                                         "detail": "9 of 10 events in the window", "events": 9}
    docs.append(event(_jobs(10, False)[-1]))
    assert _judge(docs)["observed-volume"] == {"name": "observed-volume", "outcome": "pass",
                                               "detail": "10 events in the window", "events": 10}
    assert _judge(docs)["observed-exposure"] == {
        "name": "observed-exposure", "outcome": "pass", "openai": 0,
        "detail": "0 OpenAI-path events, each allowed by the recorded controls and its own; every bucket is its jobId's"}
    assert _judge(docs)["observed-controls"] == {"name": "observed-controls", "outcome": "pass", "hosts": [],
                                                 "detail": "every host carries the recorded controls (10 events)"}
    reading = _reading(docs)
    for text in ("a: one", "b: two", "c: three"):
        reading.problem(text)
    schema = next(c for c in judge_window(reading, Expected(**LIVE), PARAMS, NOW)["checks"]
                  if c["name"] == "observed-schema")
    assert schema == {"name": "observed-schema", "outcome": "fail", "detail": "a: one (and 2 more)", "problems": 3}


def test_a_stub_event_with_no_bucket_is_fine_and_an_openai_one_without_is_not():
    job = _jobs(1, True)[0]
    assert _judge([event(job, path="stub", job_bucket=None)])["observed-exposure"]["outcome"] == "pass"
    assert _judge([event(job, path="openai", job_bucket=None)])["observed-exposure"]["outcome"] == "fail"
    assert _judge([event("x", path="stub", job_bucket=3) | {"jobId": None}])["observed-exposure"]["outcome"] == "fail"


def test_hosts_are_those_seen_since_an_hour_before_the_change():
    reading = _reading([event(j) for j in _jobs(3, False)])
    reading.last_seen.update({"old": CHANGED - timedelta(hours=1, seconds=1),
                              "edge": CHANGED - timedelta(hours=1)})
    doc = judge_window(reading, Expected(**LIVE), PARAMS, NOW)
    assert [h["host"] for h in doc["hosts"]] == ["edge", "h"]
    controls = next(c for c in doc["checks"] if c["name"] == "observed-controls")
    assert controls["outcome"] == "inconclusive" and controls["hosts"] == ["edge"]
    assert doc["window"] == {"from": "2026-12-07T12:00:05Z", "to": "2026-12-07T12:10:00Z"} and doc["events"] == 3


def _lines(tmp_path, data: bytes) -> list:
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(ev._lines(fd))
    finally:
        os.close(fd)


def test_lines_at_and_over_the_bound_and_what_follows_a_long_one(tmp_path):
    exact = b"a" * ev.MAX_LINE
    assert _lines(tmp_path, b"\n" + exact + b"\nb\n") == [(1, b""), (2, exact), (3, b"b")]
    over = b"a" * (ev.MAX_LINE + 1)
    assert _lines(tmp_path, over + b"\nb\n") == [(1, None), (2, b"b")]
    huge = b"a" * (ev.MAX_LINE * 3)
    assert _lines(tmp_path, huge + b"\nnext\n" + b"tail") == [(1, None), (2, b"next")]


# -- reading a directory: every problem counted, nothing after it lost -----------------------------------------

def _write_lines(path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _doc(job: str, ts) -> bytes:
    import json

    return json.dumps(event(job, ts=ts)).encode()


def test_every_bad_line_is_counted_and_the_good_lines_after_each_are_read(tmp_path):
    good = [_doc(f"g-{i}", AT) for i in range(6)]
    lines = [good[0], b"{nope", good[1], b'{"event": 1}', good[2], _doc("late", NOW + timedelta(seconds=9)), good[3],
             b"a" * (ev.MAX_LINE + 1), good[4], good[5]]
    _write_lines(tmp_path / "h.jsonl", lines)
    reading = ev.read_directory(tmp_path, CHANGED, NOW)
    assert len(reading.events) == 6 and reading.problem_count == 4
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in reading.problems] == ["2", "4", "6", "8"]
    assert reading.problems[1].startswith(f"{tmp_path / 'h.jsonl'}:4: not a valid event (")


def test_the_first_twenty_problems_are_kept_and_all_are_counted(tmp_path):
    _write_lines(tmp_path / "h.jsonl", [b"{nope"] * 25)
    reading = ev.read_directory(tmp_path, CHANGED, NOW)
    assert reading.problem_count == 25 and len(reading.problems) == 20


def test_the_clock_skew_allowance_and_the_window_start_are_exact(tmp_path):
    edge = NOW + timedelta(seconds=ev.SKEW_S)
    over = NOW + timedelta(seconds=ev.SKEW_S, microseconds=1000)
    _write_lines(tmp_path / "h.jsonl", [_doc("at-since", CHANGED), _doc("before", CHANGED - timedelta(milliseconds=1)),
                                       _doc("edge", edge), _doc("over", over)])
    reading = ev.read_directory(tmp_path, CHANGED, NOW)
    assert [e.doc["jobId"] for e in reading.events] == ["at-since", "edge"]
    assert reading.problem_count == 1 and "over" not in reading.problems[0] and ":4: ts" in reading.problems[0]
    assert reading.last_seen == {"h": edge}  # the latest valid event, even one before the window


def test_rotations_are_read_oldest_first_a_line_read_twice_counts_once_and_hosts_are_their_files(tmp_path):
    first, second, third = _doc("a", AT), _doc("b", AT + timedelta(seconds=1)), _doc("c", AT + timedelta(seconds=2))
    _write_lines(tmp_path / "h.jsonl.2", [first])
    _write_lines(tmp_path / "h.jsonl.1", [first, second])  # a copy of a line already read (a rotation mid-read)
    _write_lines(tmp_path / "h.jsonl", [third])
    _write_lines(tmp_path / "g.jsonl", [first])
    reading = ev.read_directory(tmp_path, CHANGED, NOW)
    assert [(e.host, e.doc["jobId"]) for e in reading.events] == [("g", "a"), ("h", "a"), ("h", "b"), ("h", "c")]
    assert reading.events[1].where == f"{tmp_path / 'h.jsonl.2'}:1"
    assert reading.last_seen == {"g": AT, "h": AT + timedelta(seconds=2)}
    assert [host for host, _, _ in ev._files(tmp_path)] == ["g", "h", "h", "h"]
    assert [rotation for _, rotation, _ in ev._files(tmp_path)] == [-1, 2, 1, -1]


def test_what_is_not_a_file_of_events_is_named_by_kind(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    os.symlink("/dev/null", tmp_path / "n.jsonl")
    reading = ev.read_directory(tmp_path, CHANGED, NOW)
    assert sorted(reading.problems) == [f"{tmp_path / 'd.jsonl'}: a directory, not a file of events",
                                        f"{tmp_path / 'n.jsonl'}: not a regular file, not a file of events"]


def test_a_file_that_cannot_be_opened_is_named(tmp_path):
    os.symlink(tmp_path / "nowhere" / "x", tmp_path / "loop.jsonl")
    os.symlink(tmp_path / "self.jsonl", tmp_path / "self.jsonl")
    reading = ev.read_directory(tmp_path, CHANGED, NOW)
    assert reading.problems == [f"{tmp_path / 'self.jsonl'}: cannot read it (Too many levels of symbolic links)"]
