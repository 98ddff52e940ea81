"""The fake OpenAI server, in a thread and as a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from runtime_helpers import make_job
from slotgen_ops.runtime.config import ExecutorConfig
from slotgen_ops.runtime.openai_executor import OpenAIExecutor
from slotgen_ops.runtime.fakeserver import MODES, FakeOpenAIServer, find_job_id


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _post(url: str, doc: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_binds_loopback_on_a_free_port(server):
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert server.port > 0


def test_serves_chat_completions_without_the_v1_prefix_too(server):
    base = server.base_url.removesuffix("/v1")
    outcome = OpenAIExecutor(ExecutorConfig(base_url=base, timeout_s=2.0)).run(make_job("job-7"))
    assert outcome.outcome == "COMPLETED" and outcome.result["jobId"] == "job-7"


def test_counts_and_resets(server):
    executor = OpenAIExecutor(ExecutorConfig(base_url=server.base_url, timeout_s=2.0))
    executor.run(make_job())
    executor.run(make_job())
    assert server.calls == 2 and server.last_request is not None
    server.reset_calls()
    assert server.calls == 0 and server.last_request is None


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="unknown mode"):
        FakeOpenAIServer(mode="flaky")
    with FakeOpenAIServer() as server:
        with pytest.raises(ValueError):
            server.set_mode("nope")
        assert server.mode == "ok"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("jobId: job-000001\nkind: x", "job-000001"),
        ('{"jobId": "job-42", "kind": "x"}', "job-42"),
        ("no id here", "unknown-job"),
    ],
)
def test_find_job_id(content, expected):
    assert find_job_id({"messages": [{"role": "user", "content": content}]}) == expected


def test_unknown_routes_are_404(server):
    status, body = _post(server.base_url.removesuffix("/v1") + "/v1/embeddings", {})
    assert status == 404 and "error" in body
    assert server.calls == 0


def test_runs_as_a_quiet_process_controlled_over_http(tmp_path: Path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "slotgen_ops.runtime.fakeserver", "--mode", "ok", "--port", "0",
         "--port-file", str(port_file), "--delay", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):  # poll for readiness; no timing is asserted
            if port_file.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert port_file.exists(), proc.stderr.read() if proc.poll() is not None else "no port file"
        root = f"http://127.0.0.1:{int(port_file.read_text())}"
        assert _get(root + "/_calls") == {"calls": 0}

        executor = OpenAIExecutor(ExecutorConfig(base_url=root + "/v1", timeout_s=2.0, max_retries=0))
        assert executor.run(make_job("job-p")).outcome == "COMPLETED"
        assert _get(root + "/_calls") == {"calls": 1}
        assert _get(root + "/_last")["request"]["response_format"]["type"] == "json_schema"

        for mode, code in [("http500", "OPENAI_HTTP_ERROR"), ("nonjson", "OPENAI_NON_JSON"),
                           ("schema_invalid", "OPENAI_SCHEMA_INVALID")]:
            assert _post(root + "/_mode", {"mode": mode})[0] == 200
            assert executor.run(make_job()).code == code
        assert _get(root + "/_calls") == {"calls": 4}

        assert _post(root + "/_mode", {"mode": "bogus"})[0] == 400
        assert _post(root + "/_reset", {}) == (200, {"calls": 0})
        assert _get(root + "/_calls") == {"calls": 0}
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert (out, err) == ("", "")  # quiet: no request log


def test_every_mode_is_known():
    assert MODES == ("ok", "http500", "slow", "nonjson", "schema_invalid", "hung")
