"""YAML configuration files read into their models (policy/fields.py): one BadInput line naming the file and each
failing field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import BadInput
from .fields import Invalid, build


#: libyaml's safe loader when PyYAML was built with it (about ten times faster; the same YAML subset and types),
#: else the pure-Python one.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` through libyaml when available (every config file is read on every command)."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader, chosen above


#: A workspace's YAML files are a few KiB; a file far past that is not one of them (and is never read whole).
YAML_BOUND = 4 << 20


def read_config_text(path: Path) -> str:
    """A configuration file's text: bounded, non-blocking, a regular file only (SPEC section 14): a FIFO or a
    device such as /dev/zero named in slotgen.yaml is one BadInput line, never a hang."""
    from ..files.atomic import UnsafeFile, read_bounded

    try:
        return read_bounded(path, YAML_BOUND).decode("utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except UnsafeFile as exc:
        raise BadInput(f"{exc}: not read as a configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc.__class__.__name__})") from None


def load_yaml_model(path: Path, model: type) -> Any:
    """yaml.safe_load then `fields.build(model, doc)`; one BadInput line naming each failing field."""
    text = read_config_text(path)
    try:
        doc = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise BadInput(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: expected a mapping at the top level")
    try:
        return build(model, doc)
    except Invalid as exc:
        raise BadInput(f"{path}: {exc}") from None


def validation_summary(exc: Any) -> str:
    """A pydantic ValidationError (the runtime's ExecutorConfig) as `field: problem; ...`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
