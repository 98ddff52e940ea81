"""Eight real processes appending to one audit log at once.

With the lock, every append lands exactly once and the chain holds. With the
lock replaced by nothing (tests/faultwrap.py; the package has no switch for it) the same workload must visibly break the
log: that is what shows the first test could have failed, i.e. that the lock
is what keeps the log whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from slotgen_ops.errors import IntegrityFailure
from slotgen_ops.audit.log import AuditLog

WRITERS = 8
APPENDS = 50

# Each writer waits for the start file so that all eight really overlap, then
# appends under locked(); it prints how many appends raised (only expected
# when the lock is disabled, e.g. a read that saw another writer's line).
WRITER = """
import sys, time
from pathlib import Path
if len(sys.argv) > 5 and sys.argv[5] == "no-lock":  # test-only: the package itself has no such switch
    sys.path.insert(0, sys.argv[6])
    import faultwrap
    faultwrap.disable_lock()
    faultwrap.install([], widen_race=True)
from slotgen_ops.audit.log import AuditLog
log, writer, count, start = AuditLog(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
(start.parent / f"ready-{writer}").touch()  # imported and about to wait: the parent starts all at once
deadline = time.monotonic() + 60
while not start.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
failures = 0
for i in range(count):
    try:
        with log.locked():
            log.append({"env": "staging", "action": "test", "details": {"writer": writer, "i": i}})
    except Exception:
        failures += 1
print(failures)
"""


TESTS = str(Path(__file__).resolve().parent.parent)


def run_writers(tmp_path: Path, no_lock: bool) -> tuple[AuditLog, int]:
    """Run the writers to completion; return the log and the number of failed appends."""
    path, start = tmp_path / "staging.audit.jsonl", tmp_path / "start"
    env = dict(os.environ)
    extra = ["no-lock", TESTS] if no_lock else []
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{n}", str(APPENDS), str(start), *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for n in range(WRITERS)
    ]
    ready = [tmp_path / f"ready-w{n}" for n in range(WRITERS)]
    deadline = time.monotonic() + 120
    while not all(p.exists() for p in ready):  # wait for every writer to say it is waiting
        assert time.monotonic() < deadline, "writers did not start"
        assert all(proc.poll() is None for proc in procs), "a writer died before the start"
        time.sleep(0.005)
    start.touch()
    failures = 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        failures += int(out)
    return AuditLog(path), failures


def test_locked_appends_from_eight_processes(tmp_path: Path) -> None:
    log, failures = run_writers(tmp_path, no_lock=False)
    assert failures == 0
    entries = list(log.entries())
    assert len(entries) == WRITERS * APPENDS
    assert [e["seq"] for e in entries] == list(range(1, WRITERS * APPENDS + 1))
    pairs = Counter((e["details"]["writer"], e["details"]["i"]) for e in entries)
    assert set(pairs) == {(f"w{n}", i) for n in range(WRITERS) for i in range(APPENDS)}
    assert set(pairs.values()) == {1}
    report = log.verify(env="staging")
    assert report.valid, report
    assert report.entries == WRITERS * APPENDS


def test_without_the_lock_the_race_is_visible(tmp_path: Path) -> None:
    # The test-only launcher replaces the lock with nothing; the widen-race
    # hook sleeps between reading the head and writing, so that the race shows
    # on every run instead of now and then.
    log, failures = run_writers(tmp_path, no_lock=True)
    report = log.verify(env="staging")
    try:
        seqs = [e["seq"] for e in log.entries()]
    except IntegrityFailure:
        seqs = []
    broken = (
        failures > 0
        or not report.valid
        or seqs != list(range(1, WRITERS * APPENDS + 1))
    )
    assert broken, "eight unlocked writers left a perfect log: the test cannot see races"
    assert not report.valid  # and verify is what tells the operator
