"""Shared builders for the contract tests (plain functions, usable from hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slotgen_ops.contract import (
    ALLOWLIST_VAR,
    FEATURE_VAR,
    KILL_VAR,
    ROLLOUT_VAR,
    Allowlist,
    Controls,
    bucket,
    parse_allowlist,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
SHIPPED_ALLOWLIST = ROOT / "allowlists" / "slot-generation-allowlist.v1.json"
SAMPLE_JOBS = ROOT / "runbooks" / "sample-jobs.jsonl"

COHORT = {
    "kind": "question-slots",
    "subject": "mathematics",
    "level": "gcse",
    "board": "aqa",
    "specVersion": "8300",
}

ABSENT = object()  # a key left out of the document


def make_job(job_id: Any = "job-000001", allow_ai: Any = True, **fields: Any) -> dict[str, Any]:
    """A job in the shipped cohort; allow_ai=ABSENT leaves metadata empty, a field=ABSENT drops it."""
    job: dict[str, Any] = {
        "jobId": job_id,
        **COHORT,
        "metadata": {} if allow_ai is ABSENT else {"allowAI": allow_ai},
        "payload": {"slotCount": 3, "topic": "quadratics"},
    }
    for key, value in fields.items():
        if value is ABSENT:
            job.pop(key, None)
        else:
            job[key] = value
    return job


def make_controls(
    kill: str | None = "false",
    feature: str | None = "true",
    rollout: str | None = "0",
    allowlist_path: str | None = None,
) -> Controls:
    env = {KILL_VAR: kill, FEATURE_VAR: feature, ROLLOUT_VAR: rollout, ALLOWLIST_VAR: allowlist_path}
    return Controls.from_mapping({k: v for k, v in env.items() if v is not None})


def rule_doc(rule_id: str = "beta-minimal-cohort", **fields: Any) -> dict[str, Any]:
    return {"id": rule_id, **COHORT, **fields}


def allowlist_doc(enabled: bool = True, rules: list[dict[str, Any]] | None = None, version: str = "v1") -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "version": version,
        "enabled": enabled,
        "rules": [rule_doc()] if rules is None else rules,
    }


def make_allowlist(enabled: bool = True, rules: list[dict[str, Any]] | None = None) -> Allowlist:
    return parse_allowlist(allowlist_doc(enabled, rules))


def ids_in_buckets(wanted: range | set[int], count: int, prefix: str = "t-") -> list[str]:
    """The first `count` ids `prefix + n` whose bucket is in `wanted`."""
    found = []
    n = 0
    while len(found) < count:
        candidate = f"{prefix}{n}"
        if bucket(candidate) in wanted:
            found.append(candidate)
        n += 1
    return found


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def validator(name: str):
    from jsonschema import Draft202012Validator

    schema = load_json(SCHEMAS / f"{name}.schema.json")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
