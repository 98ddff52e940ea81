"""The OpenAI path: `OpenAIExecutor`, through the official `openai` SDK, and the words of its failures.

Owns the OPENAI_* codes a failed job carries and the FAILURE_* kinds that say why (so a
verification can name a cause an operator can act on), the result schema as sent to the
endpoint, and the executor itself. Neither `openai` nor `jsonschema` (nor pydantic) is imported
at module level: `executor` imports this module on the CLI's fast paths, and the SDK loads only
when a job takes the OpenAI path.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..data import schema
from .outcome import EXECUTOR_OPENAI, OUTCOME_COMPLETED, OUTCOME_FAILED, ExecutorOutcome, one_line

if TYPE_CHECKING:  # pragma: no cover
    from .config import ExecutorConfig

OPENAI_HTTP_ERROR = "OPENAI_HTTP_ERROR"
OPENAI_TIMEOUT = "OPENAI_TIMEOUT"
OPENAI_NON_JSON = "OPENAI_NON_JSON"
OPENAI_SCHEMA_INVALID = "OPENAI_SCHEMA_INVALID"
OPENAI_CODES: tuple[str, ...] = (OPENAI_HTTP_ERROR, OPENAI_TIMEOUT, OPENAI_NON_JSON, OPENAI_SCHEMA_INVALID)

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
            detail=one_line(detail),
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


def _endpoint(url: str) -> str:
    """scheme://host[:port] of a URL: never echo a path token or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"
    except ValueError:
        return "<invalid endpoint URL>"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
