"""The rehearsal host's reading of its controls (runtime/traffic.py): as a runtime reads an env-file, failing
closed on anything it cannot read or parse, and looking again within a second unless it is stale."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from slotgen_ops.runtime.traffic import REREAD_S, TrafficHost, read_env_file

LIVE = b"SLOTGEN_AI_KILL=false\nFEATURE_SLOTGEN_AI=true\nSLOTGEN_AI_ROLLOUT_PERCENT=5\nSLOTGEN_AI_ALLOWLIST_PATH=\n"
ENGAGED = LIVE.replace(b"SLOTGEN_AI_KILL=false", b"SLOTGEN_AI_KILL=true")
JOB = {"jobId": "x", "kind": "question-slots", "subject": "mathematics", "level": "gcse", "board": "aqa",
       "specVersion": "8300", "metadata": {"allowAI": True}, "payload": {"slotCount": 1, "topic": "t"}}


def test_an_env_file_is_read_as_its_controls(tmp_path):
    (tmp_path / "c.env").write_bytes(LIVE)
    assert read_env_file(tmp_path / "c.env")["SLOTGEN_AI_ROLLOUT_PERCENT"] == "5"


@pytest.mark.parametrize("make", ["missing", "fifo", "grammar", "huge"])
def test_what_cannot_be_read_is_no_controls_at_all(tmp_path, make):
    path = tmp_path / "c.env"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "grammar":
        path.write_bytes(LIVE + b"SLOTGEN_AI_KILL=false\r\n")
    elif make == "huge":
        path.write_bytes(LIVE + b"# " + b"x" * 8000 + b"\n")
    assert read_env_file(path) == {}


def _host(tmp_path, stale: bool) -> TrafficHost:
    return TrafficHost(env="staging", host="h", controls_path=tmp_path / "c.env", telemetry_dir=tmp_path / "t",
                       jobs=[JOB], executor_config=None, allowlist_base=tmp_path, rate=200, stale=stale)


def test_an_unreadable_file_sends_every_job_to_the_stub(tmp_path):
    (tmp_path / "c.env").write_bytes(b"\x00")
    host = _host(tmp_path, stale=False)
    assert not host.runtime.controls.feature_on
    host.run(duration=0.1)
    events = [json.loads(line) for line in (tmp_path / "t" / "h.jsonl").read_text().splitlines()]
    assert events and all(e["path"] == "stub" and e["decidedBy"] == "feature-flag" for e in events)


@pytest.mark.parametrize("stale", [False, True])
def test_a_change_is_in_force_within_a_second_unless_the_host_is_stale(tmp_path, stale):
    (tmp_path / "c.env").write_bytes(ENGAGED)
    host = _host(tmp_path, stale)

    def change() -> None:
        time.sleep(0.3)
        (tmp_path / "c.env").write_bytes(LIVE.replace(b"5", b"7"))

    threading.Thread(target=change).start()
    counts = host.run(duration=0.3 + REREAD_S + 0.7)
    events = [json.loads(line) for line in (tmp_path / "t" / "h.jsonl").read_text().splitlines()]
    assert counts["jobs"] == len(events) > 100
    if stale:
        assert counts["rereads"] == 0 and all(e["killSwitch"] for e in events)
    else:
        assert counts["rereads"] == 1 and events[-1]["rolloutPercent"] == 7 and not events[-1]["killSwitch"]
