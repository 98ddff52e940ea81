"""Configuration of the OpenAI executor: model, prompt, endpoint (seed 004, section 5).

Phase 4E may change the model and the prompt, so they are configuration, not
code. The prompt template is checked when the configuration is validated, so a
typo in a placeholder is an error at load time, never a failure mid-rollout.
"""

from __future__ import annotations

import ipaddress
import json
import os
import string
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The placeholders a prompt template may use; `payload` is the JSON of job.payload.
PROMPT_FIELDS: tuple[str, ...] = ("jobId", "kind", "subject", "level", "board", "specVersion", "payload")

DEFAULT_MODEL = "gpt-4o-mini"
# What the SDK would use with neither base_url nor OPENAI_BASE_URL.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# A local test endpoint (the fake server) needs no real key, but the SDK insists on one.
LOCAL_PLACEHOLDER_KEY = "unset"

DEFAULT_SYSTEM_PROMPT = (
    "You generate teaching slots for a slot-generation system. "
    "Answer with one JSON object that follows the given schema exactly: echo the jobId, "
    "give the slots in order, and put anything else in notes."
)

DEFAULT_PROMPT_TEMPLATE = (
    "Generate the slots for this job.\n"
    "jobId: {jobId}\n"
    "kind: {kind}\n"
    "subject: {subject}\n"
    "level: {level}\n"
    "board: {board}\n"
    "specVersion: {specVersion}\n"
    "payload (JSON): {payload}\n"
)


class ExecutorConfig(BaseModel):
    """How the OpenAI executor calls the model. Unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default=DEFAULT_MODEL, min_length=1)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    base_url: str | None = None  # None: OPENAI_BASE_URL, else the SDK's default endpoint
    api_key: str | None = Field(default=None, repr=False)  # None: OPENAI_API_KEY
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_retries: int = Field(default=1, ge=0, le=5)

    @field_validator("prompt_template")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        check_template(template)
        return template

    def render_prompt(self, job: dict[str, Any]) -> str:
        """The user message for `job` (a schema-valid job dict)."""
        return self.prompt_template.format_map(prompt_values(job))

    def resolved_base_url(self) -> str:
        """The endpoint the executor will call: config, else OPENAI_BASE_URL, else the default."""
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL

    def resolved_api_key(self) -> str | None:
        """The key to send: config, else OPENAI_API_KEY, else a placeholder for a
        loopback endpoint only; None means no key is configured and no call may be made."""
        key = self.api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            return key
        return LOCAL_PLACEHOLDER_KEY if is_loopback_url(self.resolved_base_url()) else None


def prompt_values(job: dict[str, Any]) -> dict[str, str]:
    """The placeholder values for a job: its strings, and payload as sorted JSON."""
    values = {name: _text(job.get(name)) for name in PROMPT_FIELDS if name != "payload"}
    payload = job.get("payload")
    values["payload"] = _text(json.dumps(payload if isinstance(payload, dict) else {}, sort_keys=True, ensure_ascii=False))
    return values


def check_template(template: str) -> None:
    """Raise ValueError unless `template` uses only PROMPT_FIELDS as plain `{name}` fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"prompt_template is not a valid format string: {exc}") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PROMPT_FIELDS:
            shown = "{" + field + "}" if field else "{}"
            raise ValueError(
                f"prompt_template uses unknown placeholder {shown}; "
                f"known: {', '.join('{' + f + '}' for f in PROMPT_FIELDS)} (write {{{{ and }}}} for literal braces)"
            )
        if spec or conversion:
            raise ValueError(f"prompt_template: placeholder {{{field}}} takes no conversion or format spec")


def is_loopback_url(url: str) -> bool:
    """True when `url` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    # A lone surrogate cannot be sent as UTF-8: replace it rather than fail the call.
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")
