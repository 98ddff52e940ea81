"""The wheel carries the schemas, runbook, allowlist and sample jobs: `pip install .`
must work from any directory, not only from a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = [
    "slotgen_ops/_data/schemas/job.schema.json",
    "slotgen_ops/_data/schemas/allowlist.schema.json",
    "slotgen_ops/_data/schemas/result.schema.json",
    "slotgen_ops/_data/schemas/executor-status.schema.json",
    "slotgen_ops/_data/schemas/telemetry-event.schema.json",
    "slotgen_ops/_data/schemas/runbook.schema.json",
    "slotgen_ops/_data/schemas/bucket-vectors.json",
    "slotgen_ops/_data/runbooks/beta-enable.yaml",
    "slotgen_ops/_data/runbooks/sample-jobs.jsonl",
    "slotgen_ops/_data/runbooks/sample-expectations.json",
    "slotgen_ops/_data/allowlists/slot-generation-allowlist.v1.json",
    "slotgen_ops/cli/app.py",
]


def test_wheel_carries_the_data(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("slotgen_ops-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in NEEDED if name not in names]
    assert not missing, missing
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "slotgen = slotgen_ops.cli.entry:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
