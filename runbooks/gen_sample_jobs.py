#!/usr/bin/env python3
"""Generate the sample job population used by `slotgen verify` and the demo.

    python runbooks/gen_sample_jobs.py > runbooks/sample-jobs.jsonl
    python runbooks/gen_sample_jobs.py --table    # the table in runbooks/README.md

Standard library only; deterministic. Each job is declared below with the
rollout bucket it must land in; its id is the smallest unused `sample-NNNN`
whose bucket (SPEC section 1, computed here independently of slotgen) is that
bucket. The cohort matched is the shipped Beta minimal cohort
(allowlists/slot-generation-allowlist.v1.json).
"""

from __future__ import annotations

import hashlib
import json
import sys

COHORT = {
    "kind": "question-slots",
    "subject": "mathematics",
    "level": "gcse",
    "board": "aqa",
    "specVersion": "8300",
}

TOPICS = (
    "quadratics", "simultaneous equations", "probability", "ratio and proportion",
    "circle theorems", "vectors", "trigonometry", "surds", "indices", "sequences",
    "inequalities", "standard form", "Pythagoras' theorem", "area and perimeter",
    "transformations", "histograms", "compound interest", "bounds", "functions",
    "algebraic proof",
)

OPT_IN = {"allowAI": True}
OPT_OUT = {"allowAI": False}
ABSENT = object()  # no metadata at all

# (case, target bucket, field overrides, metadata, payload overrides)
# Cases: "eligible" jobs take the OpenAI path once live when bucket < percent;
# every other case is blocked before the rollout gate whatever its bucket, and
# most are put in low buckets on purpose, so that a wrong gate order would let
# them through at rollout 1 or 5.
PLAN: list[tuple[str, int, dict[str, str], object, dict[str, object]]] = [
    # -- eligible: allowAI true, exact cohort match ------------------------
    ("eligible", 0, {}, OPT_IN, {}),
    ("eligible", 0, {}, {"allowAI": True, "requestedBy": "pilot-school-07"}, {}),
    ("eligible", 1, {}, OPT_IN, {}),
    ("eligible", 2, {}, OPT_IN, {}),
    ("eligible", 3, {}, OPT_IN, {}),
    ("eligible", 4, {}, OPT_IN, {}),
    ("eligible", 4, {}, {"allowAI": True, "requestedBy": "pilot-school-12"}, {}),
    ("eligible", 5, {}, OPT_IN, {}),
    ("eligible", 6, {}, OPT_IN, {}),
    ("eligible", 7, {}, OPT_IN, {}),
    ("eligible", 9, {}, OPT_IN, {}),
    ("eligible", 10, {}, OPT_IN, {}),
    ("eligible", 12, {}, OPT_IN, {}),
    ("eligible", 15, {}, OPT_IN, {}),
    ("eligible", 20, {}, OPT_IN, {}),
    ("eligible", 25, {}, OPT_IN, {}),
    ("eligible", 33, {}, OPT_IN, {}),
    ("eligible", 40, {}, OPT_IN, {}),
    ("eligible", 48, {}, OPT_IN, {}),
    ("eligible", 50, {}, OPT_IN, {}),
    ("eligible", 60, {}, OPT_IN, {}),
    ("eligible", 75, {}, OPT_IN, {}),
    ("eligible", 90, {}, OPT_IN, {}),
    ("eligible", 95, {}, OPT_IN, {}),
    ("eligible", 99, {}, OPT_IN, {}),
    # -- allowAI missing: gate 3 (NOT_ALLOWLISTED) ---------------------------
    ("allowai-missing", 0, {}, ABSENT, {}),
    ("allowai-missing", 3, {}, ABSENT, {}),
    ("allowai-missing", 42, {}, ABSENT, {}),
    ("allowai-missing", 1, {}, {"requestedBy": "pilot-school-07"}, {}),
    ("allowai-missing", 2, {}, {}, {}),
    ("allowai-missing", 64, {}, {"requestedBy": "pilot-school-12"}, {}),
    # -- allowAI false: gate 3 ------------------------------------------------
    ("allowai-false", 0, {}, OPT_OUT, {}),
    ("allowai-false", 1, {}, OPT_OUT, {}),
    ("allowai-false", 2, {}, OPT_OUT, {}),
    ("allowai-false", 4, {}, OPT_OUT, {}),
    ("allowai-false", 17, {}, OPT_OUT, {}),
    ("allowai-false", 88, {}, OPT_OUT, {}),
    # -- allowAI true, exactly one field outside the cohort: gate 4 -----------
    ("subject-mismatch", 0, {"subject": "physics"}, OPT_IN, {"topic": "forces"}),
    ("subject-mismatch", 1, {"subject": "Mathematics"}, OPT_IN, {}),
    ("subject-mismatch", 2, {"subject": "french"}, OPT_IN,
     {"topic": "le passé composé — verbes irréguliers (être, avoir, aller)"}),
    ("subject-mismatch", 3, {"subject": "mathématiques"}, OPT_IN,
     {"topic": "équations du second degré", "notes": "Übung für Schüler: x² − 5x + 6 = 0"}),
    ("subject-mismatch", 30, {"subject": "further-mathematics"}, OPT_IN, {}),
    ("level-mismatch", 0, {"level": "a-level"}, OPT_IN, {}),
    ("level-mismatch", 3, {"level": "GCSE"}, OPT_IN, {}),
    ("level-mismatch", 55, {"level": "ks3"}, OPT_IN, {}),
    ("board-mismatch", 0, {"board": "edexcel"}, OPT_IN, {}),
    ("board-mismatch", 4, {"board": "AQA"}, OPT_IN, {}),
    ("board-mismatch", 70, {"board": "ocr"}, OPT_IN, {}),
    ("board-mismatch", 1, {"board": "*"}, OPT_IN, {}),
    ("specversion-mismatch", 1, {"specVersion": "8301"}, OPT_IN, {}),
    ("specversion-mismatch", 2, {"specVersion": "8300 "}, OPT_IN, {}),
    ("specversion-mismatch", 80, {"specVersion": "1MA1"}, OPT_IN, {}),
    ("kind-mismatch", 0, {"kind": "mark-scheme"}, OPT_IN, {}),
    ("kind-mismatch", 3, {"kind": "question-slot"}, OPT_IN, {}),
    ("kind-mismatch", 45, {"kind": "worked-example"}, OPT_IN, {}),
    # -- allowAI true, several fields outside the cohort: gate 4 --------------
    ("cohort-mismatch", 0, {"subject": "biology", "level": "a-level", "board": "ocr", "specVersion": "H420"},
     OPT_IN, {"topic": "cell division"}),
    ("cohort-mismatch", 1, {"subject": "chemistry", "board": "edexcel", "specVersion": "1CH0"},
     OPT_IN, {"topic": "rates of reaction"}),
    ("cohort-mismatch", 50, {"subject": "history", "specVersion": "8145"}, OPT_IN, {"topic": "the Cold War"}),
    # -- allowAI false and outside the cohort: gate 3 decides -----------------
    ("allowai-false-mismatch", 0, {"subject": "geography", "specVersion": "8035"}, OPT_OUT, {"topic": "coasts"}),
    ("allowai-false-mismatch", 12, {"board": "wjec"}, OPT_OUT, {}),
]


