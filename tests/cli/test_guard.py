"""`slotgen guard` as a real process on a workspace live at 5%: it writes nothing while the fleet is healthy,
stops cleanly on SIGTERM, and when one event breaches exposure it engages the kill-switch within one interval
plus a second, with the reason and the evidence in the entry (SPEC section 12)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from slotgen_ops.clock import now_utc
from slotgen_ops.contract import bucket
from slotgen_ops.runtime.telemetry import JsonlTelemetrySink
from tests.cli.helpers import assert_one_line_error, clean_env, command, slotgen
from tests.ops.test_observed_checks import event
from tests.walked import walk


@pytest.fixture
def live(tmp_path):
    from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

    root = tmp_path / "ws"
    with FakeOpenAIServer("ok") as server:
        walk(root, 7, server.base_url)
    return root


def _entries(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "environments" / "staging.audit.jsonl").read_text().splitlines()]


def _emit(root: Path, host: str, docs: list[dict]) -> None:
    with JsonlTelemetrySink(root / "telemetry" / "staging" / f"{host}.jsonl") as sink:
        for doc in docs:
            sink.emit(doc)


def _version(root: Path) -> str:
    return json.loads((root / "allowlists" / "slot-generation-allowlist.v1.json").read_text())["version"]


def _guard(root: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(command("guard", "--env", "staging", "--interval", "1", "--json", "-w", str(root), *extra),
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_healthy_or_waiting_it_writes_nothing_and_sigterm_stops_it(live):
    before = (live / "environments" / "staging.audit.jsonl").read_bytes()
    guard = _guard(live)
    time.sleep(3.5)
    guard.send_signal(signal.SIGTERM)
    out, err = guard.communicate(timeout=30)
    assert guard.returncode == 0, err
    rounds = [json.loads(line) for line in out.splitlines()]
    assert len(rounds) >= 2 and all(r["outcome"] == "inconclusive" for r in rounds)
    assert (live / "environments" / "staging.audit.jsonl").read_bytes() == before
    assert "Traceback" not in err


def test_one_event_past_the_rung_engages_the_kill_switch_within_an_interval_and_a_second(live):
    time.sleep(5.5)  # past propagationSeconds
    guard = _guard(live, "--operator", "oncall", "--key", str(live / "demo-keys" / "oncall"))
    time.sleep(1.5)
    outside = next(f"x-{i}" for i in range(1000) if bucket(f"x-{i}") >= 5)
    _emit(live, "host-x", [event(outside, rollout=0, ts=now_utc() - timedelta(milliseconds=100),
                                 version=_version(live))])
    written = time.monotonic()
    while guard.poll() is None and time.monotonic() - written < 10:
        if b"SLOTGEN_AI_KILL=true" in (live / "environments" / "staging.env").read_bytes():
            break
        time.sleep(0.02)
    engaged_after = time.monotonic() - written
    out, err = guard.communicate(timeout=60)
    assert guard.returncode == 1, (out, err)
    assert engaged_after <= 1 + 1, engaged_after  # one interval plus one second
    last = _entries(live)[-1]
    assert last["action"] == "rollback" and last["new"] == "true"
    assert last["reason"].startswith("guard: observed-") and outside in last["reason"]
    evidence = last["details"]["evidence"]
    assert last["details"]["trigger"] == "guard" and evidence["outcome"] == "fail"
    exposure = next(c for c in evidence["checks"] if c["name"] == "observed-exposure")
    assert exposure["jobId"] == outside and exposure["host"] == "host-x"
    assert json.loads(out.splitlines()[-1])["rolledBack"] is True


def test_without_telemetry_configured_it_does_not_start(live):
    text = (live / "slotgen.yaml").read_text()
    (live / "slotgen.yaml").write_text(text.replace("    telemetry:\n      files: telemetry/staging\n", ""))
    assert_one_line_error(slotgen("guard", "--env", "staging", "--once", "-w", str(live)), 2)
