"""atomic_write: whole old or whole new content, whatever instant the writer dies.

The crash tests run a real interpreter that SIGKILLs itself at a fault point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slotgen_ops.files.atomic import atomic_write, clean_stale_temps, fault_point, temp_path_for

OLD = b"old\n" * 50_000  # 200 kB: a torn write would show
NEW = b"NEW!\n" * 60_000

# The fault is installed as a hook by the test's own child code: the package reads no variable for it.
WRITER = """
import os, signal, sys
from pathlib import Path
from slotgen_ops.files import hooks
from slotgen_ops.files.atomic import atomic_write
fault = sys.argv[3]
if fault:
    hooks.install(lambda name: os.kill(os.getpid(), signal.SIGKILL) if name == fault else None)
prefix = sys.argv[4] if len(sys.argv) > 4 else None
atomic_write(Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), fault_prefix=prefix)
"""


def run_writer(target: Path, data: bytes, fault: str | None, *prefix: str) -> subprocess.CompletedProcess[bytes]:
    payload = target.parent / "payload.bin"
    payload.write_bytes(data)
    return subprocess.run(
        [sys.executable, "-c", WRITER, str(target), str(payload), fault or "", *prefix],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip


def temps(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".tmp-" in p.name)


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "controls.env"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert temps(tmp_path) == []


def test_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "secret.env"
    target.write_bytes(b"x")
    target.chmod(0o600)
    atomic_write(target, b"y")
    assert target.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("point", "expected"), [("after-temp-write", OLD), ("after-rename", NEW)])
def test_crash_leaves_old_or_new_never_a_mix(tmp_path: Path, point: str, expected: bytes) -> None:
    target = tmp_path / "controls.env"
    target.write_bytes(OLD)
    result = run_writer(target, NEW, point)
    assert result.returncode == -signal.SIGKILL, result.stderr
    content = target.read_bytes()
    assert content in (OLD, NEW)
    assert content == expected
    leftovers = temps(tmp_path)
    if point == "after-temp-write":
        assert len(leftovers) == 1 and leftovers[0].read_bytes() == NEW
    assert clean_stale_temps(tmp_path) == leftovers
    assert temps(tmp_path) == []
    assert target.read_bytes() == expected  # cleaning never touches the target


def test_crash_on_first_write_leaves_no_target(tmp_path: Path) -> None:
    target = tmp_path / "new.env"
    result = run_writer(target, NEW, "after-temp-write")
    assert result.returncode == -signal.SIGKILL
    assert not target.exists()
    assert len(clean_stale_temps(tmp_path)) == 1


def test_prefixed_fault_points_pick_one_write(tmp_path: Path) -> None:
    target = tmp_path / "controls.env"
    target.write_bytes(OLD)
    other = run_writer(target, NEW, "controls-after-rename", "approvals")
    assert other.returncode == 0, other.stderr
    target.write_bytes(OLD)
    hit = run_writer(target, NEW, "controls-after-rename", "controls")
    assert hit.returncode == -signal.SIGKILL
    assert target.read_bytes() == NEW


def test_no_fault_without_a_hook(tmp_path: Path, monkeypatch) -> None:
    result = run_writer(tmp_path / "f", NEW, None)
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv("SLOTGEN_FAULT", "after-rename")  # the variable of old: the package no longer reads it
    fault_point("after-rename")  # no hook installed in this process: a no-op


def test_clean_stale_temps_spares_live_writers_and_other_files(tmp_path: Path) -> None:
    live = temp_path_for(tmp_path / "controls.env")  # this process: alive
    live.write_bytes(b"in flight")
    unrelated = tmp_path / "notes.tmp-12"
    unrelated.write_bytes(b"not ours: no leading dot")
    # A pid above pid_max can never be alive: no race with pid reuse.
    dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    stale = tmp_path / f".controls.env.tmp-{dead_pid}"
    stale.write_bytes(b"left by a crash")
    assert clean_stale_temps(tmp_path) == [stale]
    assert live.exists() and unrelated.exists()
    assert clean_stale_temps(tmp_path / "missing") == []
