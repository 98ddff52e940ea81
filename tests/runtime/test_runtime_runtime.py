"""Runtime.execute: gating, executor, status and telemetry, end to end on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_helpers import make_allowlist, make_controls, make_job
from slotgen_ops.contract import AllowlistUnavailable, bucket
from slotgen_ops.runtime.config import ExecutorConfig
from slotgen_ops.runtime.executor import Runtime
from slotgen_ops.runtime.schemas import schema_errors
from slotgen_ops.runtime.telemetry import JsonlTelemetrySink, MemoryTelemetrySink, utc_timestamp

FIXED = datetime(2025, 3, 4, 9, 15, 26, 123456, tzinfo=timezone.utc)

STATUS_FIELDS = ["jobId", "path", "outcome", "code", "bucket", "executor", "attempts", "latencyMs", "model", "result", "detail"]
EVENT_FIELDS = [
    "event", "schemaVersion", "ts", "jobId", "path", "outcome", "code", "bucket", "decidedBy", "allowlistVersion",
    "rolloutPercent", "killSwitch", "featureFlag", "latencyMs", "attempts", "model", "env",
]


def runtime_for(server, controls=None, allowlist=None, telemetry=None, **config) -> Runtime:
    config.setdefault("timeout_s", 2.0)
    return Runtime(
        controls if controls is not None else make_controls(),
        allowlist if allowlist is not None else make_allowlist(),
        ExecutorConfig(base_url=server.base_url, **config),
        telemetry if telemetry is not None else MemoryTelemetrySink(),
        "staging",
        clock=lambda: FIXED,
    )


def assert_records_valid(execution) -> None:
    assert schema_errors("executor-status", execution.status) == []
    assert schema_errors("telemetry-event", execution.event) == []
    assert list(execution.status) == STATUS_FIELDS
    assert list(execution.event) == EVENT_FIELDS
    assert execution.status["latencyMs"] == execution.event["latencyMs"] == execution.latency_ms
    assert type(execution.latency_ms) is int and execution.latency_ms >= 0
    # Every record must survive a UTF-8 JSON-lines writer.
    json.dumps([execution.status, execution.event], ensure_ascii=False, allow_nan=False).encode("utf-8")


def test_all_gates_open_takes_the_openai_path_and_completes(server):
    telemetry = MemoryTelemetrySink()
    execution = runtime_for(server, telemetry=telemetry).execute(make_job("job-000001"))
    assert_records_valid(execution)
    assert execution.decision.path == "openai"
    assert (execution.outcome, execution.code, execution.status["attempts"]) == ("COMPLETED", None, 1)
    assert server.calls == 1
    assert telemetry.events == [execution.event]
    assert execution.event == {
        "event": "slotgen.execution",
        "schemaVersion": 1,
        "ts": "2025-03-04T09:15:26.123Z",
        "jobId": "job-000001",
        "path": "openai",
        "outcome": "COMPLETED",
        "code": None,
        "bucket": 4,
        "decidedBy": None,
        "allowlistVersion": "v1",
        "rolloutPercent": 0,
        "killSwitch": False,
        "featureFlag": True,
        "latencyMs": execution.latency_ms,
        "attempts": 1,
        "model": "gpt-4o-mini",
        "env": "staging",
    }


@pytest.mark.parametrize(
    ("mode", "code", "attempts"),
    [
        ("http500", "OPENAI_HTTP_ERROR", 2),
        ("slow", "OPENAI_TIMEOUT", 1),
        ("nonjson", "OPENAI_NON_JSON", 1),
        ("schema_invalid", "OPENAI_SCHEMA_INVALID", 1),
    ],
)
def test_every_failure_is_failed_with_its_code_and_valid_records(server, mode, code, attempts):
    server.set_mode(mode, delay_s=0.5)
    retries = 0 if mode == "slow" else 1
    execution = runtime_for(server, timeout_s=0.2, max_retries=retries).execute(make_job())
    assert_records_valid(execution)
    assert (execution.outcome, execution.code, execution.status["result"]) == ("FAILED", code, None)
    assert execution.status["attempts"] == attempts == server.calls
    assert execution.event["code"] == code


JOB_123 = "job-000123"  # bucket 69


@pytest.mark.parametrize(
    ("controls", "allowlist", "job", "code", "gate"),
    [
        ({"SLOTGEN_AI_KILL": "true"}, None, make_job(), "KILL_SWITCH", "kill-switch"),
        ({"SLOTGEN_AI_KILL": "garbage"}, None, make_job(), "KILL_SWITCH", "kill-switch"),
        ({"FEATURE_SLOTGEN_AI": None}, None, make_job(), "FEATURE_DISABLED", "feature-flag"),
        ({"FEATURE_SLOTGEN_AI": "yes"}, None, make_job(), "FEATURE_DISABLED", "feature-flag"),
        ({}, None, make_job(allow_ai=False), "NOT_ALLOWLISTED", "job-opt-in"),
        ({}, None, make_job(allow_ai="true"), "NOT_ALLOWLISTED", "job-opt-in"),
        ({}, make_allowlist(enabled=False), make_job(), "NOT_ALLOWLISTED", "allowlist"),
        ({}, make_allowlist(board="edexcel"), make_job(), "NOT_ALLOWLISTED", "allowlist"),
        ({}, AllowlistUnavailable("file not found"), make_job(), "NOT_ALLOWLISTED", "allowlist"),
        ({"SLOTGEN_AI_ROLLOUT_PERCENT": "1"}, None, make_job(JOB_123), "ROLLOUT_EXCLUDED", "rollout"),
        ({"SLOTGEN_AI_ROLLOUT_PERCENT": "69"}, None, make_job(JOB_123), "ROLLOUT_EXCLUDED", "rollout"),
        ({"SLOTGEN_AI_ROLLOUT_PERCENT": None}, None, make_job(), "ROLLOUT_EXCLUDED", "rollout"),
        ({"SLOTGEN_AI_ROLLOUT_PERCENT": "abc"}, None, make_job(), "ROLLOUT_EXCLUDED", "rollout"),
    ],
)
def test_the_stub_path_makes_no_ai_call(server, controls, allowlist, job, code, gate):
    execution = runtime_for(server, make_controls(**controls), allowlist).execute(job)
    assert_records_valid(execution)
    assert (execution.outcome, execution.code, execution.status["executor"]) == ("STUB", code, "stub")
    assert execution.status["attempts"] == 0 and execution.status["model"] is None
    assert execution.event["decidedBy"] == gate
    assert schema_errors("result", execution.status["result"]) == []
    assert server.calls == 0


def test_rollout_admits_a_job_whose_bucket_is_below_the_percent(server):
    assert bucket(JOB_123) == 69
    execution = runtime_for(server, make_controls(SLOTGEN_AI_ROLLOUT_PERCENT="70")).execute(make_job(JOB_123))
    assert (execution.outcome, execution.event["rolloutPercent"], execution.status["bucket"]) == ("COMPLETED", 70, 69)
    assert server.calls == 1


GARBAGE = [
    None, [], "x", 5, 1.5, True, {}, {"jobId": 5}, {"jobId": ""}, {"jobId": "job-1"},
    {**make_job("x"), "jobId": "\ud800"}, {**make_job(), "extra": 1}, {**make_job(), "metadata": None},
    {**make_job(), "metadata": {"allowAI": 1}}, {**make_job(), "payload": "text"}, {**make_job(), "kind": None},
]


@pytest.mark.parametrize("job", GARBAGE, ids=lambda job: repr(job)[:40])
def test_the_runtime_never_raises_on_a_bad_job_and_takes_the_stub_path(server, job):
    execution = runtime_for(server).execute(job)
    assert_records_valid(execution)
    assert (execution.outcome, execution.code) == ("STUB", "NOT_ALLOWLISTED")
    assert server.calls == 0


def test_a_bad_job_has_no_job_id_or_bucket_in_its_records(server):
    status = runtime_for(server).execute({"jobId": "\ud800", "kind": "k"}).status
    assert (status["jobId"], status["bucket"]) == (None, None)
    assert runtime_for(server).execute({"jobId": "job-9"}).status["jobId"] == "job-9"  # usable, though invalid


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
job_like = st.fixed_dictionaries(
    {},
    optional={
        "jobId": st.one_of(st.text(max_size=12), json_values),
        "kind": st.sampled_from(["question-slots", "x"]) | json_values,
        "subject": st.just("mathematics") | json_values,
        "level": st.just("gcse") | json_values,
        "board": st.just("aqa") | json_values,
        "specVersion": st.just("8300") | json_values,
        "metadata": st.fixed_dictionaries({"allowAI": st.just(True) | json_values}) | json_values,
        "payload": json_values,
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=job_like | json_values)
def test_any_input_gives_valid_records_and_ai_calls_only_on_the_openai_path(server, job):
    server.reset_calls()
    execution = runtime_for(server).execute(job)
    assert_records_valid(execution)
    assert server.calls == (1 if execution.decision.path == "openai" else 0)
    assert execution.outcome == ("COMPLETED" if execution.decision.path == "openai" else "STUB")


def test_kill_switch_records_carry_the_controls(server):
    controls = make_controls(SLOTGEN_AI_KILL="TRUE", FEATURE_SLOTGEN_AI=None, SLOTGEN_AI_ROLLOUT_PERCENT="5")
    event = runtime_for(server, controls, AllowlistUnavailable("unset")).execute(make_job()).event
    assert (event["killSwitch"], event["featureFlag"], event["rolloutPercent"], event["allowlistVersion"]) == (
        True, False, 5, None,
    )
    assert event["env"] == "staging"


def test_no_executor_config_means_the_defaults(monkeypatch, server):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    runtime = Runtime(make_controls(), make_allowlist(), None, MemoryTelemetrySink(), None)
    execution = runtime.execute(make_job())
    assert (execution.outcome, execution.event["env"], execution.event["model"]) == ("COMPLETED", None, "gpt-4o-mini")


def test_jsonl_sink_appends_one_line_per_event(server, tmp_path):
    path = tmp_path / "telemetry" / "events.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": true}\n', encoding="utf-8")
    with JsonlTelemetrySink(path) as sink:
        runtime = runtime_for(server, telemetry=sink)
        executions = [runtime.execute(job) for job in (make_job("job-a"), None, make_job("job-b", allow_ai=False))]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"earlier": true}'
    events = [json.loads(line) for line in lines[1:]]
    assert events == [e.event for e in executions]
    assert all(schema_errors("telemetry-event", e) == [] for e in events)
    assert server.calls == 1


def test_jsonl_sink_creates_the_file_and_reopens_after_close(tmp_path):
    path = tmp_path / "new" / "events.jsonl"
    sink = JsonlTelemetrySink(path)
    sink.emit({"n": 1})
    sink.close()
    sink.emit({"n": 2})
    sink.close()
    assert path.read_text(encoding="utf-8") == '{"n":1}\n{"n":2}\n'


def test_utc_timestamp_is_rfc3339_utc_with_z():
    assert utc_timestamp(FIXED) == "2025-03-04T09:15:26.123Z"
    from datetime import timedelta

    paris = FIXED.astimezone(timezone(timedelta(hours=1)))
    assert utc_timestamp(paris) == "2025-03-04T09:15:26.123Z"
    assert utc_timestamp().endswith("Z")


def test_importing_the_executor_loads_neither_openai_nor_jsonschema():
    code = (
        "import sys, json\n"
        "import slotgen_ops.runtime.executor as ex\n"
        "from slotgen_ops.contract import Controls, AllowlistUnavailable\n"
        "heavy = ('openai', 'jsonschema', 'pydantic')\n"
        "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "at_import = loaded()\n"
        "rt = ex.Runtime(Controls.from_mapping({'SLOTGEN_AI_KILL': 'true'}), AllowlistUnavailable('unset'))\n"
        "rt.execute({'jobId': 'job-1'})\n"
        "print(json.dumps({'import': at_import, 'stub': loaded()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == {"import": [], "stub": []}


def test_the_jsonl_sink_writes_inert_lines_and_never_waits_on_a_fifo(tmp_path):
    """SPEC section 14: a job's text with C1 controls or a bidi override is written as \\u escapes (the same
    values to any JSON reader); a FIFO at the file's name is an error at once, not a hang."""
    import json as _json
    import os as _os

    import pytest as _pytest

    from slotgen_ops.runtime.telemetry import JsonlTelemetrySink

    path = tmp_path / "host.jsonl"
    with JsonlTelemetrySink(path) as sink:
        sink.emit({"jobId": "job-\u202e1\x9b", "n": 1})
    raw = path.read_text(encoding="utf-8")
    assert "\u202e" not in raw and "\x9b" not in raw and "\\u202e" in raw
    assert _json.loads(raw) == {"jobId": "job-\u202e1\x9b", "n": 1}
    fifo = tmp_path / "fifo.jsonl"
    _os.mkfifo(fifo)
    with _pytest.raises(OSError):
        JsonlTelemetrySink(fifo).emit({"jobId": "x"})
