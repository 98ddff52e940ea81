"""The OpenAI executor through the real `openai` SDK against the fake server on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import pytest
from pydantic import ValidationError

from runtime_helpers import make_job
from slotgen_ops.data import schema
from slotgen_ops.runtime.config import DEFAULT_PROMPT_TEMPLATE, ExecutorConfig
from slotgen_ops.runtime.executor import StubExecutor, stub_result
from slotgen_ops.runtime.openai_executor import OpenAIExecutor, response_schema
from slotgen_ops.runtime.schemas import schema_errors


def executor_for(server, **config) -> OpenAIExecutor:
    config.setdefault("timeout_s", 2.0)
    return OpenAIExecutor(ExecutorConfig(base_url=server.base_url, **config))


def test_ok_completes_with_a_schema_valid_result(server):
    outcome = executor_for(server).run(make_job("job-000001"))
    assert (outcome.outcome, outcome.code, outcome.attempts) == ("COMPLETED", None, 1)
    assert schema_errors("result", outcome.result) == []
    assert outcome.result["jobId"] == "job-000001"  # the fake server echoes the prompt's jobId
    assert outcome.model == "gpt-4o-mini"
    assert server.calls == 1


def test_the_request_carries_the_strict_json_schema_response_format(server):
    executor_for(server, model="test-model").run(make_job("job-000042"))
    body = server.last_request
    assert body["model"] == "test-model"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "slot_result", "strict": True, "schema": response_schema()},
    }
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    user = body["messages"][1]["content"]
    assert "jobId: job-000042" in user
    assert '{"count": 2, "topic": "fractions"}' in user  # payload as sorted JSON


def test_response_schema_is_the_result_schema_without_its_header():
    sent = response_schema()
    shipped = schema("result")
    assert "$schema" not in sent and "$id" not in sent
    assert sent == {k: v for k, v in shipped.items() if k not in ("$schema", "$id")}


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_http500_fails_after_bounded_attempts(server, max_retries):
    server.set_mode("http500")
    outcome = executor_for(server, max_retries=max_retries).run(make_job())
    assert (outcome.outcome, outcome.code, outcome.result) == ("FAILED", "OPENAI_HTTP_ERROR", None)
    assert outcome.attempts == 1 + max_retries == server.calls
    assert "500" in outcome.detail


def test_slow_answer_beyond_the_timeout_is_openai_timeout(server):
    server.set_mode("slow", delay_s=0.5)
    outcome = executor_for(server, timeout_s=0.2, max_retries=1).run(make_job())
    assert (outcome.outcome, outcome.code) == ("FAILED", "OPENAI_TIMEOUT")
    assert outcome.attempts == 2 == server.calls  # timeouts are retried, within the bound


def test_slow_answer_within_the_timeout_completes(server):
    server.set_mode("slow", delay_s=0.05)
    outcome = executor_for(server, timeout_s=2.0).run(make_job())
    assert outcome.outcome == "COMPLETED"


@pytest.mark.parametrize(
    ("mode", "code"), [("nonjson", "OPENAI_NON_JSON"), ("schema_invalid", "OPENAI_SCHEMA_INVALID")]
)
def test_bad_content_fails_without_retry(server, mode, code):
    server.set_mode(mode)
    outcome = executor_for(server, max_retries=3).run(make_job())
    assert (outcome.outcome, outcome.code, outcome.result) == ("FAILED", code, None)
    assert outcome.attempts == 1 == server.calls  # the model answered: retrying is not our call


def test_connection_refused_is_an_http_error_with_bounded_attempts():
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = OpenAIExecutor(
        ExecutorConfig(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=1.0, max_retries=1)
    ).run(make_job())
    assert (outcome.outcome, outcome.code, outcome.attempts) == ("FAILED", "OPENAI_HTTP_ERROR", 2)


@pytest.mark.parametrize("where", ["config", "env"])
def test_no_api_key_and_a_remote_endpoint_fails_without_any_attempt(monkeypatch, where):
    remote = "http://192.0.2.1/v1"  # TEST-NET-1: never routed; and no attempt may be made at all
    if where == "env":
        monkeypatch.setenv("OPENAI_BASE_URL", remote)
        config = ExecutorConfig()
    else:
        config = ExecutorConfig(base_url=remote)
    outcome = OpenAIExecutor(config).run(make_job())
    assert (outcome.outcome, outcome.code, outcome.attempts) == ("FAILED", "OPENAI_HTTP_ERROR", 0)
    assert "no API key configured" in outcome.detail


def test_no_api_key_is_fine_for_a_loopback_endpoint(server):
    assert executor_for(server).config.resolved_api_key() == "unset"
    assert executor_for(server).run(make_job()).outcome == "COMPLETED"


def test_a_proxy_in_the_environment_is_not_used_for_a_loopback_endpoint(server, monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # discard port: a proxy that isn't there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert executor_for(server, max_retries=0).run(make_job()).outcome == "COMPLETED"


def test_the_sdk_standard_env_vars_are_used_when_config_leaves_them_unset(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = ExecutorConfig()
    assert (config.resolved_base_url(), config.resolved_api_key()) == (server.base_url, "sk-test")
    assert OpenAIExecutor(config).run(make_job()).outcome == "COMPLETED"
    assert server.calls == 1


def test_the_api_key_never_appears_in_a_failure_detail(server):
    server.set_mode("http500")
    outcome = executor_for(server, api_key="sk-very-secret", max_retries=0).run(make_job())
    assert "sk-very-secret" not in outcome.detail
    assert "sk-very-secret" not in repr(executor_for(server, api_key="sk-very-secret").config)


@pytest.mark.parametrize("job", [None, [], "x", 5])
def test_the_openai_executor_never_raises(server, job):
    # The Runtime never sends such a job here; called directly, the executor still must not raise.
    outcome = OpenAIExecutor(ExecutorConfig(base_url=server.base_url)).run(job)
    assert (outcome.outcome, outcome.code, outcome.attempts) == ("FAILED", "OPENAI_HTTP_ERROR", 0)
    assert server.calls == 0


def test_the_stub_is_deterministic_schema_valid_and_offline():
    job = make_job("job-000123")
    first = StubExecutor().run(job, "KILL_SWITCH", "kill-switch engaged")
    assert first == StubExecutor().run(job, "KILL_SWITCH", "kill-switch engaged")
    assert (first.outcome, first.code, first.attempts, first.model) == ("STUB", "KILL_SWITCH", 0, None)
    assert schema_errors("result", first.result) == []
    assert first.result["jobId"] == "job-000123"


@pytest.mark.parametrize("job", [None, [], "x", 5, {"jobId": 5, "kind": ["a"]}, {"jobId": "\ud800", "subject": "\udfff"}])
def test_the_stub_result_is_schema_valid_and_utf8_for_any_job(job):
    result = stub_result(job, "NOT_ALLOWLISTED")
    assert schema_errors("result", result) == []
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # no lone surrogate survives


class TestConfig:
    def test_defaults(self):
        config = ExecutorConfig()
        assert (config.model, config.timeout_s, config.max_retries, config.base_url) == ("gpt-4o-mini", 10.0, 1, None)
        assert config.prompt_template == DEFAULT_PROMPT_TEMPLATE

    def test_renders_every_placeholder(self):
        template = "{jobId}|{kind}|{subject}|{level}|{board}|{specVersion}|{payload}|{{literal}}"
        rendered = ExecutorConfig(prompt_template=template).render_prompt(make_job("j1"))
        assert rendered == 'j1|question-slots|mathematics|gcse|aqa|8300|{"count": 2, "topic": "fractions"}|{literal}'

    def test_a_job_without_payload_renders_an_empty_object(self):
        job = make_job()
        del job["payload"]
        assert ExecutorConfig(prompt_template="{payload}").render_prompt(job) == "{}"

    @pytest.mark.parametrize(
        "template", ["{jobid}", "{}", "{0}", "{jobId!r}", "{jobId:>10}", "{job.jobId}", "{payload[x]}", "{jobId", "}"]
    )
    def test_a_bad_template_fails_at_validation_time(self, template):
        with pytest.raises(ValidationError, match="prompt_template"):
            ExecutorConfig(prompt_template=template)

    @pytest.mark.parametrize(
        "fields", [{"max_retries": 6}, {"max_retries": -1}, {"timeout_s": 0}, {"model": ""}, {"temperature": 0.2}]
    )
    def test_bounds_and_unknown_keys(self, fields):
        with pytest.raises(ValidationError):
            ExecutorConfig(**fields)
