"""schemas/job.schema.json and schemas/allowlist.schema.json agree with the contract code."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract_helpers import SCHEMAS, load_json, validator
from slotgen_ops.contract import AllowlistInvalid, job_problem, parse_allowlist

EXAMPLES = SCHEMAS / "examples"
JOB = validator("job")
ALLOWLIST = validator("allowlist")


def _allowlist_problem(doc) -> str | None:
    try:
        parse_allowlist(doc)
    except AllowlistInvalid as exc:
        return str(exc)
    return None


CHECKS = {"job": (JOB, job_problem), "allowlist": (ALLOWLIST, _allowlist_problem)}


def _examples(kind: str, validity: str) -> list[Path]:
    return sorted((EXAMPLES / kind / validity).glob("*.json"))


@pytest.mark.parametrize("name", ["job", "allowlist"])
def test_schema_header(name):
    schema = load_json(SCHEMAS / f"{name}.schema.json")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:slotgen:schema:{name}:1"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(("kind", "minimum"), [("job", 4), ("allowlist", 4)])
def test_enough_valid_examples(kind, minimum):
    assert len(_examples(kind, "valid")) >= minimum


@pytest.mark.parametrize(("kind", "minimum"), [("job", 8), ("allowlist", 8)])
def test_enough_invalid_examples(kind, minimum):
    assert len(_examples(kind, "invalid")) >= minimum


@pytest.mark.parametrize(
    "path",
    _examples("job", "valid") + _examples("allowlist", "valid"),
    ids=lambda p: f"{p.parent.parent.name}/{p.name}",
)
def test_valid_examples_pass_both_checks(path):
    schema_validator, contract_problem = CHECKS[path.parent.parent.name]
    doc = load_json(path)
    assert list(schema_validator.iter_errors(doc)) == []
    assert contract_problem(doc) is None


@pytest.mark.parametrize(
    "path",
    _examples("job", "invalid") + _examples("allowlist", "invalid"),
    ids=lambda p: f"{p.parent.parent.name}/{p.name}",
)
def test_invalid_examples_fail_both_checks(path):
    schema_validator, contract_problem = CHECKS[path.parent.parent.name]
    doc = load_json(path)
    assert not schema_validator.is_valid(doc)
    assert contract_problem(doc) is not None


@pytest.mark.parametrize("kind", ["job", "allowlist"])
def test_each_invalid_example_is_broken_in_a_distinct_way(kind):
    """Distinct documents, and the schema names what is wrong in each."""
    schema_validator, _ = CHECKS[kind]
    docs = [load_json(p) for p in _examples(kind, "invalid")]
    assert len({repr(d) for d in docs}) == len(docs)
    for path, doc in zip(_examples(kind, "invalid"), docs):
        errors = list(schema_validator.iter_errors(doc))
        assert len(errors) == 1, (path.name, [e.message for e in errors])


def test_a_lone_surrogate_job_id_is_the_one_documented_difference():
    job = load_json(EXAMPLES / "job" / "valid" / "minimal.json")
    job["jobId"] = "job-\ud800"
    assert JOB.is_valid(job)  # JSON Schema cannot see it...
    assert "surrogate" in job_problem(job)  # ...the contract check does
