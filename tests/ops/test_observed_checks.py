"""Observed verification's reader and checks (verification/events.py, verification/observed.py), on real
telemetry files written by the runtime's own JSON-lines sink: each check's pass, fail and inconclusive, and
every kind of bad input named FILE:LINE, never skipped and never a traceback."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from slotgen_ops.clock import utc
from slotgen_ops.contract import bucket
from slotgen_ops.runtime.telemetry import JsonlTelemetrySink
from slotgen_ops.verification.events import MAX_LINE, read_directory
from slotgen_ops.runbook.runbook import ObservedSettings
from slotgen_ops.verification.observed import Expected, judge_window

CHANGED = datetime(2026, 12, 7, 12, 0, 0, tzinfo=timezone.utc)
NOW = CHANGED + timedelta(minutes=10)
PARAMS = ObservedSettings()
LIVE = dict(env="staging", kill_engaged=False, feature_on=True, rollout=5, allowlist_version="beta-1",
            latency_bound_ms=2000, changed_at=CHANGED)


def event(job: str, *, path: str | None = None, rollout: int | None = 5, kill: bool = False, feature: bool = True,
          outcome: str | None = None, latency: int = 100, ts: datetime | None = None, env: str = "staging",
          version: str | None = "beta-1", job_bucket: Any = "auto") -> dict[str, Any]:
    b = bucket(job) if job_bucket == "auto" else job_bucket
    if path is None:
        admitted = not kill and feature and rollout is not None and (rollout == 0 or b < rollout)
        path = "openai" if admitted else "stub"
    decided = None if path == "openai" else ("kill-switch" if kill else "feature-flag" if not feature else "rollout")
    code = {None: None, "kill-switch": "KILL_SWITCH", "feature-flag": "FEATURE_DISABLED",
            "rollout": "ROLLOUT_EXCLUDED"}[decided]
    outcome = outcome or ("COMPLETED" if path == "openai" else "STUB")
    if outcome == "FAILED":
        code = "OPENAI_HTTP_ERROR"
    return {"event": "slotgen.execution", "schemaVersion": 1,
            "ts": utc(ts or CHANGED + timedelta(seconds=30)), "jobId": job, "path": path, "outcome": outcome,
            "code": code, "bucket": b, "decidedBy": decided, "allowlistVersion": version, "rolloutPercent": rollout,
            "killSwitch": kill, "featureFlag": feature, "latencyMs": latency if path == "openai" else 0,
            "attempts": 1 if path == "openai" else 0, "model": "gpt-4o-mini" if path == "openai" else None,
            "env": env}


def write(folder: Path, host: str, events: list[dict[str, Any]]) -> Path:
    with JsonlTelemetrySink(folder / f"{host}.jsonl") as sink:
        for doc in events:
            sink.emit(doc)
    return folder / f"{host}.jsonl"


def healthy(n: int, prefix: str = "job", **kw: Any) -> list[dict[str, Any]]:
    return [event(f"{prefix}-{i}", **kw) for i in range(n)]


def judged(folder: Path, **expected: Any) -> dict[str, Any]:
    reading = read_directory(folder, CHANGED - timedelta(hours=1), NOW)
    return judge_window(reading, Expected(**{**LIVE, **expected}), PARAMS, NOW)


def outcome_of(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["checks"] if c["name"] == name)


def openai_jobs(n: int, rollout: int = 5, start: int = 0) -> list[str]:
    out, i = [], start
    while len(out) < n:
        if bucket(f"job-{i}") < rollout:
            out.append(f"job-{i}")
        i += 1
    return out


def test_a_healthy_fleet_passes_every_check(tmp_path):
    write(tmp_path, "host-a", healthy(2000))
    write(tmp_path, "host-b", healthy(2000, "other"))
    result = judged(tmp_path)
    assert {c["name"]: c["outcome"] for c in result["checks"]} == {
        "observed-schema": "pass", "observed-controls": "pass", "observed-exposure": "pass", "observed-share": "pass",
        "observed-errors": "pass", "observed-latency": "pass", "observed-volume": "pass"}
    assert result["outcome"] == "pass" and result["events"] == 4000
    assert [h["host"] for h in result["hosts"]] == ["host-a", "host-b"] and all(h["current"] for h in result["hosts"])


def test_too_little_data_is_inconclusive_and_says_what_it_waits_for(tmp_path):
    write(tmp_path, "host-a", healthy(40))
    result = judged(tmp_path)
    assert result["outcome"] == "inconclusive"
    assert outcome_of(result, "observed-volume")["detail"] == "40 of 100 events in the window"
    assert outcome_of(result, "observed-share")["detail"] == "40 of 100 events at the rollout gate"
    assert outcome_of(result, "observed-errors")["outcome"] == "inconclusive"


def test_no_directory_yet_waits(tmp_path):
    result = judged(tmp_path / "missing")
    assert result["outcome"] == "inconclusive"
    assert "does not exist" in outcome_of(result, "observed-volume")["detail"]


def test_one_event_past_the_rung_is_proof(tmp_path):
    outside = next(f"job-{i}" for i in range(1000) if bucket(f"job-{i}") >= 5)
    write(tmp_path, "host-a", healthy(500) + [event(outside, path="openai", rollout=0)])
    result = judged(tmp_path)
    check = outcome_of(result, "observed-exposure")
    assert result["outcome"] == "fail" and check["outcome"] == "fail"
    assert check["jobId"] == outside and check["host"] == "host-a" and "the recorded controls" in check["detail"]
    # the host carried rollout 0 (the gate disabled): its controls are stale too, and it is named
    assert outcome_of(result, "observed-controls")["hosts"] == ["host-a"]


def test_an_event_whose_bucket_is_not_its_jobs_fails_exposure(tmp_path):
    write(tmp_path, "host-a", healthy(200) + [event("job-x", path="stub", job_bucket=(bucket("job-x") + 1) % 100)])
    check = outcome_of(judged(tmp_path), "observed-exposure")
    assert check["outcome"] == "fail" and f"its bucket is {bucket('job-x')}" in check["detail"]


def test_openai_with_the_kill_switch_recorded_fails_and_the_rest_does_not_apply(tmp_path):
    job = openai_jobs(1)[0]
    write(tmp_path, "host-a", healthy(200, kill=True) + [event(job)])
    result = judged(tmp_path, kill_engaged=True)
    assert outcome_of(result, "observed-exposure")["outcome"] == "fail"
    for name in ("observed-share", "observed-errors", "observed-latency"):
        assert outcome_of(result, name)["outcome"] == "not-applicable"
        assert outcome_of(result, name)["detail"] == "the kill-switch is engaged"


def test_a_stale_host_fails_controls_and_is_named_with_its_last_event(tmp_path):
    write(tmp_path, "host-a", healthy(300))
    write(tmp_path, "host-b", healthy(300, "b", rollout=1))
    result = judged(tmp_path)
    check = outcome_of(result, "observed-controls")
    assert check["outcome"] == "fail" and check["hosts"] == ["host-b"] and "rollout 1" in check["detail"]
    assert {h["host"]: h["current"] for h in result["hosts"]} == {"host-a": True, "host-b": False}


def test_a_host_silent_since_the_change_holds_controls_inconclusive(tmp_path):
    write(tmp_path, "host-a", healthy(300))
    write(tmp_path, "host-b", [event("b-1", ts=CHANGED - timedelta(minutes=5))])
    check = outcome_of(judged(tmp_path), "observed-controls")
    assert check["outcome"] == "inconclusive" and check["hosts"] == ["host-b"]


def test_events_before_the_window_are_not_judged(tmp_path):
    early = CHANGED + timedelta(seconds=PARAMS.propagationSeconds - 1)
    write(tmp_path, "host-a", healthy(300) + [event("old", rollout=1, ts=early)])
    result = judged(tmp_path)
    assert outcome_of(result, "observed-controls")["outcome"] == "pass" and result["events"] == 300


def test_a_share_far_from_the_rollout_fails(tmp_path):
    jobs = openai_jobs(60)
    stub = [event(f"job-{i}") for i in range(3000) if bucket(f"job-{i}") >= 5][:540]
    write(tmp_path, "host-a", [event(j) for j in jobs] + stub)  # 10% on OpenAI against 5%
    check = outcome_of(judged(tmp_path), "observed-share")
    assert check["outcome"] == "fail" and "60 of 600" in check["detail"]


def test_the_error_rate_fails_when_surely_over_and_straddles_near_the_limit(tmp_path):
    jobs = openai_jobs(400)
    write(tmp_path, "host-a", [event(j, outcome="FAILED" if k % 4 == 0 else None) for k, j in enumerate(jobs)])
    assert outcome_of(judged(tmp_path), "observed-errors")["outcome"] == "fail"
    os.unlink(tmp_path / "host-a.jsonl")
    write(tmp_path, "host-a", [event(j, outcome="FAILED" if k % 16 == 0 else None) for k, j in enumerate(jobs)])
    assert outcome_of(judged(tmp_path), "observed-errors")["outcome"] == "inconclusive"


def test_latency_over_the_bound_fails(tmp_path):
    write(tmp_path, "host-a", [event(j, latency=2500) for j in openai_jobs(300)])
    assert outcome_of(judged(tmp_path), "observed-latency")["outcome"] == "fail"
    assert outcome_of(judged(tmp_path, latency_bound_ms=2500), "observed-latency")["outcome"] == "pass"


@pytest.mark.parametrize("line, why", [
    (b"{not json\n", "not JSON"),
    (b'{"event": "slotgen.execution"}\n', "not a valid event"),
    (b"[" * 100_000 + b"\n", f"a line over {MAX_LINE} bytes"),
])
def test_a_bad_line_is_named_file_line_and_fails_schema(tmp_path, line, why):
    path = write(tmp_path, "host-a", healthy(150))
    with open(path, "ab") as fh:
        fh.write(line)
    check = outcome_of(judged(tmp_path), "observed-schema")
    assert check["outcome"] == "fail" and check["detail"].startswith(f"{path}:151: {why}")


def test_an_event_from_the_future_is_named(tmp_path):
    path = write(tmp_path, "host-a", healthy(150) + [event("late", ts=NOW + timedelta(minutes=2))])
    check = outcome_of(judged(tmp_path), "observed-schema")
    assert check["outcome"] == "fail" and check["detail"].startswith(f"{path}:151: ts") and "future" in check["detail"]


def test_a_half_written_last_line_is_not_read_yet(tmp_path):
    path = write(tmp_path, "host-a", healthy(150))
    with open(path, "ab") as fh:
        fh.write(b'{"event": "slotgen.exec')
    result = judged(tmp_path)
    assert outcome_of(result, "observed-schema")["outcome"] == "pass" and result["events"] == 150


def test_rotated_files_are_read_and_a_fifo_is_named_not_waited_on(tmp_path):
    write(tmp_path, "host-a", healthy(100))
    os.rename(tmp_path / "host-a.jsonl", tmp_path / "host-a.jsonl.1")
    write(tmp_path, "host-a", healthy(100, "later"))
    os.mkfifo(tmp_path / "host-b.jsonl")
    (tmp_path / "notes.txt").write_text("not telemetry")
    result = judged(tmp_path)
    assert result["events"] == 200
    assert outcome_of(result, "observed-schema")["detail"].startswith(f"{tmp_path / 'host-b.jsonl'}: a FIFO")


def test_a_directory_that_is_a_file_is_named(tmp_path):
    (tmp_path / "telemetry").write_text("")
    result = judged(tmp_path / "telemetry")
    assert outcome_of(result, "observed-volume")["detail"].endswith("not a directory")
    assert result["outcome"] == "inconclusive"


def test_the_evidence_an_entry_keeps_is_canonical_json(tmp_path):
    from slotgen_ops.audit.canonical import canonical_bytes
    from slotgen_ops.verification.observe import evidence

    write(tmp_path, "host-a", healthy(2000))
    kept = evidence(judged(tmp_path))
    canonical_bytes(kept)  # no float survives: canonical JSON refuses them
    share = outcome_of(kept, "observed-share")
    assert share["expected"] == "0.05" and isinstance(share["pValue"], str)
