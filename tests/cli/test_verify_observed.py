"""`slotgen verify --observed` through the real CLI, against a workspace walked to a live 5% Beta and telemetry
files written by the runtime's own JSON-lines sink (SPEC section 12): pass, fail, inconclusive, bad input."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from slotgen_ops.clock import now_utc
from slotgen_ops.contract import bucket
from slotgen_ops.runtime.telemetry import JsonlTelemetrySink
from tests.cli.helpers import assert_one_line_error, slotgen
from tests.ops.test_observed_checks import event
from tests.walked import walk

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

    root = tmp_path_factory.mktemp("observed") / "ws"
    with FakeOpenAIServer("ok") as server:
        walk(root, 7, server.base_url)
    time.sleep(6)  # past the runbook's propagationSeconds (5): events from now on are in the window
    return root


def _version(root: Path) -> str:
    return json.loads((root / "allowlists" / "slot-generation-allowlist.v1.json").read_text())["version"]


def _write(root: Path, host: str, docs) -> None:
    with JsonlTelemetrySink(root / "telemetry" / "staging" / f"{host}.jsonl") as sink:
        for doc in docs:
            sink.emit(doc)


def _fleet(root: Path, n: int, **kw) -> list[dict]:
    ts = now_utc() - timedelta(milliseconds=200)
    return [event(f"obs-{i}", ts=ts, version=_version(root), **kw) for i in range(n)]


def _clear(root: Path) -> None:
    folder = root / "telemetry" / "staging"
    for path in folder.glob("*.jsonl*") if folder.exists() else ():
        path.unlink()


def test_a_healthy_fleet_passes_and_the_json_has_the_specified_fields(live):
    _clear(live)
    _write(live, "host-a", _fleet(live, 5000))
    run = slotgen("verify", "--env", "staging", "--observed", "--json", "-w", str(live))
    doc = json.loads(run.stdout)
    assert run.code == 0, run.stdout
    assert doc["outcome"] == "pass" and doc["events"] == 5000
    assert set(doc) >= {"outcome", "window", "events", "hosts", "checks"} and set(doc["window"]) == {"from", "to"}
    assert doc["hosts"] == [{"host": "host-a", "events": 5000, "lastSeen": doc["hosts"][0]["lastSeen"],
                             "current": True}]
    assert [c["name"] for c in doc["checks"]] == ["observed-schema", "observed-controls", "observed-exposure",
                                                  "observed-share", "observed-errors", "observed-latency",
                                                  "observed-volume"]


def test_a_host_at_rollout_0_fails_with_exit_1_and_is_named(live):
    _clear(live)
    _write(live, "host-a", _fleet(live, 300))
    outside = next(f"x-{i}" for i in range(1000) if bucket(f"x-{i}") >= 5)
    _write(live, "host-stale", [event(outside, rollout=0, ts=now_utc() - timedelta(milliseconds=200),
                                      version=_version(live))])
    run = slotgen("verify", "--env", "staging", "--observed", "-w", str(live))
    assert run.code == 1, run.stdout + run.stderr
    assert "observed-exposure  FAIL" in run.stdout and outside in run.stdout
    assert "host host-stale" in run.stdout and "NOT the current controls" in run.stdout
    assert run.stdout.rstrip().endswith("outcome: FAIL")


def test_too_few_events_is_inconclusive_with_exit_3(live):
    _clear(live)
    _write(live, "host-a", _fleet(live, 20))
    run = slotgen("verify", "--env", "staging", "--observed", "--json", "-w", str(live))
    doc = json.loads(run.stdout)
    assert run.code == 3 and doc["outcome"] == "inconclusive"
    assert next(c for c in doc["checks"] if c["name"] == "observed-volume")["detail"] == "20 of 100 events in the window"


def test_a_line_that_is_not_an_event_is_named_and_fails(live):
    _clear(live)
    _write(live, "host-a", _fleet(live, 200))
    with open(live / "telemetry" / "staging" / "host-a.jsonl", "ab") as fh:
        fh.write(b'{"event": "slotgen.execution", "schemaVersion": 1}\n')
    run = slotgen("verify", "--env", "staging", "--observed", "--json", "-w", str(live))
    check = next(c for c in json.loads(run.stdout)["checks"] if c["name"] == "observed-schema")
    assert run.code == 1 and check["detail"].startswith(f"{live / 'telemetry' / 'staging' / 'host-a.jsonl'}:201: ")
    assert "Traceback" not in run.stderr


def test_no_telemetry_configured_is_one_line_and_exit_2(live, tmp_path):
    text = (live / "slotgen.yaml").read_text()
    try:
        (live / "slotgen.yaml").write_text(text.replace("    telemetry:\n      files: telemetry/staging\n", ""))
        run = slotgen("verify", "--env", "staging", "--observed", "-w", str(live))
        assert_one_line_error(run, 2)
        assert "observed verification is off for staging" in run.stderr
    finally:
        (live / "slotgen.yaml").write_text(text)


def test_recording_an_observed_verification_is_refused_for_now(live):
    run = slotgen("verify", "--env", "staging", "--observed", "--decision-record", "DR-9", "-w", str(live))
    assert_one_line_error(run, 2)
