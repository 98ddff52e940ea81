"""pytest plugin for `make mutation`.

- Credits each test with the functions its child processes ran. See
  `sitecustomize` in this folder: during mutmut's stats run, `slotgen`
  processes started by a test append the names of the functions they ran to
  the file MUTMUT_SUBPROCESS_HITS. Before mutmut files the test's hits (at
  teardown), this plugin moves those names into mutmut's record for the test.
- Runs a mutant's tests fastest first (by the durations of the stats run), so
  that with `-x` a mutant the unit tests catch is not kept waiting on a slow
  end-to-end test first.
- Gives each test of a mutant a time limit from its own duration in the stats
  run (TIME_LIMIT_FLOOR + TIME_LIMIT_FACTOR x). A test past it fails (its
  child processes are stopped as on any failure) and the run ends with exit
  code 36, which mutmut records as a timeout: a mutant that makes the code
  hang is caught in minutes, not after mutmut's limit for all its tests.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest


def _drain(keep: bool = True) -> None:
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    hits = os.environ.get("MUTMUT_SUBPROCESS_HITS")
    if not hits:
        return
    taken = Path(hits + ".taken")
    try:
        os.replace(hits, taken)  # a child still appending starts a new file
    except FileNotFoundError:
        return
    text = taken.read_text(encoding="utf-8")
    taken.unlink()
    if not keep:
        return
    from mutmut.state import state

    state()._stats.update(line for line in text.splitlines() if line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    _drain()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _drain(keep=False)  # left by processes that outlived the previous test: not this test's
    yield


TIME_LIMIT_FLOOR = 30.0
TIME_LIMIT_FACTOR = 5.0
TIMEOUT_EXIT = 36  # mutmut's code for "timeout"

_durations: dict[str, float] | None = None
_timed_out: list[str] = []


class MutantTimeout(Exception):
    """A test ran past its time limit under this mutant."""


def _mutant_durations() -> dict[str, float] | None:
    """The stats run's duration per test, when a mutant is under test (else None)."""
    global _durations
    root = os.environ.get("MUTMUT_PROJECT_ROOT")
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", "") or not root:
        return None
    if _durations is None:
        try:
            stats = json.loads((Path(root) / "mutants" / "mutmut-stats.json").read_text())
            _durations = dict(stats["duration_by_test"])
        except (OSError, ValueError, KeyError):
            _durations = {}
    return _durations


def pytest_collection_modifyitems(session, config, items):
    durations = _mutant_durations()
    if durations:
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    durations = _mutant_durations()
    if durations is None:
        yield
        return
    limit = TIME_LIMIT_FLOOR + TIME_LIMIT_FACTOR * durations.get(item.nodeid, 0.0)

    def expire(signum, frame):
        _timed_out.append(item.nodeid)
        raise MutantTimeout(f"{item.nodeid} ran past {limit:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_sessionfinish(session, exitstatus):
    if _timed_out:
        session.exitstatus = TIMEOUT_EXIT
