"""Executing a job: the gating decision, then the stub or the OpenAI executor.

Seed 004: STUB produces no AI call, ever; COMPLETED means the OpenAI call
succeeded and its output validated against the result schema; FAILED means
the OpenAI path was taken and failed with one of the OPENAI_* codes. Every
execution yields one executor status and one telemetry event, both
schema-valid.

Neither `openai` nor `jsonschema` (nor pydantic) is imported at module level:
the stub path needs none of them, and the CLI's fast paths import this module.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..contract import PATH_OPENAI, Allowlist, AllowlistUnavailable, Controls, Decision, decide
from ..data import schema
from .telemetry import MemoryTelemetrySink, TelemetrySink, telemetry_event, utc_timestamp

if TYPE_CHECKING:  # pragma: no cover
    from .config import ExecutorConfig

OUTCOME_STUB = "STUB"
OUTCOME_COMPLETED = "COMPLETED"
OUTCOME_FAILED = "FAILED"

OPENAI_HTTP_ERROR = "OPENAI_HTTP_ERROR"
OPENAI_TIMEOUT = "OPENAI_TIMEOUT"
OPENAI_NON_JSON = "OPENAI_NON_JSON"
OPENAI_SCHEMA_INVALID = "OPENAI_SCHEMA_INVALID"
OPENAI_CODES: tuple[str, ...] = (OPENAI_HTTP_ERROR, OPENAI_TIMEOUT, OPENAI_NON_JSON, OPENAI_SCHEMA_INVALID)

EXECUTOR_STUB = "stub"
EXECUTOR_OPENAI = "openai"

# Why an OpenAI-path job failed, for a cause an operator can act on (the code alone says only "HTTP error").
FAILURE_NO_API_KEY = "no-api-key"
FAILURE_REFUSED = "connection-refused"
FAILURE_DNS = "dns"
FAILURE_CONNECTION = "connection"
FAILURE_TIMEOUT = "timeout"
FAILURE_HTTP = "http-status"
FAILURE_NO_CONTENT = "no-content"
FAILURE_MODEL_REFUSAL = "model-refusal"
FAILURE_NON_JSON = "non-json"
FAILURE_SCHEMA_INVALID = "schema-invalid"
FAILURE_SDK = "sdk-error"

# The SDK's own policy: retry timeouts, connection errors, 408, 409, 429 and 5xx.
_RETRYABLE_STATUS = frozenset((408, 409, 429))
_MAX_DETAIL = 240


@dataclass(frozen=True, slots=True)
class ExecutorOutcome:
    """What an executor did with one job; the Runtime turns it into the executor status."""

    executor: str  # "stub" | "openai"
    outcome: str  # STUB | COMPLETED | FAILED
    code: str | None
    result: dict[str, Any] | None
    attempts: int  # HTTP requests sent to the endpoint
    model: str | None
    detail: str
    failure: str | None = None  # FAILURE_*: why a FAILED outcome failed
    http_status: int | None = None  # with FAILURE_HTTP: the status the endpoint answered


class StubExecutor:
    """The STUB path: a deterministic, schema-valid placeholder result. No network, ever."""

    name = EXECUTOR_STUB

    def run(self, job: Any, code: str, detail: str) -> ExecutorOutcome:
        """The stub result for `job` (any value at all), blocked with gating `code`."""
        return ExecutorOutcome(
            executor=EXECUTOR_STUB,
            outcome=OUTCOME_STUB,
            code=code,
            result=stub_result(job, code),
            attempts=0,
            model=None,
            detail=_one_line(detail),
        )


def stub_result(job: Any, code: str) -> dict[str, Any]:
    """The same job and code always give the same result; fields that are not
    strings (a bad job) become empty strings so the result stays schema-valid."""
    fields = job if isinstance(job, dict) else {}
    text = {name: _clean(fields.get(name)) for name in ("jobId", "kind", "subject", "level", "board", "specVersion")}
    title = " ".join(part for part in (text["subject"], text["level"]) if part) or "slot"
    return {
        "jobId": text["jobId"],
        "slots": [
            {
                "slotId": "stub-1",
                "title": title,
                "content": (
                    f"Placeholder {text['kind'] or 'slot'} for {title}"
                    f" (board {text['board'] or '-'}, spec {text['specVersion'] or '-'}):"
                    f" the AI path was not taken ({code})."
                ),
            }
        ],
        "notes": f"stub: {code}",
    }


def response_schema() -> dict[str, Any]:
    """The result schema as sent in `response_format`: without `$schema` and `$id`."""
    return {k: v for k, v in schema("result").items() if k not in ("$schema", "$id")}


class OpenAIExecutor:
    """The OpenAI path, through the official `openai` SDK. Never raises: every
    failure becomes FAILED with an OPENAI_* code and a one-line detail.

    The SDK's own retries are off (max_retries=0) and this class retries
    timeouts and retryable HTTP errors itself, at most `config.max_retries`
    times, so `attempts` counts exactly the requests sent.
    """

    name = EXECUTOR_OPENAI

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        if config is None:
            from .config import ExecutorConfig

            config = ExecutorConfig()
        self.config = config
        self._client: Any = None
        self._client_key: tuple[str, str] | None = None

    def prepare(self) -> None:
        """Do the one-time setup now (import the SDK, build the client, compile the
        result schema), so it is not counted in a job's latency. Never raises."""
        try:
            from .schemas import validator

            validator("result")
            api_key = self.config.resolved_api_key()
            if api_key is not None:
                self._client_for(self.config.resolved_base_url(), api_key)
        except Exception:  # run() reports any problem, with its code, on the job
            pass

    def run(self, job: dict[str, Any]) -> ExecutorOutcome:
        """Generate the result for a job that passed every gate."""
        attempts = [0]  # shared with _call so a crash still reports what was sent
        try:
            return self._run(job, attempts)
        except Exception as exc:  # the boundary: an executor never raises to its caller
            return self._failed(OPENAI_HTTP_ERROR, attempts[0], f"unexpected {type(exc).__name__}: {exc}",
                                FAILURE_SDK)

    def _run(self, job: dict[str, Any], attempts: list[int]) -> ExecutorOutcome:
        cfg = self.config
        base_url = cfg.resolved_base_url()
        api_key = cfg.resolved_api_key()
        if api_key is None:
            # Fail before any network attempt: an unauthenticated call can only fail.
            return self._failed(
                OPENAI_HTTP_ERROR, 0, f"no API key configured for {_endpoint(base_url)} (set OPENAI_API_KEY)",
                FAILURE_NO_API_KEY,
            )
        messages = [
            {"role": "system", "content": cfg.system_prompt},
            {"role": "user", "content": cfg.render_prompt(job)},
        ]
        content = self._call(base_url, api_key, messages, attempts)
        if isinstance(content, ExecutorOutcome):
            return content
        return self._check(content, attempts[0])

    def _call(self, base_url: str, api_key: str, messages: list[dict[str, str]], attempts: list[int]) -> Any:
        """The message content of the completion, or the FAILED outcome."""
        import openai

        cfg = self.config
        client = self._client_for(base_url, api_key)
        while True:
            attempts[0] += 1
            status: int | None = None
            try:
                completion = client.chat.completions.create(
                    model=cfg.model,
                    messages=messages,
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "slot_result", "strict": True, "schema": response_schema()},
                    },
                )
                break
            except openai.APITimeoutError:
                code, retry, failure = OPENAI_TIMEOUT, True, FAILURE_TIMEOUT
                detail = f"no answer from {_endpoint(base_url)} within {cfg.timeout_s:g}s"
            except openai.APIStatusError as exc:
                code, retry = OPENAI_HTTP_ERROR, exc.status_code in _RETRYABLE_STATUS or exc.status_code >= 500
                failure, status = FAILURE_HTTP, exc.status_code
                detail = f"HTTP {exc.status_code} from {_endpoint(base_url)}: {exc.message}"
            except openai.APIConnectionError as exc:
                code, retry, failure = OPENAI_HTTP_ERROR, True, connection_failure(exc)
                detail = f"cannot reach {_endpoint(base_url)}: {exc.__cause__ or exc}"
            except Exception as exc:  # anything else from the SDK: not worth retrying
                code, retry, failure = OPENAI_HTTP_ERROR, False, FAILURE_SDK
                detail = f"{type(exc).__name__} from the SDK: {exc}"
            if not retry or attempts[0] > cfg.max_retries:
                if attempts[0] > 1:
                    detail += f" (after {attempts[0]} attempts)"
                return self._failed(code, attempts[0], detail, failure, status)
            # Brief backoff: don't hammer a struggling endpoint, keep verify fast.
            time.sleep(min(0.1 * 2 ** (attempts[0] - 1), 1.0))
        choices = completion.choices or []
        message = choices[0].message if choices else None
        if message is None or message.content is None:
            refusal = getattr(message, "refusal", None)
            why = f"the model refused: {refusal}" if refusal else "the response has no message content"
            return self._failed(OPENAI_NON_JSON, attempts[0], why,
                                FAILURE_MODEL_REFUSAL if refusal else FAILURE_NO_CONTENT)
        return message.content

    def _check(self, content: str, attempts: int) -> ExecutorOutcome:
        from .schemas import schema_errors

        try:
            doc = json.loads(content, parse_constant=_reject_constant)
        except ValueError:
            return self._failed(OPENAI_NON_JSON, attempts, f"model output is not JSON: {content[:60]!r}",
                                FAILURE_NON_JSON)
        errors = schema_errors("result", doc)
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return self._failed(OPENAI_SCHEMA_INVALID, attempts,
                                f"model output breaks the result schema: {errors[0]}{more}", FAILURE_SCHEMA_INVALID)
        slots = len(doc["slots"])
        return ExecutorOutcome(
            executor=EXECUTOR_OPENAI,
            outcome=OUTCOME_COMPLETED,
            code=None,
            result=doc,
            attempts=attempts,
            model=self.config.model,
            detail=f"{self.config.model} returned {slots} slot{'s' if slots != 1 else ''} in {attempts} attempt{'s' if attempts != 1 else ''}",
        )

    def _client_for(self, base_url: str, api_key: str) -> Any:
        # One client per endpoint and key, reused so connections are pooled.
        if self._client is None or self._client_key != (base_url, api_key):
            import openai

            from .config import is_loopback_url

            # A proxy from the environment must not stand between us and a local endpoint.
            http_client = openai.DefaultHttpxClient(trust_env=False) if is_loopback_url(base_url) else None
            self._client = openai.OpenAI(
                base_url=base_url,
                api_key=api_key,
                timeout=self.config.timeout_s,
                max_retries=0,
                http_client=http_client,
            )
            self._client_key = (base_url, api_key)
        return self._client

    def _failed(self, code: str, attempts: int, detail: str, failure: str,
                http_status: int | None = None) -> ExecutorOutcome:
        return ExecutorOutcome(
            executor=EXECUTOR_OPENAI,
            outcome=OUTCOME_FAILED,
            code=code,
            result=None,
            attempts=attempts,
            model=self.config.model,
            detail=_one_line(detail),
            failure=failure,
            http_status=http_status,
        )


