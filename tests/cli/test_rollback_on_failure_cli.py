"""After a failed check the tool engages the kill-switch at once, records the
failure and the rollback, and exits 1 — for every way the OpenAI path can fail.
Real CLI processes, a real local OpenAI-compatible server process."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .helpers import slotgen

DR = ["--decision-record", "DR-42"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port_file = tmp_path_factory.mktemp("srv") / "port"
    proc = subprocess.Popen([sys.executable, "-m", "slotgen_ops.runtime.fakeserver", "--mode", "ok", "--port", "0",
                             "--port-file", str(port_file), "--delay", "0.6"])
    for _ in range(200):
        if port_file.exists() and port_file.read_text().strip():
            break
        time.sleep(0.05)
    origin = f"http://127.0.0.1:{port_file.read_text().strip()}"
    yield origin
    proc.terminate()
    proc.wait(timeout=10)


def set_mode(origin: str, mode: str) -> None:
    request = urllib.request.Request(f"{origin}/_mode", data=json.dumps({"mode": mode}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


def walk_live(ws: Path, env: dict) -> None:
    def run(*args: str):
        result = slotgen(*args, "--workspace", str(ws), env=env)
        assert result.code == 0, (args, result.stderr)
        return result

    run("set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, "--operator", "owner", "--yes")
    run("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", *DR, "--operator", "oncall", "--yes")
    run("set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json", *DR,
        "--operator", "owner", "--yes")
    apv = run("approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", *DR, "--operator", "approver", "--yes",
              "--json").json()["approvalId"]
    run("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", *DR, "--approval", apv, "--operator", "oncall", "--yes")
    run("verify", "--env", "staging", *DR, "--operator", "oncall")
    run("set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, "--operator", "owner", "--yes")


@pytest.mark.parametrize("mode, failed_check", [
    ("schema_invalid", "error-codes"),
    ("http500", "error-codes"),
    ("nonjson", "error-codes"),
    ("slow", "latency"),
])
def test_failed_check_rolls_back_and_is_recorded(tmp_path, server, mode, failed_check):
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    if mode == "slow":  # a bound the slow endpoint exceeds at this rollout level
        runbook = ws / "runbooks" / "beta-enable.yaml"
        runbook.write_text(runbook.read_text().replace('"1": 3000', '"1": 300').replace('"0": 2000', '"0": 300'))
        for args in (("approve", "--env", "staging", "--config", *DR, "--operator", "approver", "--yes", "--json"),):
            approval = slotgen(*args, "--workspace", str(ws)).json()["approvalId"]
        accept = slotgen("config", "accept", "--env", "staging", *DR, "--approval", approval, "--operator", "owner",
                         "--workspace", str(ws))
        assert accept.code == 0, accept.stderr  # a pinned policy change, accepted as an operator would
    env = {"OPENAI_BASE_URL": f"{server}/v1", "OPENAI_API_KEY": "local"}
    set_mode(server, "ok")
    walk_live(ws, env)
    assert "SLOTGEN_AI_KILL=false" in (ws / "environments" / "staging.env").read_text()
    set_mode(server, mode)
    try:
        run = slotgen("verify", "--env", "staging", *DR, "--operator", "oncall", "--json", "--workspace", str(ws), env=env)
    finally:
        set_mode(server, "ok")
    assert run.code == 1, (run.stdout, run.stderr)
    doc = run.json()
    assert doc["passed"] is False and doc["rollback"]["engaged"] is True
    assert failed_check in [c["name"] for c in doc["checks"] if not c["passed"]]
    assert "SLOTGEN_AI_KILL=true" in (ws / "environments" / "staging.env").read_text()
    entries = [json.loads(line) for line in (ws / "environments" / "staging.audit.jsonl").read_text().splitlines()]
    verify_entry, rollback_entry = entries[-2], entries[-1]
    assert verify_entry["action"] == "verify" and verify_entry["verification"]["passed"] is False
    assert failed_check in verify_entry["verification"]["failed"]
    assert rollback_entry["action"] == "rollback" and rollback_entry["new"] == "true"
    assert rollback_entry["reason"].startswith("automatic: verification failed")
    assert slotgen("audit", "verify", "--env", "staging", "--workspace", str(ws)).code == 0
    nxt = slotgen("next", "--env", "staging", "--json", "--workspace", str(ws)).json()
    assert nxt["step"] == "verify"


def test_confirmation_on_a_terminal_shows_the_change_and_asks(tmp_path):
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTGEN_", "OPENAI_"))}
    env.update({"NO_COLOR": "1", "COLUMNS": "120", "SLOTGEN_SIGNING_KEY": str(ws / "demo-keys" / "owner")})

    def ask(answer: bytes) -> tuple[int, str]:
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "slotgen_ops", "set", "--env", "staging", "SLOTGEN_AI_KILL=true",
                                 *DR, "--operator", "owner", "--workspace", str(ws)], stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        os.close(slave)
        os.write(master, answer)
        out, err = proc.communicate(timeout=120)
        os.close(master)
        return proc.returncode, err.decode()

    code, err = ask(b"n\n")
    assert code == 3 and "declined at the prompt" in err
    assert "SLOTGEN_AI_KILL: true -> true" in err and "before:" in err and "after:" in err
    assert "Apply step kill-switch-on to staging?" in err
    code, err = ask(b"y\n")
    assert code == 0, err
    last = (ws / "environments" / "staging.audit.jsonl").read_text().splitlines()
    assert any('"step":"kill-switch-on"' in line for line in last)
