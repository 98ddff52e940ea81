"""The cause of a failed verification: one line an operator can act on, and its kind.

A failed verification names its `cause` ("no OpenAI API key: set
OPENAI_API_KEY ...", "nothing listens at http://127.0.0.1:9/v1 (connection
refused) ...", "model behaviour: 2 of 2 answers are not JSON"), and
`causeKind`: `configuration` (no key, no endpoint, refused, DNS, timeout, a
key or address the endpoint rejects), `endpoint` (it failed or was slow),
`model` (what the model answered) or `runtime` (slotgen's own side). Each
failing check's detail ends with the cause too.

Owns where the OpenAI path was pointed (`_Target`, from the environment's
settings) and the words of each failure kind of the OpenAI executor. Apart
from the checks (`checks`) because it judges nothing: it explains, in terms of
the endpoint and its configuration, what the checks found, whichever way the
run was made.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..contract import PATH_OPENAI
from ..runtime import openai_executor as ex
from ..runtime.executor import Execution
from ..runtime.outcome import OUTCOME_FAILED
from ..policy.samples import job_label
from .checks import _Run, percentile95

CAUSE_CONFIGURATION = "configuration"
CAUSE_ENDPOINT = "endpoint"
CAUSE_MODEL = "model"
CAUSE_RUNTIME = "runtime"
# A cause is one line; a model's or endpoint's own words in it are cut short.
_MAX_CAUSE = 400
_MAX_QUOTED = 120


@dataclass(frozen=True)
class _Target:
    """Where the OpenAI path was pointed, and which setting pointed it there (so the operator knows what to change)."""

    env: str
    url: str            # as shown: no credentials, no query
    source: str         # "from OPENAI_BASE_URL", ...
    configured: bool    # False: neither baseUrl nor OPENAI_BASE_URL, the SDK's default endpoint
    loopback: bool
    port: int | None
    key_hint: str       # which variable to set for a key
    timeout_s: float
    model: str


def _target(env: Any, config: Any) -> _Target:
    from ..runtime.config import is_loopback_url

    settings = env.config.openai
    url = config.resolved_base_url()
    if config.base_url:
        source, configured = f"from environments.{env.name}.openai.baseUrl in slotgen.yaml", True
    elif os.environ.get("OPENAI_BASE_URL"):
        source, configured = "from OPENAI_BASE_URL", True
    else:
        source, configured = "the SDK's default: neither OPENAI_BASE_URL nor a baseUrl in slotgen.yaml is set", False
    key_env = settings.apiKeyEnv
    key_hint = (key_env if key_env == "OPENAI_API_KEY"
                else f"{key_env} (environments.{env.name}.openai.apiKeyEnv) or OPENAI_API_KEY")
    try:
        port = urlsplit(url).port
    except ValueError:
        port = None
    return _Target(env=env.name, url=shown_url(url), source=source, configured=configured,
                   loopback=is_loopback_url(url), port=port, key_hint=key_hint, timeout_s=float(config.timeout_s),
                   model=config.model)


def shown_url(url: str) -> str:
    """scheme://host[:port]/path of an endpoint URL: never its credentials or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid endpoint URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def failure_cause(env: Any, config: Any, run: _Run, checks: list[dict[str, Any]],
                  bound: int) -> tuple[str, str]:
    """(cause, kind) of a failed verification, and each failing check's detail told the cause."""
    cause, kind, own = _cause(_target(env, config), run, checks, bound)
    cause = _one_line(cause)
    for check in checks:
        if not check["passed"] and check["name"] != own:
            check["detail"] = f"{check['detail']}; cause: {cause}"
    return cause, kind


def _cause(target: _Target, run: _Run, checks: list[dict[str, Any]], bound: int) -> tuple[str, str, str | None]:
    """(cause, kind, the check it was taken from or None): the OpenAI path's failures first, the commonest one
    named; then what only the runtime can get wrong; then the first failing check's own words."""
    failed = [(e, d) for e, d in zip(run.executions, run.decisions)
              if e is not None and d.path == PATH_OPENAI and e.status.get("outcome") == OUTCOME_FAILED]
    if failed:
        on_openai = sum(1 for d in run.decisions if d.path == PATH_OPENAI)
        kinds = Counter(e.failure or ex.FAILURE_SDK for e, _ in failed)
        top = kinds.most_common(1)[0][0]
        first = next(e for e, _ in failed if (e.failure or ex.FAILURE_SDK) == top)
        count = kinds[top]
        cause, kind = _failure_words(target, top, first, count, on_openai)
        others = [f"{_FAILURE_NAMES.get(k, k)}×{n}" for k, n in sorted(kinds.items()) if k != top]
        if others:
            cause += f" (also: {', '.join(others)})"
        return cause, kind, None
    if run.crashes:
        index = min(run.crashes)
        return (f"the runtime raised on {len(run.crashes)} job(s) (first, "
                f"{job_label(run.jobs[index], index)}: {_quoted(run.crashes[index])})", CAUSE_RUNTIME, None)
    if run.telemetry_error:
        return f"telemetry could not be written: {run.telemetry_error}", CAUSE_RUNTIME, None
    by_name = {c["name"]: c for c in checks}
    latency = by_name.get("latency")
    if latency is not None and not latency["passed"] and all(c["passed"] for c in checks if c["name"] != "latency"):
        slow = [e.status["latencyMs"] for e, d in zip(run.executions, run.decisions)
                if e is not None and d.path == PATH_OPENAI]
        if slow and percentile95(slow) > bound:
            return (f"the endpoint is too slow: p95 {percentile95(slow)} ms on the OpenAI path, over the {bound} ms "
                    f"bound ({target.url}, {target.source})", CAUSE_ENDPOINT, None)
    first = next(c for c in checks if not c["passed"])
    return f"{first['name']}: {first['detail']}", CAUSE_RUNTIME, first["name"]


