"""`slotgen exposure`: counts per path and code over a streamed population."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import assert_one_line_error, slotgen
from .test_decide_cli import ALLOWLIST, LIVE, job


def population(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "jobs.jsonl"
    with path.open("w") as fh:
        for i in range(n):
            doc = job(f"job-{i:06d}")
            if i % 10 == 0:
                doc["metadata"] = {"allowAI": False}
            if i % 10 == 1:
                doc["subject"] = "physics"
            fh.write(json.dumps(doc) + "\n")
        fh.write("\n")  # a trailing blank line is tolerated
    return path


def test_counts_match_decide_per_job(tmp_path):
    from slotgen_ops.contract import Controls, decide, parse_allowlist

    jobs = population(tmp_path, 500)
    allowlist_path = tmp_path / "allowlist.json"
    allowlist_path.write_text(json.dumps(ALLOWLIST))
    run = slotgen("exposure", str(jobs), "--json", env={**LIVE, "SLOTGEN_AI_ALLOWLIST_PATH": str(allowlist_path)})
    assert run.code == 0, run.stderr
    doc = run.json()
    controls = Controls.from_mapping({**LIVE, "SLOTGEN_AI_ALLOWLIST_PATH": str(allowlist_path)})
    allowlist = parse_allowlist(ALLOWLIST)
    expected: dict[str, int] = {}
    openai = 0
    for line in jobs.read_text().splitlines():
        if not line.strip():
            continue
        d = decide(json.loads(line), controls, allowlist)
        if d.path == "openai":
            openai += 1
        else:
            expected[d.code] = expected.get(d.code, 0) + 1
    assert doc["total"] == 500
    assert doc["openai"] == openai > 0
    assert doc["stub"] == 500 - openai
    assert doc["codes"] == expected
    assert sum(doc["codes"].values()) == doc["stub"]


def test_kill_switch_makes_every_job_stub(tmp_path):
    jobs = population(tmp_path, 50)
    doc = slotgen("exposure", str(jobs), "--json", env={"SLOTGEN_AI_KILL": "true"}).json()
    assert doc == {**doc, "total": 50, "openai": 0, "stub": 50, "codes": {"KILL_SWITCH": 50}}


def test_bad_line_names_file_line_and_field(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps(job()) + "\n" + json.dumps(job(level=3)) + "\n")
    run = slotgen("exposure", str(path))
    assert_one_line_error(run, 2)
    assert f"{path}:2:1: level: must be a string" in run.stderr
    path.write_text(json.dumps(job()) + "\n{oops\n")
    run = slotgen("exposure", str(path))
    assert_one_line_error(run, 2)
    assert f"{path}:2:2: not JSON" in run.stderr


def test_stdin_and_missing_file(tmp_path):
    jobs = population(tmp_path, 10)
    run = slotgen("exposure", "-", "--json", stdin=jobs.read_text())
    assert run.code == 0 and run.json()["total"] == 10
    assert_one_line_error(slotgen("exposure", str(tmp_path / "missing.jsonl")), 2)
