#!/usr/bin/env python3
"""Publish the path and code every sample job must take, state by state (SPEC section 1).

    python runbooks/gen_sample_expectations.py > runbooks/sample-expectations.json

Standard library only, and deliberately independent of slotgen: the decision
order, the kill-switch and feature-flag rules, the allowlist match and the
bucket are re-implemented here from the text of SPEC section 1 (and the Phase
4D contract it cites), so that `slotgen verify` compares the runtime with a
second implementation, not with the code it runs (check `expected-decisions`).

Inputs, read from the repository: the sample jobs (runbooks/sample-jobs.jsonl),
the shipped allowlist (allowlists/slot-generation-allowlist.v1.json) and the
ladder of the shipped runbook (runbooks/beta-enable.yaml). The output is
deterministic (fixed order, ASCII-escaped JSON, one job a line).

States: a state names the raw values of the controls that must be in force
(exactly those strings; null: unset or empty; a control it does not name may
have any value) and, when it names an allowlist, the SHA-256 of the file the
expectations were computed with (what holds is the file's content, whatever
path points to it). Covered: the kill-switch engaged (as the
runbook and rollback write it), the feature flag off, no allowlist, and the
shipped allowlist at rollout 0, at every rung of the ladder and at 100.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = "runbooks/sample-jobs.jsonl"
ALLOWLIST = "allowlists/slot-generation-allowlist.v1.json"
RUNBOOK = "runbooks/beta-enable.yaml"

KILL = "SLOTGEN_AI_KILL"
FEATURE = "FEATURE_SLOTGEN_AI"
ROLLOUT = "SLOTGEN_AI_ROLLOUT_PERCENT"
ALLOWLIST_PATH = "SLOTGEN_AI_ALLOWLIST_PATH"
FIELDS = ("kind", "subject", "level", "board", "specVersion")

RULES = (
    "1 kill-switch engaged unless unset, empty or 'false' (trimmed, any case) -> stub KILL_SWITCH; "
    "2 feature flag not 'true' (trimmed, any case) -> stub FEATURE_DISABLED; "
    "3 metadata.allowAI not exactly true -> stub NOT_ALLOWLISTED; "
    "4 no allowlist, allowlist disabled or no rule matching every field exactly -> stub NOT_ALLOWLISTED; "
    "5 rollout not 0..100 in decimal digits, or not 0 and bucket >= rollout -> stub ROLLOUT_EXCLUDED; "
    "6 otherwise openai (code null). "
    "bucket(jobId) = uint64_big_endian(first 8 bytes of SHA-256(UTF-8 bytes of jobId)) mod 100"
)


# --- the gating rules, from the text ---------------------------------------------------------------------------


def kill_engaged(raw: str | None) -> bool:
    return not (raw is None or raw.strip() == "" or raw.strip().lower() == "false")


def feature_on(raw: str | None) -> bool:
    return raw is not None and raw.strip().lower() == "true"


def percent(raw: str | None) -> int | None:
    if raw is None or not raw or any(c not in "0123456789" for c in raw):
        return None
    value = int(raw)
    return value if value <= 100 else None


def reference_bucket(job_id: str) -> int:
    digest = hashlib.sha256(job_id.encode("utf-8")).digest()
    value = 0
    for byte in digest[:8]:  # big-endian, by hand
        value = value * 256 + byte
    return value % 100


def rule_matches(rule: dict, job: dict) -> bool:
    for name in FIELDS:
        allowed = rule[name] if isinstance(rule[name], list) else [rule[name]]
        if not any(type(job.get(name)) is str and job.get(name) == value for value in allowed):
            return False
    return True


def expected(job: dict, controls: dict, allowlist: dict | None) -> list:
    """[path, code] by the decision order."""
    if kill_engaged(controls.get(KILL)):
        return ["stub", "KILL_SWITCH"]
    if not feature_on(controls.get(FEATURE)):
        return ["stub", "FEATURE_DISABLED"]
    metadata = job.get("metadata")
    if not (isinstance(metadata, dict) and metadata.get("allowAI") is True):
        return ["stub", "NOT_ALLOWLISTED"]
    if allowlist is None or allowlist["enabled"] is not True or not any(
            rule_matches(rule, job) for rule in allowlist["rules"]):
        return ["stub", "NOT_ALLOWLISTED"]
    rollout = percent(controls.get(ROLLOUT))
    if rollout is None or (rollout != 0 and reference_bucket(job["jobId"]) >= rollout):
        return ["stub", "ROLLOUT_EXCLUDED"]
    return ["openai", None]


# --- inputs ----------------------------------------------------------------------------------------------------


def job_sha256(job: dict) -> str:
    """SHA-256 of the job as canonical JSON (keys sorted, no whitespace, UTF-8, no ASCII escaping)."""
    text = json.dumps(job, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_jobs(path: Path) -> list[dict]:
    jobs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        job = json.loads(line)
        if not (isinstance(job, dict) and type(job.get("jobId")) is str and job["jobId"]
                and all(type(job.get(name)) is str for name in FIELDS)):
            raise SystemExit(f"{path}:{number}: not a job this generator can judge")
        jobs.append(job)
    if len({job["jobId"] for job in jobs}) != len(jobs):
        raise SystemExit(f"{path}: duplicate jobIds")
    return jobs


def read_allowlist(path: Path) -> dict:
    doc = json.loads(path.read_text(encoding="utf-8"))
    well_formed = (isinstance(doc, dict) and doc.get("schemaVersion") == 1 and type(doc.get("enabled")) is bool
                   and isinstance(doc.get("rules"), list)
                   and all(isinstance(rule, dict) and all(
                       type(rule.get(name)) is str
                       or (isinstance(rule.get(name), list) and rule[name] and all(type(v) is str for v in rule[name]))
                       for name in FIELDS) for rule in doc["rules"]))
    if not well_formed:
        raise SystemExit(f"{path}: not an allowlist this generator can judge")
    return doc


def read_ladder(path: Path) -> list[int]:
    match = re.search(r"^ladder:\s*\[([0-9,\s]*)\]\s*(#.*)?$", path.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{path}: no 'ladder: [..]' line")
    return [int(v) for v in match.group(1).split(",") if v.strip()]


def states(ladder: list[int], allowlist_sha256: str) -> list[dict]:
    out = [
        {"id": "kill-switch-engaged", "controls": {KILL: "true"}},
        {"id": "feature-flag-off", "controls": {KILL: "false", FEATURE: "false"}},
        {"id": "no-allowlist", "controls": {KILL: "false", FEATURE: "true", ALLOWLIST_PATH: None}},
    ]
    for level in sorted({0, *ladder, 100}):
        out.append({"id": f"live-rollout-{level}",
                    "controls": {KILL: "false", FEATURE: "true", ALLOWLIST_PATH: ALLOWLIST, ROLLOUT: str(level)},
                    "allowlistSha256": allowlist_sha256})
    return out


def main(argv: list[str]) -> None:
    if argv[1:]:
        raise SystemExit("usage: gen_sample_expectations.py > runbooks/sample-expectations.json")
    jobs = read_jobs(ROOT / SAMPLES)
    allowlist_bytes = (ROOT / ALLOWLIST).read_bytes()
    allowlist = read_allowlist(ROOT / ALLOWLIST)
    allowlist_sha256 = hashlib.sha256(allowlist_bytes).hexdigest()
    table = states(read_ladder(ROOT / RUNBOOK), allowlist_sha256)
    out = sys.stdout
    out.write("{\n")
    out.write(f'  "generator": {json.dumps("runbooks/gen_sample_expectations.py")},\n')
    out.write(f'  "rules": {json.dumps(RULES)},\n')
    out.write('  "note": "A state holds when every control it names has exactly that raw value (null: unset or '
              'empty), except the allowlist path of a state with allowlistSha256: any path to a file with that '
              'SHA-256. expected maps a state to [path, code]; a job is covered only while its canonical JSON '
              'has the sha256 given.",\n')
    out.write(f'  "sampleJobs": {json.dumps(SAMPLES)},\n')
    out.write(f'  "allowlist": {json.dumps(ALLOWLIST)},\n')
    out.write("  \"states\": [\n")
    for i, state in enumerate(table):
        sep = "," if i < len(table) - 1 else ""
        out.write(f"    {json.dumps(state)}{sep}\n")
    out.write("  ],\n")
    out.write(f'  "count": {len(jobs)},\n')
    out.write("  \"jobs\": [\n")
    for i, job in enumerate(jobs):
        sep = "," if i < len(jobs) - 1 else ""
        decisions = {}
        for state in table:
            controls = dict(state["controls"])
            listed = controls.get(ALLOWLIST_PATH)
            decisions[state["id"]] = expected(job, controls, allowlist if listed == ALLOWLIST else None)
        row = {"jobId": job["jobId"], "sha256": job_sha256(job), "bucket": reference_bucket(job["jobId"]),
               "expected": decisions}
        out.write(f"    {json.dumps(row)}{sep}\n")
    out.write("  ]\n}\n")


if __name__ == "__main__":
    main(sys.argv)