_FAILURE_NAMES = {
    ex.FAILURE_NO_API_KEY: "no API key", ex.FAILURE_REFUSED: "connection refused", ex.FAILURE_DNS: "DNS",
    ex.FAILURE_CONNECTION: "connection failed", ex.FAILURE_TIMEOUT: "timeout", ex.FAILURE_HTTP: "HTTP error",
    ex.FAILURE_NO_CONTENT: "no content", ex.FAILURE_MODEL_REFUSAL: "model refused", ex.FAILURE_NON_JSON: "not JSON",
    ex.FAILURE_SCHEMA_INVALID: "schema invalid", ex.FAILURE_SDK: "SDK error",
}


def _failure_words(t: _Target, failure: str, first: Execution, count: int, of: int) -> tuple[str, str]:
    """One line for the commonest failure of the OpenAI path, and whether it is configuration or the model."""
    detail = _quoted(str(first.status.get("detail") or ""))
    share = f"{count} of {of} job(s) on the OpenAI path"
    rehearse = ("" if t.configured else "; to rehearse without it, start a local endpoint with `slotgen endpoint "
                "serve` and set the OPENAI_BASE_URL and OPENAI_API_KEY it prints")
    if failure == ex.FAILURE_NO_API_KEY:
        if not t.configured:
            return (f"no OpenAI API key: set {t.key_hint}; no endpoint is configured either, so the OpenAI path "
                    f"went to {t.url}; to rehearse, start a local one with `slotgen endpoint serve` and set the "
                    "OPENAI_BASE_URL and OPENAI_API_KEY it prints", CAUSE_CONFIGURATION)
        return f"no OpenAI API key for {t.url} ({t.source}): set {t.key_hint}", CAUSE_CONFIGURATION
    if failure == ex.FAILURE_REFUSED:
        if t.loopback:
            port = f" --port {t.port}" if t.port else ""
            return (f"nothing listens at {t.url} (connection refused; {t.source}): start one with "
                    f"`slotgen endpoint serve{port}`", CAUSE_CONFIGURATION)
        return (f"nothing listens at {t.url} (connection refused; {t.source}): is the endpoint up, and is that "
                f"its address?{rehearse}", CAUSE_CONFIGURATION)
    if failure == ex.FAILURE_DNS:
        host = urlsplit(t.url).hostname or t.url
        return (f"the host {host} of {t.url} does not resolve (DNS; {t.source}): check the address{rehearse}",
                CAUSE_CONFIGURATION)
    if failure == ex.FAILURE_CONNECTION:
        return f"cannot connect to {t.url} ({t.source}): {detail}{rehearse}", CAUSE_CONFIGURATION
    if failure == ex.FAILURE_TIMEOUT:
        return (f"{t.url} did not answer within {t.timeout_s:g}s ({share}; environments.{t.env}.openai."
                f"timeoutSeconds): the endpoint is down, hung or overloaded{rehearse}", CAUSE_CONFIGURATION)
    if failure == ex.FAILURE_HTTP:
        return _http_words(t, first.http_status, detail, share)
    if failure == ex.FAILURE_NON_JSON:
        return f"model behaviour: {share} got an answer from {t.model} that is not JSON ({detail})", CAUSE_MODEL
    if failure == ex.FAILURE_SCHEMA_INVALID:
        return (f"model behaviour: {share} got an answer from {t.model} that breaks the result schema ({detail})",
                CAUSE_MODEL)
    if failure == ex.FAILURE_MODEL_REFUSAL:
        return f"model behaviour: {t.model} refused {share} ({detail})", CAUSE_MODEL
    if failure == ex.FAILURE_NO_CONTENT:
        return f"model behaviour: {t.model} answered {share} with no message content", CAUSE_MODEL
    return f"the OpenAI SDK failed on {share}: {detail}", CAUSE_RUNTIME


def _http_words(t: _Target, status: int | None, detail: str, share: str) -> tuple[str, str]:
    if status == 401:
        return (f"the endpoint answered HTTP 401 (unauthorized): {t.url} refused the API key; check {t.key_hint}",
                CAUSE_CONFIGURATION)
    if status == 403:
        return (f"the endpoint answered HTTP 403 (forbidden): the API key may not use {t.model} at {t.url}; check "
                f"{t.key_hint} and environments.{t.env}.openai.model", CAUSE_CONFIGURATION)
    if status == 404:
        return (f"the endpoint answered HTTP 404 (not found): is {t.url} ({t.source}) the API's base URL, usually "
                f"ending in /v1, and {t.model} a model it serves?", CAUSE_CONFIGURATION)
    if status == 429:
        return f"the endpoint answered HTTP 429 (rate limit or quota) for {share} at {t.url}", CAUSE_ENDPOINT
    if status is not None and status >= 500:
        return f"the endpoint answered HTTP {status} (a server error at {t.url}) for {share}", CAUSE_ENDPOINT
    shown = f"HTTP {status}" if status is not None else "an HTTP error"
    return f"the endpoint answered {shown} for {share}: {detail}", CAUSE_ENDPOINT


def _quoted(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_QUOTED else line[: _MAX_QUOTED - 1] + "…"


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_CAUSE else line[: _MAX_CAUSE - 1] + "…"
