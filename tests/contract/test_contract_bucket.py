"""The locked bucket function and its published vectors (SPEC section 1)."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

import pytest

from contract_helpers import SCHEMAS, load_json
from slotgen_ops.contract import bucket

FORMULA = "bucket(jobId) = uint64_big_endian(first 8 bytes of SHA-256(UTF-8 bytes of jobId)) mod 100"
VECTORS_FILE = SCHEMAS / "bucket-vectors.json"
GENERATOR = SCHEMAS / "gen_bucket_vectors.py"


@pytest.fixture(scope="module")
def vectors() -> dict:
    return load_json(VECTORS_FILE)


@pytest.mark.parametrize(("job_id", "expected"), [("job-000001", 4), ("job-000123", 69), ("a", 50)])
def test_spec_examples(job_id, expected):
    assert bucket(job_id) == expected


def test_the_vectors_publish_the_formula_and_the_spec_examples(vectors):
    assert vectors["function"] == FORMULA
    pairs = {v["jobId"]: v["bucket"] for v in vectors["vectors"]}
    assert len(pairs) == len(vectors["vectors"]) >= 1000  # ids are unique
    assert vectors["count"] == len(vectors["vectors"])
    assert (pairs["job-000001"], pairs["job-000123"], pairs["a"]) == (4, 69, 50)


def test_every_published_pair_equals_the_runtime_bucket(vectors):
    mismatches = [(v["jobId"][:40], v["bucket"], bucket(v["jobId"])) for v in vectors["vectors"] if bucket(v["jobId"]) != v["bucket"]]
    assert mismatches == []
    assert all(type(v["bucket"]) is int and 0 <= v["bucket"] <= 99 for v in vectors["vectors"])


def test_the_vectors_cover_the_edge_cases(vectors):
    ids = [v["jobId"] for v in vectors["vectors"]]
    assert {f"job-{n:06d}" for n in range(1000)} <= set(ids)
    assert {v["bucket"] for v in vectors["vectors"]} == set(range(100))
    assert any(len(i) == 1 for i in ids)
    assert any(len(i) == 1000 for i in ids)
    assert any(" " in i.strip() for i in ids)  # whitespace inside
    scripts = {
        "latin": "\u00e9",
        "german": "\u00fc",
        "greek": "\u03b1",
        "cyrillic": "\u0430",
        "cjk": "\u4f5c",
        "emoji": "\U0001f680",
        "combining": "\u0301",
        "arabic (rtl)": "\u0645",
        "hebrew (rtl)": "\u05de",
    }
    for name, char in scripts.items():
        assert any(char in i for i in ids), name
    # NFC and NFD forms of the same text are both published, with their own buckets
    assert "job-caf\u00e9" in ids and unicodedata.normalize("NFD", "job-caf\u00e9") in ids


def test_the_generator_reproduces_the_published_file_and_is_independent():
    source = GENERATOR.read_text(encoding="utf-8")
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports and all(not name.startswith("slotgen") for name in imports), imports
    out = subprocess.run([sys.executable, str(GENERATOR)], capture_output=True, check=True).stdout
    assert out == VECTORS_FILE.read_bytes()
    assert out.isascii()  # non-ASCII ids are escaped, so no editor can re-normalise them
