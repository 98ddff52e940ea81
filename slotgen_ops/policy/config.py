"""The workspace: configuration, operators, runbook and environments.

Config files are YAML, loaded with yaml.safe_load and checked field by field
(policy/fields.py: unknown keys refused, types strict); every problem becomes one
BadInput line naming the file and the field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Self

from ..errors import BadInput
from .fields import Checked, Field, Integer, Mapping, Model, Number, OneOf, Optional, Text
from .paths import ENV_NAME_RE, WORKSPACE_FILE, marker_url, state_url_in_files, workspace_root
from .roster import Operator, Roster  # noqa: F401 - re-exported: the roster is part of the workspace
from .yamlfile import load_yaml_model

OPERATORS_FILE = "operators.yaml"
DEFAULT_DR_PATTERN = r"^(DR-[1-9][0-9]*|https://[^\s/$.?#][^\s]*)$"
ROLES = ("engineering-owner", "on-call", "approver")


@dataclass(frozen=True)
class OpenAISettings:
    """Where and how the OpenAI path runs. The key itself is never stored here."""

    model: str = "gpt-4o-mini"
    baseUrl: str | None = None  # None: the SDK's OPENAI_BASE_URL
    apiKeyEnv: str = "OPENAI_API_KEY"
    timeoutSeconds: float = 10.0
    maxRetries: int = 1
    promptTemplate: str | None = None

    FIELDS = {
        "model": Field(Text(), "gpt-4o-mini"),
        "baseUrl": Field(Optional(Text()), None),
        "apiKeyEnv": Field(Text(), "OPENAI_API_KEY"),
        "timeoutSeconds": Field(Number(gt=0, le=120), 10.0),
        "maxRetries": Field(Integer(ge=0, le=5), 1),
        "promptTemplate": Field(Optional(Text()), None),
    }


def _one_source(value: "TelemetrySettings") -> "TelemetrySettings":
    if (value.files is None) == (value.prometheus is None):
        raise ValueError("needs exactly one of 'files: DIR' and 'prometheus: URL'")
    return value


@dataclass(frozen=True)
class TelemetrySettings:
    """Where the environment's runtime hosts send their telemetry (SPEC section 12): one of the two."""

    files: str | None = None       # a directory of <host>.jsonl files, relative to the workspace
    prometheus: str | None = None  # a Prometheus server's URL (SPEC section 13)

    FIELDS = {"files": Field(Optional(Text(min_length=1)), None),
              "prometheus": Field(Optional(Text(min_length=1)), None)}


@dataclass(frozen=True)
class EnvironmentConfig:
    openai: OpenAISettings = OpenAISettings()
    telemetry: TelemetrySettings | None = None  # None: observed verification is off for the environment

    FIELDS = {"openai": Field(Model(OpenAISettings), OpenAISettings()),
              "telemetry": Field(Optional(Checked(Model(TelemetrySettings), _one_source)), None)}


def _environment_names(value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
    if not value:
        raise ValueError("at least one environment is required")
    for name in value:
        if not ENV_NAME_RE.match(name):
            raise ValueError(f"environment name {name!r} must match ^[a-z][a-z0-9-]{{0,31}}$")
    return value


def _state(value: str) -> str:
    if value != "files" and not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be 'files' or a postgresql:// URL")
    if value != "files":
        from urllib.parse import urlsplit

        if urlsplit(value).password:
            raise ValueError("must not hold a password (it would be in version control): use PGPASSWORD or "
                             "~/.pgpass")
    return value


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


@dataclass(frozen=True)
class WorkspaceConfig:
    environments: dict[str, EnvironmentConfig]
    version: int = 1
    runbook: str = "runbooks/beta-enable.yaml"
    decisionRecordPattern: str = DEFAULT_DR_PATTERN
    # signed: every entry is signed by the acting operator's key (SPEC section 7); declared: an explicit opt-out.
    identity: str = "signed"
    # files: environments/ in the workspace; a postgresql:// URL: a team's database (SPEC section 10).
    state: str = "files"

    FIELDS = {
        "version": Field(OneOf(1), 1),
        "runbook": Field(Text(min_length=1), "runbooks/beta-enable.yaml"),
        "decisionRecordPattern": Field(Checked(Text(), _pattern), DEFAULT_DR_PATTERN),
        "identity": Field(OneOf("signed", "declared"), "signed"),
        "state": Field(Checked(Text(), _state), "files"),
        "environments": Field(Checked(Mapping(Model(EnvironmentConfig)), _environment_names)),
    }


class WorkspaceFiles:
    """A workspace directory's files: slotgen.yaml, operators.yaml, runbooks/, allowlists/, environments/.

    What they are for is the layers' above: `slotgen_ops.workspace.Workspace` adds the runbook and opens
    each environment on the store slotgen.yaml names.
    """

    def __init__(self, root: Path, state_url: str | None = None) -> None:
        self.root = root.resolve()
        self._state_url = state_url  # given by the caller (init --state): wins over the environment and the file

    @classmethod
    def locate(cls, explicit: Path | None = None) -> "Self":
        """--workspace DIR, else $SLOTGEN_WORKSPACE, else the nearest parent holding slotgen.yaml."""
        if explicit is None and os.environ.get("SLOTGEN_WORKSPACE"):
            explicit = Path(os.environ["SLOTGEN_WORKSPACE"])
        root = workspace_root(explicit)
        if root is not None:
            return cls(root)
        if explicit is not None:
            raise BadInput(f"{explicit}: not a slotgen workspace (no {WORKSPACE_FILE}; create one with 'slotgen init')")
        here = Path.cwd().resolve()
        raise BadInput(f"no slotgen workspace here or above {here} (use --workspace DIR, set SLOTGEN_WORKSPACE, or run 'slotgen init')")

    @cached_property
    def config(self) -> WorkspaceConfig:
        return load_yaml_model(self.root / WORKSPACE_FILE, WorkspaceConfig)

    @property
    def state_url(self) -> str | None:
        """Where the environments are kept: $SLOTGEN_STATE_URL, else slotgen.yaml's `state:`; None for files."""
        override = self._state_url or os.environ.get("SLOTGEN_STATE_URL")
        if override:
            return None if override == "files" else override
        if self.config.state != "files":
            return self.config.state
        return marker_url(self.environments_dir)  # moved by 'slotgen state migrate'

    def state_url_leniently(self) -> str | None:
        """`state_url` even when slotgen.yaml does not validate (rollback must still find the environment)."""
        try:
            return self.state_url
        except BadInput:
            return state_url_in_files(self.root)

    @cached_property
    def roster(self) -> Roster:
        return load_yaml_model(self.root / OPERATORS_FILE, Roster)

    @property
    def environments_dir(self) -> Path:
        return self.root / "environments"

    @property
    def allowlists_dir(self) -> Path:
        return self.root / "allowlists"