def connection_failure(exc: BaseException) -> str:
    """FAILURE_REFUSED, FAILURE_DNS or FAILURE_CONNECTION, from the chain of causes under an SDK connection error."""
    import socket

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return FAILURE_REFUSED
        if isinstance(current, socket.gaierror):
            return FAILURE_DNS
        current = current.__cause__ or current.__context__
    return FAILURE_CONNECTION


@dataclass(frozen=True, slots=True)
class Execution:
    """One job run through the runtime: the decision, the executor status, the telemetry event."""

    decision: Decision
    status: dict[str, Any]
    event: dict[str, Any]
    latency_ms: int
    failure: str | None = None  # FAILURE_*: why the OpenAI path failed (None unless FAILED)
    http_status: int | None = None

    @property
    def outcome(self) -> str:
        return self.status["outcome"]

    @property
    def code(self) -> str | None:
        return self.status["code"]


class Runtime:
    """The real runtime: gating engine, executor, telemetry (SPEC sections 1 and 4).

    `execute` never raises on a job, whatever it is: a bad job takes the STUB
    path. Latency is wall time from the decision to the executor's answer, in
    whole milliseconds rounded up (a latency bound is never met by rounding
    down; any real call reports at least 1 ms). Not counted: the one-time setup
    of the OpenAI executor (SDK import, client, schema) and the telemetry write.
    """

    def __init__(
        self,
        controls: Controls,
        allowlist: Allowlist | AllowlistUnavailable,
        executor_config: ExecutorConfig | None = None,
        telemetry: TelemetrySink | None = None,
        env: str | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.controls = controls
        self.allowlist = allowlist
        self.executor_config = executor_config
        self.telemetry: TelemetrySink = telemetry if telemetry is not None else MemoryTelemetrySink()
        self.env = env
        self.stub = StubExecutor()
        self._clock = clock
        self._openai: OpenAIExecutor | None = None  # built on first use: the SDK loads only then

    @property
    def openai(self) -> OpenAIExecutor:
        """The OpenAI executor (created, and the SDK imported, on first use)."""
        if self._openai is None:
            self._openai = OpenAIExecutor(self.executor_config)
        return self._openai

    def execute(self, job: Any) -> Execution:
        """Decide, execute on the chosen path, emit one telemetry event."""
        start = time.perf_counter()
        decision = decide(job, self.controls, self.allowlist)
        if decision.path == PATH_OPENAI:
            # One-time setup (importing the SDK takes about a second) is not the job's latency.
            paused = time.perf_counter()
            executor = self.openai
            executor.prepare()
            start += time.perf_counter() - paused
            outcome = executor.run(job)
        else:
            outcome = self.stub.run(job, decision.code or "", _deciding_detail(decision))
        latency_ms = math.ceil((time.perf_counter() - start) * 1000)
        status = executor_status(decision, outcome, latency_ms)
        ts = utc_timestamp(self._clock() if self._clock is not None else None)
        event = telemetry_event(decision, status, self.env, ts)
        self.telemetry.emit(event)
        return Execution(decision=decision, status=status, event=event, latency_ms=latency_ms,
                         failure=outcome.failure, http_status=outcome.http_status)


def executor_status(decision: Decision, outcome: ExecutorOutcome, latency_ms: int) -> dict[str, Any]:
    """The executor status document (schemas/executor-status.schema.json)."""
    return {
        "jobId": usable_job_id(decision),
        "path": decision.path,
        "outcome": outcome.outcome,
        "code": outcome.code,
        "bucket": decision.bucket,
        "executor": outcome.executor,
        "attempts": outcome.attempts,
        "latencyMs": latency_ms,
        "model": outcome.model,
        "result": outcome.result,
        "detail": outcome.detail,
    }


def usable_job_id(decision: Decision) -> str | None:
    """The jobId for records: None when missing, not a string, or not UTF-8 encodable
    (a lone surrogate would break every JSON-lines writer downstream)."""
    job_id = decision.job_id
    if job_id is None or job_id.isascii():
        return job_id
    try:
        job_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return job_id


def _deciding_detail(decision: Decision) -> str:
    try:
        return decision.gates()[decision.decided_by].detail
    except Exception:  # the detail is for humans; never let it break an execution
        return f"STUB: {decision.code}"


def _endpoint(url: str) -> str:
    """scheme://host[:port] of a URL: never echo a path token or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"
    except ValueError:
        return "<invalid endpoint URL>"


def _clean(value: Any) -> str:
    """A string field, made UTF-8 safe; anything else becomes ''."""
    if not isinstance(value, str):
        return ""
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def _one_line(text: str) -> str:
    line = _clean(" ".join(str(text).split()))
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
