"""The runtime's schemas: examples, strict structured-output compatibility, error format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slotgen_ops.data import data_path, schema
from slotgen_ops.runtime.schemas import json_path, schema_errors, validator

NAMES = ("result", "executor-status", "telemetry-event")
EXAMPLES = data_path("schemas", "examples")

# What OpenAI strict structured outputs accept (kept deliberately narrow).
STRICT_KEYWORDS = frozenset(
    ("type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$defs", "$ref", "description")
)


def _examples(name: str, validity: str) -> list[Path]:
    return sorted((EXAMPLES / name / validity).glob("*.json"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", NAMES)
def test_schema_header_and_meta_validity(name):
    doc = schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"urn:slotgen:schema:{name}:1"
    assert doc["additionalProperties"] is False
    validator(name)  # runs check_schema


@pytest.mark.parametrize("name", NAMES)
def test_enough_examples(name):
    assert len(_examples(name, "valid")) >= 3
    assert len(_examples(name, "invalid")) >= 5


@pytest.mark.parametrize(
    "path", [p for n in NAMES for p in _examples(n, "valid")], ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_valid_examples_validate(path):
    assert schema_errors(path.parent.parent.name, _load(path)) == []


@pytest.mark.parametrize(
    "path", [p for n in NAMES for p in _examples(n, "invalid")], ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_invalid_examples_do_not_validate(path):
    assert schema_errors(path.parent.parent.name, _load(path)) != []


@pytest.mark.parametrize("name", NAMES)
def test_invalid_examples_are_each_broken_in_a_distinct_way(name):
    # Distinct file names are not enough: two examples with the same document test nothing new.
    docs = [json.dumps(_load(p), sort_keys=True) for p in _examples(name, "invalid")]
    assert len(set(docs)) == len(docs)


def _walk(node: Any, where: str = "(root)"):
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for child, sub in value.items():
                    yield from _walk(sub, f"{where}.{child}")
            elif key in ("items",):
                yield from _walk(value, f"{where}[]")
            elif key == "anyOf":
                for i, sub in enumerate(value):
                    yield from _walk(sub, f"{where}|{i}")


def test_result_schema_is_usable_as_a_strict_structured_output_schema():
    doc = {k: v for k, v in schema("result").items() if k not in ("$schema", "$id")}
    assert doc["type"] == "object"
    for where, node in _walk(doc):
        assert set(node) <= STRICT_KEYWORDS, f"{where}: {sorted(set(node) - STRICT_KEYWORDS)}"
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, where
            assert sorted(node["required"]) == sorted(node["properties"]), where


def test_schema_errors_are_one_line_path_and_message():
    doc = {"jobId": 1, "slots": [{"slotId": "a", "title": "t", "content": "c\nmore", "x": 1}], "notes": "n", "extra": True}
    errors = schema_errors("result", doc)
    assert errors == [
        "(root): Additional properties are not allowed ('extra' was unexpected)",
        "jobId: 1 is not of type 'string'",
        "slots[0]: Additional properties are not allowed ('x' was unexpected)",
    ]
    assert all("\n" not in e for e in errors)


def test_schema_errors_are_bounded_in_length():
    errors = schema_errors("result", ["word\n" * 500])
    assert len(errors) == 1 and len(errors[0]) < 400 and "\n" not in errors[0]


def test_json_path():
    assert json_path([]) == "(root)"
    assert json_path(["slots", 0, "title"]) == "slots[0].title"
    assert json_path([2]) == "[2]"


def test_the_executor_status_embeds_the_result_schema_by_reference():
    status = _load(EXAMPLES / "executor-status" / "valid" / "completed.json")
    status["result"]["slots"][0]["extra"] = 1
    assert any(e.startswith("result") for e in schema_errors("executor-status", status))
