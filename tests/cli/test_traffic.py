"""`slotgen traffic`, real hosts in real processes against a workspace live at 5% and the local endpoint: a host
re-reads its controls within a second of a rollback, a `--stale` host never does, and `verify --observed`
names the stale one from what the hosts wrote (SPEC section 12)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from slotgen_ops.clock import parse_utc
from tests.cli.helpers import assert_one_line_error, clean_env, command, slotgen
from tests.walked import API_KEY, walk


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

    root = tmp_path_factory.mktemp("traffic") / "ws"
    with FakeOpenAIServer("ok") as server:
        walk(root, 7, server.base_url)
        time.sleep(6)  # past propagationSeconds
        yield root


def _host(root: Path, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(command("traffic", "--env", "staging", "--host", name, "--rate", "100", "--duration",
                                    "9", "-w", str(root), *extra),
                            env=clean_env({"OPENAI_API_KEY": API_KEY}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _events(root: Path, host: str) -> list[dict]:
    return [json.loads(line) for line in (root / "telemetry" / "staging" / f"{host}.jsonl").read_text().splitlines()]


def test_a_host_follows_a_rollback_within_a_second_and_a_stale_one_is_named(live):
    hosts = [_host(live, "host-a"), _host(live, "host-stale", "--stale")]
    time.sleep(2.5)
    run = slotgen("rollback", "--env", "staging", "--reason", "rehearsal", "--operator", "oncall", "--json",
                  "-w", str(live), env={"OPENAI_API_KEY": API_KEY})
    assert run.code == 0, run.stdout + run.stderr
    outputs = [proc.communicate(timeout=60) for proc in hosts]
    assert [proc.returncode for proc in hosts] == [0, 0], outputs
    # A rollback writes the controls file twice (the kill-switch first, then the head of the entry recording it):
    # a host may see both writes or only the last one, so it re-reads once or twice; a stale host never does.
    assert re.search(r"controls re-read [12] time\(s\)", outputs[0][0]), outputs[0][0]
    assert "controls re-read 0 time(s)" in outputs[1][0]

    entries = [json.loads(line) for line in (live / "environments" / "staging.audit.jsonl").read_text().splitlines()]
    rolled_back = parse_utc(next(e for e in reversed(entries) if e["action"] == "rollback")["ts"])
    following = [e for e in _events(live, "host-a") if parse_utc(e["ts"]) > rolled_back + timedelta(seconds=1)]
    assert following and all(e["killSwitch"] and e["path"] == "stub" for e in following)
    before = [e for e in _events(live, "host-a") if parse_utc(e["ts"]) < rolled_back]
    assert any(e["path"] == "openai" for e in before)
    stale = _events(live, "host-stale")
    assert not any(e["killSwitch"] for e in stale) and any(e["path"] == "openai" for e in stale)

    judged = slotgen("verify", "--env", "staging", "--observed", "--json", "-w", str(live))
    doc = json.loads(judged.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert judged.code == 1 and doc["outcome"] == "fail"
    assert checks["observed-controls"]["hosts"] == ["host-stale"]
    assert checks["observed-exposure"]["outcome"] == "fail" and checks["observed-exposure"]["host"] == "host-stale"
    assert {h["host"]: h["current"] for h in doc["hosts"]} == {"host-a": True, "host-stale": False}


def test_a_bad_host_name_is_one_line(live):
    assert_one_line_error(slotgen("traffic", "--env", "staging", "--host", "../x", "--duration", "1",
                                  "-w", str(live)), 2)
