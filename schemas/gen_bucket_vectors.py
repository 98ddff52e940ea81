#!/usr/bin/env python3
"""Publish test vectors for the locked rollout bucket (SPEC section 1).

    python schemas/gen_bucket_vectors.py > schemas/bucket-vectors.json

Standard library only, and deliberately independent of slotgen: the bucket is
computed here in its own few lines, so the tests that compare this file with
`slotgen_ops.contract.bucket` compare two implementations, not one with itself.
The output is deterministic (fixed id list, fixed order, ASCII-escaped JSON so
no editor can re-normalise the non-ASCII ids).
"""

from __future__ import annotations

import hashlib
import json
import sys

FUNCTION = (
    "bucket(jobId) = uint64_big_endian(first 8 bytes of SHA-256(UTF-8 bytes of jobId)) mod 100"
)


def reference_bucket(job_id: str) -> int:
    digest = hashlib.sha256(job_id.encode("utf-8")).digest()
    value = 0
    for byte in digest[:8]:  # big-endian, by hand
        value = value * 256 + byte
    return value % 100


def job_ids() -> list[str]:
    ids = [f"job-{n:06d}" for n in range(1000)]
    ids += [
        # The SPEC examples besides job-000001 and job-000123 (already above).
        "a",
        # Single characters.
        "0", "A", "z", " ", "-", "\t", "\u00e9", "\u20ac", "\U0001f600",
        # Whitespace inside, leading or trailing: never trimmed.
        "job 000001", " job-000001", "job-000001 ", "job-000001\n", "job\t000001",
        "job\u00a0000001",
        # Case matters.
        "JOB-000001", "Job-000001",
        # Latin with diacritics; NFC and NFD forms hash differently (no normalisation).
        "job-caf\u00e9", "job-cafe\u0301", "job-\u00fcber-\u00e4\u00f6\u00df",
        "\u00c5ngstr\u00f6m", "A\u030angstro\u0308m",
        # Greek, Cyrillic.
        "\u03b5\u03c1\u03b3\u03b1\u03c3\u03af\u03b1-001",
        "\u03ba\u03bf\u03c5\u03b9\u03b6-\u03b1",
        "\u0437\u0430\u0434\u0430\u043d\u0438\u0435-001",
        "\u0417\u0410\u0414\u0410\u041d\u0418\u0415-001",
        # CJK.
        "\u4f5c\u696d-000001", "\u6570\u5b66-\u4e8c\u6b21\u65b9\u7a0b\u5f0f",
        "\u30b8\u30e7\u30d6-\u4e00", "\uc791\uc5c5-001",
        # Emoji, including a ZWJ sequence and a flag.
        "job-\U0001f680", "\U0001f9ee\U0001f4d0\U0001f4ca",
        "\U0001f469\u200d\U0001f52c-job", "\U0001f1ec\U0001f1e7-job",
        # Combining marks.
        "e\u0301\u0302\u0303", "job-\u0061\u0308\u0304",
        # Right-to-left: Arabic, Hebrew, a mixed id and an explicit RTL mark.
        "\u0645\u0647\u0645\u0629-001", "\u05de\u05e9\u05d9\u05de\u05d4-001",
        "job-\u0645\u0647\u0645\u0629-\u05de\u05e9\u05d9\u05de\u05d4", "\u200fjob-001",
        # Digits that are not ASCII.
        "job-\uff10\uff10\uff10\uff10\uff10\uff11", "job-\u0660\u0660\u0661",
        # Control characters and NUL are still text.
        "\u0000", "job\u0000001",
        # Characters outside the Basic Multilingual Plane and the top of Unicode.
        "\U00010348\U0002070e", "\U0010ffff", "\ufeffjob-000001",
        # Something that looks like JSON or a path.
        "{\"jobId\": \"job-000001\"}", "../../etc/passwd", "*",
        # Long ids.
        "x" * 1000,
        "job-" + "0123456789" * 99 + "abcdef",
        "\u00e9" * 1000,
        "\U0001f600" * 250,
    ]
    return ids


def main() -> None:
    ids = job_ids()
    if len(set(ids)) != len(ids):
        raise SystemExit("duplicate ids in the vector list")
    out = sys.stdout
    out.write("{\n")
    out.write(f'  "function": {json.dumps(FUNCTION)},\n')
    out.write(
        '  "note": "jobId strings are JSON-escaped; hash the UTF-8 bytes of the decoded string, '
        'exactly as given: no trimming, no case folding, no Unicode normalisation.",\n'
    )
    out.write(f'  "count": {len(ids)},\n')
    out.write('  "vectors": [\n')
    for i, job_id in enumerate(ids):
        sep = "," if i < len(ids) - 1 else ""
        out.write(f'    {{"jobId": {json.dumps(job_id)}, "bucket": {reference_bucket(job_id)}}}{sep}\n')
    out.write("  ]\n}\n")


if __name__ == "__main__":
    main()
