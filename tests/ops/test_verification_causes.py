"""The words a failed verification gives (verification/samples.py): each failure kind's cause, exactly,
and the small helpers that shape a check's detail.

The cause is what an operator acts on at 3 a.m., so each kind is pinned to its
full text and its kind (configuration / endpoint / model / runtime). Executions
are built as the runtime builds them (`Execution`), without running a job.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers_runbook import set_openai
from slotgen_ops.contract import GATES, Decision
from slotgen_ops.verification import samples as v
from slotgen_ops.verification import cause as vcause
from slotgen_ops.verification import checks as vchecks
from slotgen_ops.policy.authority import Actor
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.workspace import Workspace
from slotgen_ops.runtime import openai_executor as ex
from slotgen_ops.runtime.executor import Execution
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

SERVE = ("to rehearse without it, start a local endpoint with `slotgen endpoint serve` and set the OPENAI_BASE_URL "
         "and OPENAI_API_KEY it prints")


def target(configured: bool = True, loopback: bool = False, port: int | None = 8443,
           url: str = "https://api.example.test:8443/v1", key_hint: str = "OPENAI_API_KEY") -> vcause._Target:
    return vcause._Target(env="staging", url=url, source="from OPENAI_BASE_URL", configured=configured,
                     loopback=loopback, port=port, key_hint=key_hint, timeout_s=2.5, model="gpt-test")


def failed(failure: str | None, detail: str = "it broke", http_status: int | None = None) -> Execution:
    status = {"path": "openai", "outcome": "FAILED", "code": "OPENAI_HTTP_ERROR", "attempts": 1, "detail": detail,
              "latencyMs": 3}
    return Execution(decision=None, status=status, event={}, latency_ms=3, failure=failure,  # type: ignore[arg-type]
                     http_status=http_status)


def words(failure: str, t: vcause._Target | None = None, **kw) -> tuple[str, str]:
    return vcause._failure_words(t or target(), failure, failed(failure, **kw), 2, 7)


# -- each failure kind -------------------------------------------------------------------------------------


def test_no_key_with_an_endpoint_configured() -> None:
    assert words(ex.FAILURE_NO_API_KEY, target(key_hint="MY_KEY (hint)")) == (
        "no OpenAI API key for https://api.example.test:8443/v1 (from OPENAI_BASE_URL): set MY_KEY (hint)",
        "configuration")


def test_no_key_and_no_endpoint() -> None:
    assert words(ex.FAILURE_NO_API_KEY, target(configured=False)) == (
        "no OpenAI API key: set OPENAI_API_KEY; no endpoint is configured either, so the OpenAI path went to "
        "https://api.example.test:8443/v1; to rehearse, start a local one with `slotgen endpoint serve` and set the "
        "OPENAI_BASE_URL and OPENAI_API_KEY it prints", "configuration")


def test_refused_on_this_machine_names_the_serve_command_and_port() -> None:
    assert words(ex.FAILURE_REFUSED, target(loopback=True, port=9)) == (
        "nothing listens at https://api.example.test:8443/v1 (connection refused; from OPENAI_BASE_URL): start one "
        "with `slotgen endpoint serve --port 9`", "configuration")
    assert words(ex.FAILURE_REFUSED, target(loopback=True, port=None))[0].endswith("`slotgen endpoint serve`")


def test_refused_elsewhere_asks_whether_it_is_up() -> None:
    assert words(ex.FAILURE_REFUSED) == (
        "nothing listens at https://api.example.test:8443/v1 (connection refused; from OPENAI_BASE_URL): is the "
        "endpoint up, and is that its address?", "configuration")
    assert words(ex.FAILURE_REFUSED, target(configured=False))[0].endswith("its address?; " + SERVE)


def test_dns_names_the_host() -> None:
    assert words(ex.FAILURE_DNS) == (
        "the host api.example.test of https://api.example.test:8443/v1 does not resolve (DNS; from OPENAI_BASE_URL): "
        "check the address", "configuration")
    assert words(ex.FAILURE_DNS, target(url="<invalid endpoint URL>"))[0].startswith(
        "the host <invalid endpoint URL> of <invalid endpoint URL> does not resolve")


def test_connection_quotes_the_detail() -> None:
    assert words(ex.FAILURE_CONNECTION, detail="reset\n by   peer") == (
        "cannot connect to https://api.example.test:8443/v1 (from OPENAI_BASE_URL): reset by peer", "configuration")
    assert words(ex.FAILURE_CONNECTION, target(configured=False), detail="")[0] == (
        "cannot connect to https://api.example.test:8443/v1 (from OPENAI_BASE_URL): ; " + SERVE)


def test_timeout_names_the_setting() -> None:
    assert words(ex.FAILURE_TIMEOUT) == (
        "https://api.example.test:8443/v1 did not answer within 2.5s (2 of 7 job(s) on the OpenAI path; "
        "environments.staging.openai.timeoutSeconds): the endpoint is down, hung or overloaded", "configuration")


@pytest.mark.parametrize(("failure", "cause"), [
    (ex.FAILURE_NON_JSON, "model behaviour: 2 of 7 job(s) on the OpenAI path got an answer from gpt-test that is not "
                          "JSON (it broke)"),
    (ex.FAILURE_SCHEMA_INVALID, "model behaviour: 2 of 7 job(s) on the OpenAI path got an answer from gpt-test that "
                                "breaks the result schema (it broke)"),
    (ex.FAILURE_MODEL_REFUSAL, "model behaviour: gpt-test refused 2 of 7 job(s) on the OpenAI path (it broke)"),
    (ex.FAILURE_NO_CONTENT, "model behaviour: gpt-test answered 2 of 7 job(s) on the OpenAI path with no message "
                            "content"),
])
def test_model_behaviour(failure: str, cause: str) -> None:
    assert words(failure) == (cause, "model")


def test_anything_else_is_the_sdk() -> None:
    assert words(ex.FAILURE_SDK) == ("the OpenAI SDK failed on 2 of 7 job(s) on the OpenAI path: it broke", "runtime")
    assert words("something-new") == ("the OpenAI SDK failed on 2 of 7 job(s) on the OpenAI path: it broke",
                                      "runtime")


@pytest.mark.parametrize(("status", "cause", "kind"), [
    (401, "the endpoint answered HTTP 401 (unauthorized): https://api.example.test:8443/v1 refused the API key; check "
          "OPENAI_API_KEY", "configuration"),
    (403, "the endpoint answered HTTP 403 (forbidden): the API key may not use gpt-test at "
          "https://api.example.test:8443/v1; check OPENAI_API_KEY and environments.staging.openai.model",
     "configuration"),
    (404, "the endpoint answered HTTP 404 (not found): is https://api.example.test:8443/v1 (from OPENAI_BASE_URL) the "
          "API's base URL, usually ending in /v1, and gpt-test a model it serves?", "configuration"),
    (429, "the endpoint answered HTTP 429 (rate limit or quota) for 2 of 7 job(s) on the OpenAI path at "
          "https://api.example.test:8443/v1", "endpoint"),
    (500, "the endpoint answered HTTP 500 (a server error at https://api.example.test:8443/v1) for 2 of 7 job(s) on "
          "the OpenAI path", "endpoint"),
    (503, "the endpoint answered HTTP 503 (a server error at https://api.example.test:8443/v1) for 2 of 7 job(s) on "
          "the OpenAI path", "endpoint"),
    (499, "the endpoint answered HTTP 499 for 2 of 7 job(s) on the OpenAI path: it broke", "endpoint"),
    (None, "the endpoint answered an HTTP error for 2 of 7 job(s) on the OpenAI path: it broke", "endpoint"),
])
def test_http_statuses(status: int | None, cause: str, kind: str) -> None:
    assert words(ex.FAILURE_HTTP, http_status=status) == (cause, kind)


# -- the helpers ----------------------------------------------------------------------------------------------


def test_quoted_and_one_line_cut_long_text() -> None:
    assert vcause._quoted(" a \n b\t") == "a b"
    assert vcause._quoted("x" * 120) == "x" * 120
    assert vcause._quoted("x" * 121) == "x" * 119 + "…"
    assert vcause._one_line("line one\nline two") == "line one line two"
    assert vcause._one_line("y" * 400) == "y" * 400
    assert vcause._one_line("y" * 401) == "y" * 399 + "…"
    assert vcause._one_line(12) == "12"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:secret@api.example.test:8443/v1?key=abc#frag", "https://api.example.test:8443/v1"),
    ("http://127.0.0.1/v1", "http://127.0.0.1/v1"),
    ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
    ("http:///v1", "http://?/v1"),
    ("http://host:99999/v1", "<invalid endpoint URL>"),
    ("http://[::1/v1", "<invalid endpoint URL>"),
])
def test_shown_url_never_shows_credentials(url: str, shown: str) -> None:
    assert vcause.shown_url(url) == shown


def test_named_lists_three_then_counts() -> None:
    assert vchecks._named([]) == ""
    assert vchecks._named(["a", "b", "c"]) == "a; b; c"
    assert vchecks._named(["a", "b", "c", "d", "e"]) == "a; b; c; and 2 more"


def test_codes_are_sorted_and_none_is_said() -> None:
    assert vchecks._fmt_codes(Counter({"b": 2, "a": 1})) == "a×1, b×2"
    assert vchecks._fmt_codes({}) == "none"


def test_code_key() -> None:
    assert v._code_key(None) == "RUNTIME_ERROR"
    assert v._code_key({"code": "KILL_SWITCH", "outcome": "STUB"}) == "KILL_SWITCH"
    assert v._code_key({"code": None, "outcome": "COMPLETED"}) == "COMPLETED"


def test_percentile95_boundaries() -> None:
    assert vchecks.percentile95([3, 1, 2]) == 3
    assert vchecks.percentile95(list(range(1, 101))) == 95
    assert vchecks.percentile95(list(range(100, 0, -1))) == 95


# -- the endpoint's own counter -------------------------------------------------------------------------------


def test_read_server_counter_of_the_fake_endpoint() -> None:
    with FakeOpenAIServer(mode="ok") as fake:
        assert v.read_server_counter(fake.base_url) == 0
        assert v.read_server_counter(fake.base_url.replace("127.0.0.1", "localhost")) == 0


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1", "http:///v1", "not a url", "http://[::1/v1",
                                 "http://127.0.0.1:9/v1"])
def test_read_server_counter_without_a_counter(url: str) -> None:
    assert v.read_server_counter(url) is None


# -- where the OpenAI path was pointed -------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    init_workspace(root, Actor(claimed="owner", operator=None))
    return root


def target_of(root: Path) -> vcause._Target:
    env = Workspace(root).environment("staging")
    return vcause._target(env, v.executor_config_for(env))


def test_target_of_a_configured_base_url(workspace: Path) -> None:
    set_openai(workspace, baseUrl="http://user:pw@127.0.0.1:8089/v1?x=1", timeoutSeconds=7)
    assert target_of(workspace) == vcause._Target(
        env="staging", url="http://127.0.0.1:8089/v1",
        source="from environments.staging.openai.baseUrl in slotgen.yaml", configured=True, loopback=True,
        port=8089, key_hint="OPENAI_API_KEY", timeout_s=7.0, model="gpt-4o-mini")


def test_target_of_the_sdk_variable(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://llm.example.test/v1")
    set_openai(workspace, apiKeyEnv="TEAM_KEY")
    t = target_of(workspace)
    assert (t.url, t.source, t.configured, t.loopback, t.port) == (
        "https://llm.example.test/v1", "from OPENAI_BASE_URL", True, False, None)
    assert t.key_hint == "TEAM_KEY (environments.staging.openai.apiKeyEnv) or OPENAI_API_KEY"


def test_target_of_nothing_configured_is_the_sdk_default(workspace: Path) -> None:
    t = target_of(workspace)
    assert (t.url, t.configured, t.loopback) == ("https://api.openai.com/v1", False, False)
    assert t.source == "the SDK's default: neither OPENAI_BASE_URL nor a baseUrl in slotgen.yaml is set"


def test_target_of_an_address_with_an_impossible_port(workspace: Path) -> None:
    set_openai(workspace, baseUrl="http://127.0.0.1:99999/v1")
    t = target_of(workspace)
    assert (t.url, t.port, t.loopback) == ("<invalid endpoint URL>", None, True)


# -- the cause told in every failing check --------------------------------------------------------------------

ALLOWLIST = "allowlists/slot-generation-allowlist.v1.json"
LIVE_1 = {"SLOTGEN_AI_KILL": "false", "FEATURE_SLOTGEN_AI": "true", "SLOTGEN_AI_ROLLOUT_PERCENT": "1",
          "SLOTGEN_AI_ALLOWLIST_PATH": ALLOWLIST}


def test_a_model_failure_is_the_cause_told_in_each_failing_check_only(workspace: Path) -> None:
    with FakeOpenAIServer(mode="nonjson") as fake:
        set_openai(workspace, baseUrl=fake.base_url)
        report = v.run_verification(Workspace(workspace).environment("staging"), LIVE_1)
    cause = ("model behaviour: 2 of 2 job(s) on the OpenAI path got an answer from gpt-4o-mini that is not JSON "
             "(model output is not JSON: 'this is not json')")
    assert (report["passed"], report["cause"], report["causeKind"]) == (False, cause, "model")
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["error-codes"]["detail"] == (
        "OpenAI path failures: OPENAI_NON_JSON×2; missing: COMPLETED×2 (expected COMPLETED×2, NOT_ALLOWLISTED×35, "
        f"ROLLOUT_EXCLUDED×23, observed NOT_ALLOWLISTED×35, OPENAI_NON_JSON×2, ROLLOUT_EXCLUDED×23); cause: {cause}")
    assert [c["name"] for c in report["checks"] if "cause:" in c["detail"]] == ["error-codes"]


def test_without_a_failed_call_the_first_failing_check_is_the_cause_and_keeps_its_words(workspace: Path) -> None:
    runbook = workspace / "runbooks" / "beta-enable.yaml"
    doc = yaml.safe_load(runbook.read_text(encoding="utf-8"))
    doc["verification"]["minSamples"].update({"telemetry-schema": 61, "latency": 61})
    runbook.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    blocked = {**LIVE_1, "SLOTGEN_AI_KILL": "true"}
    with FakeOpenAIServer(mode="ok") as fake:
        set_openai(workspace, baseUrl=fake.base_url)
        report = v.run_verification(Workspace(workspace).environment("staging"), blocked)
    first = ("too few samples: 60, the runbook requires at least 61 for telemetry-schema; 60 events for 60 jobs, one "
             "each, all valid; appended to telemetry/staging.jsonl")
    assert (report["cause"], report["causeKind"]) == (f"telemetry-schema: {first}", "runtime")
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["telemetry-schema"]["detail"] == first
    assert by_name["latency"]["detail"].endswith(f"; cause: telemetry-schema: {first}")
    assert [c["name"] for c in report["checks"] if not c["passed"]] == ["telemetry-schema", "latency"]


# -- which failure is the cause ----------------------------------------------------------------------------------

ON_OPENAI = Decision(None, None, None, len(GATES))  # type: ignore[arg-type]
ON_STUB = Decision(None, None, None, 0)  # type: ignore[arg-type]


def completed() -> Execution:
    status = {"path": "openai", "outcome": "COMPLETED", "code": None, "attempts": 1, "latencyMs": 5}
    return Execution(decision=ON_OPENAI, status=status, event={}, latency_ms=5)


def stubbed() -> Execution:
    status = {"path": "stub", "outcome": "STUB", "code": "KILL_SWITCH", "attempts": 0, "latencyMs": 1}
    return Execution(decision=ON_STUB, status=status, event={}, latency_ms=1)


def a_run(pairs: list[tuple[Decision, Execution | None]], **fields) -> vchecks._Run:
    jobs = [{"jobId": f"job-{i}"} for i in range(len(pairs))]
    return vchecks._Run(jobs=jobs, decisions=[d for d, _ in pairs], executions=[e for _, e in pairs],
                        events_per_job=[], events=[], **fields)


def check_list(*failing: str) -> list[dict]:
    return [{"name": name, "passed": name not in failing, "detail": f"{name} said so"} for name in v.CHECK_NAMES]


def test_the_commonest_failure_is_the_cause_and_the_others_are_counted() -> None:
    pairs = [
        (ON_STUB, stubbed()),
        (ON_OPENAI, failed(ex.FAILURE_NON_JSON, detail="first not json")),
        (ON_OPENAI, failed(ex.FAILURE_TIMEOUT, detail="slow one")),
        (ON_OPENAI, failed(ex.FAILURE_NON_JSON, detail="second not json")),
        (ON_OPENAI, failed("weird")),
        (ON_OPENAI, failed(None)),
        (ON_OPENAI, completed()),
        (ON_OPENAI, None),
    ]
    cause, kind, own = vcause._cause(target(), a_run(pairs, crashes={7: "ValueError: boom"}),
                                     check_list("error-codes"), 100)
    assert (kind, own) == ("model", None)
    assert cause == ("model behaviour: 2 of 7 job(s) on the OpenAI path got an answer from gpt-test that is not JSON "
                     "(first not json) (also: SDK error×1, timeout×1, weird×1)")


def test_one_failure_kind_says_no_others() -> None:
    pairs = [(ON_OPENAI, failed(ex.FAILURE_HTTP, http_status=503)), (ON_STUB, stubbed())]
    assert vcause._cause(target(), a_run(pairs), check_list("error-codes"), 100) == (
        "the endpoint answered HTTP 503 (a server error at https://api.example.test:8443/v1) for 1 of 1 job(s) on the "
        "OpenAI path", "endpoint", None)


def test_without_failed_calls_a_runtime_crash_is_the_cause() -> None:
    pairs = [(ON_STUB, stubbed()), (ON_STUB, None), (ON_OPENAI, completed()), (ON_OPENAI, None)]
    run = a_run(pairs, crashes={3: "KeyError: 'late'", 1: "ValueError: " + "x" * 200})
    run.jobs[1] = ["not a job"]
    cause, kind, own = vcause._cause(target(), run, check_list("path-behavior"), 100)
    assert (kind, own) == ("runtime", None)
    assert cause == f"the runtime raised on 2 job(s) (first, sample #2: ValueError: {'x' * 107}…)"


def test_then_telemetry_that_could_not_be_written() -> None:
    run = a_run([(ON_STUB, stubbed())], telemetry_error="cannot append to t.jsonl: OSError: full")
    assert vcause._cause(target(), run, check_list("telemetry-schema"), 100) == (
        "telemetry could not be written: cannot append to t.jsonl: OSError: full", "runtime", None)


def test_latency_alone_over_the_bound_on_the_openai_path_is_the_endpoint() -> None:
    slow = completed()
    slow.status["latencyMs"] = 250
    pairs = [(ON_OPENAI, slow), (ON_OPENAI, completed()), (ON_STUB, stubbed()), (ON_STUB, None), (ON_OPENAI, None)]
    assert vcause._cause(target(), a_run(pairs), check_list("latency"), 100) == (
        "the endpoint is too slow: p95 250 ms on the OpenAI path, over the 100 ms bound "
        "(https://api.example.test:8443/v1, from OPENAI_BASE_URL)", "endpoint", None)
    # within the bound on the OpenAI path, or another check failing too: the first failing check's words
    assert vcause._cause(target(), a_run(pairs), check_list("latency"), 250) == (
        "latency: latency said so", "runtime", "latency")
    assert vcause._cause(target(), a_run(pairs), check_list("latency", "error-codes"), 100) == (
        "error-codes: error-codes said so", "runtime", "error-codes")
    assert vcause._cause(target(), a_run([(ON_STUB, stubbed())]), check_list("latency"), 0) == (
        "latency: latency said so", "runtime", "latency")


def test_a_proxy_from_the_environment_is_not_used_for_a_local_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    with FakeOpenAIServer(mode="ok") as fake:
        assert v.read_server_counter(fake.base_url) == 0


class _CounterHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/_calls" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def counter_answering(body: bytes) -> Iterator[str]:
    handler = type("Handler", (_CounterHandler,), {"body": body})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def padded(doc: str, size: int) -> bytes:
    body = doc.encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.parametrize(("body", "calls"), [
    (b'{"calls": 3}', 3),
    (padded('{"calls": 3}', 4096), 3),
    (padded('{"calls": 3}', 4097), None),  # more than a counter's answer: not read whole, not trusted
    (b'{"calls": -1}', None),
    (b'{"calls": 2.5}', None),
    (b'{"calls": "3"}', None),
    (b'{"calls": true}', None),
    (b'{"count": 3}', None),
    (b'[3]', None),
    (b'3', None),
])
def test_read_server_counter_trusts_only_a_small_non_negative_integer(body: bytes, calls: int | None) -> None:
    with counter_answering(body) as url:
        assert v.read_server_counter(url) == calls


def test_a_counter_that_never_answers_does_not_hold_the_verification_up() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # connections are queued, never answered
        assert v.read_server_counter(f"http://127.0.0.1:{listener.getsockname()[1]}/v1") is None