def reference_bucket(job_id: str) -> int:
    digest = hashlib.sha256(job_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def build() -> list[tuple[str, dict[str, object]]]:
    used: set[int] = set()
    jobs = []
    for index, (case, target, fields, metadata, payload) in enumerate(PLAN):
        n = 1
        while n in used or reference_bucket(f"sample-{n:04d}") != target:
            n += 1
        if n > 9999:
            raise SystemExit(f"no free four-digit id in bucket {target}")
        used.add(n)
        job: dict[str, object] = {"jobId": f"sample-{n:04d}", **COHORT, **fields}
        if metadata is not ABSENT:
            job["metadata"] = dict(metadata)  # type: ignore[call-overload]
        job["payload"] = {"slotCount": 1 + index % 5, "topic": TOPICS[index % len(TOPICS)], **payload}
        jobs.append((case, job))
    return jobs


def table(jobs: list[tuple[str, dict[str, object]]]) -> str:
    lines = [
        "| case | jobId | bucket | differs from the cohort | metadata |",
        "|---|---|---|---|---|",
    ]
    for case, job in jobs:
        diff = ", ".join(f"{k}={job[k]!r}" for k in COHORT if job[k] != COHORT[k]) or "—"
        meta = json.dumps(job["metadata"], ensure_ascii=False) if "metadata" in job else "(none)"
        lines.append(f"| {case} | `{job['jobId']}` | {reference_bucket(str(job['jobId']))} | {diff} | `{meta}` |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    jobs = build()
    if argv[1:] == ["--table"]:
        sys.stdout.buffer.write((table(jobs) + "\n").encode("utf-8"))
        return
    if argv[1:]:
        raise SystemExit("usage: gen_sample_jobs.py [--table]")
    out = sys.stdout.buffer
    for _case, job in jobs:
        out.write(json.dumps(job, ensure_ascii=False).encode("utf-8") + b"\n")


if __name__ == "__main__":
    main(sys.argv)
