"""Validating documents against the shipped JSON schemas, lazily.

`jsonschema` is imported inside the functions, never at module level: the
CLI's fast paths (`decide`, `exposure`) import the runtime and must not pay
for a schema engine they do not use.

Schemas refer to each other by `$id` (the executor status embeds the result
schema as `urn:slotgen:schema:result:1`); every shipped schema with an `$id`
is registered, so references resolve locally and nothing is ever fetched.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from ..data import data_path, schema

if TYPE_CHECKING:  # pragma: no cover
    from jsonschema import Draft202012Validator
    from referencing import Registry

# Longest message kept per error: a message may repr a whole document.
_MAX_MESSAGE = 300


@cache
def _registry() -> Registry:
    """Every shipped schema with an `$id`, so cross-file `$ref`s resolve offline."""
    from referencing import Registry, Resource

    resources = []
    for file in sorted(data_path("schemas").glob("*.schema.json")):
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a broken sibling schema must not break this one; its own tests catch it
        if isinstance(doc, dict) and isinstance(doc.get("$id"), str):
            resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> Draft202012Validator:
    """A cached Draft 2020-12 validator for `schemas/<name>.schema.json`, checking formats."""
    from jsonschema import Draft202012Validator

    doc = schema(name)
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(
        doc,
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def schema_errors(name: str, doc: Any) -> list[str]:
    """Every way `doc` breaks schema `name`, one line each as `path: message`; [] if valid."""
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{json_path(e.absolute_path)}: {_one_line(e.message)}" for e in errors]


def is_valid(name: str, doc: Any) -> bool:
    """True when `doc` validates against schema `name`."""
    return validator(name).is_valid(doc)


def json_path(parts: Any) -> str:
    """`["slots", 0, "title"]` -> `slots[0].title`; the empty path -> `(root)`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _one_line(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
