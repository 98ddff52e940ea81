"""Shared plumbing for the benchmarks: timing, subprocesses, the fake server, the summary.

Benchmarks print figures; they never assert. Each script is runnable on its
own (`.venv/bin/python bench/bench_X.py`); `bench/run_all.py` runs them in
turn and collects the rows each one hands to `emit_summary` (through the file
named by $BENCH_SUMMARY_FILE) into one table.

Nothing here reaches the internet: every subprocess gets OPENAI_BASE_URL
pointing at 127.0.0.1 (a local fake server, or a closed local port), and the
SLOTGEN_* variables of the caller's environment are dropped so that a stray
control in the shell cannot change what is measured.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"  # gitignored
ALLOWLIST = REPO / "allowlists" / "slot-generation-allowlist.v1.json"

# Put the repo first on sys.path so `slotgen_ops` imports even without `pip install -e`.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYTHON = sys.executable
# A closed port on loopback: any accidental HTTP call is refused at once, never sent out.
NOWHERE_URL = "http://127.0.0.1:9/v1"


def quick() -> bool:
    """BENCH_QUICK=1: fewer repeats / smaller sizes (a smoke run, figures are rougher)."""
    return os.environ.get("BENCH_QUICK") == "1"


def slotgen_cmd() -> list[str]:
    """How to run the CLI: the venv's console script, else the same entry point through python."""
    script = Path(PYTHON).with_name("slotgen")
    if script.exists():
        return [str(script)]
    return [PYTHON, "-c", "from slotgen_ops.cli.entry import main; main()"]


def clean_env(**extra: str | None) -> dict[str, str]:
    """The environment for a subprocess: no SLOTGEN_*/OPENAI_* from the caller, local endpoint only."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLOTGEN_", "FEATURE_SLOTGEN", "OPENAI_"))}
    env["OPENAI_BASE_URL"] = NOWHERE_URL
    env["OPENAI_API_KEY"] = "local"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NO_COLOR", None)
    env["TERM"] = "dumb"
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


# --- timing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    best: float    # per-op, in the unit asked for
    median: float
    runs: int
    cpu_median: float = 0.0  # processes only: median user + system CPU time (ms), steadier than wall on a busy machine

    def fmt(self, unit: str = "ns", digits: int = 0) -> str:
        return f"best {self.best:,.{digits}f} {unit}, median {self.median:,.{digits}f} {unit} ({self.runs} repeats)"


def time_per_op(fn: Callable[[], Any], ops_per_call: int, *, repeat: int = 7, number: int = 1,
                scale: float = 1e9) -> Timing:
    """timeit over `fn`; `fn` does `ops_per_call` operations. Per-op best and median (ns by default)."""
    timer = timeit.Timer(fn)
    timer.timeit(number=1)  # warm-up
    raw = timer.repeat(repeat=repeat, number=number)
    per = [r / (number * ops_per_call) * scale for r in raw]
    return Timing(best=min(per), median=statistics.median(per), runs=repeat)


def interleaved(cases: dict[str, tuple[Callable[[], Any], int]], *, repeat: int = 7,
                scale: float = 1e9) -> dict[str, Timing]:
    """Time several cases in rounds (A B C, A B C, ...), so that a burst of load from
    another process hits all of them alike; per-op best and median of each.

    `cases`: name -> (fn, ops per call of fn).
    """
    timers = {name: timeit.Timer(fn) for name, (fn, _) in cases.items()}
    for timer in timers.values():
        timer.timeit(number=1)  # warm-up
    raw: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, timer in timers.items():
            raw[name].append(timer.timeit(number=1) / cases[name][1] * scale)
    return {name: Timing(best=min(v), median=statistics.median(v), runs=repeat) for name, v in raw.items()}


@dataclass
class Run:
    argv: list[str]
    wall_s: float
    returncode: int
    stdout: bytes
    stderr: bytes
    maxrss_kib: int  # this child's peak RSS (ru_maxrss: KiB on Linux)
    cpu_s: float     # this child's user + system CPU time

    def json(self) -> Any:
        return json.loads(self.stdout)

    def check(self, ok: Sequence[int] = (0,)) -> "Run":
        if self.returncode not in ok:
            sys.stderr.write(f"command failed ({self.returncode}): {' '.join(self.argv)}\n"
                             f"{self.stderr.decode(errors='replace')[-2000:]}\n")
            raise SystemExit(f"bench: a command failed: {' '.join(self.argv[:4])} ...")
        return self


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        stdin: bytes | None = None, timeout: float = 600) -> Run:
    """Run one command; wall time and this child's own peak RSS (os.wait4, not RUSAGE_CHILDREN).

    resource.getrusage(RUSAGE_CHILDREN).ru_maxrss is the high-water mark over
    *every* child waited for so far, so measured sizes in sequence would all
    show the largest one; wait4 returns the rusage of exactly this child.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, env=env if env is not None else clean_env(), cwd=cwd)
        if stdin is not None:
            proc.stdin.write(stdin)  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        timer = threading.Timer(timeout, proc.kill)  # a hung command must not hang the benchmark
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(list(argv), wall, proc.returncode, out.read(), err.read(), int(usage.ru_maxrss),
                   usage.ru_utime + usage.ru_stime)


def run_timed(argv: Sequence[str], n: int, *, env: dict[str, str] | None = None, cwd: Path | None = None,
              warmup: int = 1, ok: Sequence[int] = (0,), before: Callable[[], None] | None = None) -> tuple[Timing, Run]:
    """Median and best wall time (ms) of `n` runs after `warmup` discarded runs."""
    last: Run | None = None
    for _ in range(warmup):
        if before:
            before()
        last = run(argv, env=env, cwd=cwd).check(ok)
    walls = []
    for _ in range(n):
        if before:
            before()
        last = run(argv, env=env, cwd=cwd).check(ok)
        walls.append(last.wall_s * 1000)
    assert last is not None
    return Timing(best=min(walls), median=statistics.median(walls), runs=n), last


def run_rounds(cases: dict[str, tuple[Sequence[str], dict[str, str], Path]], n: int, *, warmup: int = 1,
               ok: Sequence[int] = (0,)) -> dict[str, tuple[Timing, Run]]:
    """Like run_timed for several commands, run in rounds (A B C, A B C, ...) so that load
    from other processes falls on all of them alike. Wall times in ms."""
    walls: dict[str, list[float]] = {label: [] for label in cases}
    cpus: dict[str, list[float]] = {label: [] for label in cases}
    last: dict[str, Run] = {}
    for round_no in range(warmup + n):
        for label, (argv, env, cwd) in cases.items():
            r = run(argv, env=env, cwd=cwd).check(ok)
            last[label] = r
            if round_no >= warmup:
                walls[label].append(r.wall_s * 1000)
                cpus[label].append(r.cpu_s * 1000)
    return {label: (Timing(best=min(w), median=statistics.median(w), runs=n,
                           cpu_median=statistics.median(cpus[label])), last[label])
            for label, w in walls.items()}


# --- the fake OpenAI server, as a process -----------------------------------------------------


@contextmanager
def fake_server(mode: str = "ok") -> Iterator[str]:
    """Start `python -m slotgen_ops.runtime.fakeserver` on a free port; yield its base URL."""
    with tempfile.TemporaryDirectory(prefix="slotgen-bench-fake-") as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen([PYTHON, "-m", "slotgen_ops.runtime.fakeserver", "--mode", mode, "--port", "0",
                                 "--port-file", str(port_file)], env=clean_env(), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench: the fake OpenAI server did not start")
                time.sleep(0.02)
            yield f"http://127.0.0.1:{int(port_file.read_text().strip())}/v1"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- workspaces -------------------------------------------------------------------------------


def init_workspace(parent: Path, name: str = "ws") -> Path:
    """`slotgen init DIR`: a fresh workspace, every control safe."""
    root = parent / name
    run([*slotgen_cmd(), "init", str(root)], cwd=parent).check()
    return root


# --- population ---------------------------------------------------------------------------------

COHORT = {"kind": "question-slots", "subject": "mathematics", "level": "gcse", "board": "aqa", "specVersion": "8300"}
LIVE_CONTROLS = {"SLOTGEN_AI_KILL": "false", "FEATURE_SLOTGEN_AI": "true", "SLOTGEN_AI_ROLLOUT_PERCENT": "5",
                 "SLOTGEN_AI_ALLOWLIST_PATH": str(ALLOWLIST)}

# (share out of 20, what the job is) — a mix an operator might point `exposure` at.
_MIX = (
    (12, "eligible"),        # cohort match, allowAI true: decided by the rollout gate
    (3, "other-subject"),    # allowAI true, not in the cohort
    (2, "other-board"),      # allowAI true, not in the cohort
    (2, "opt-out"),          # cohort match, allowAI false
    (1, "no-metadata"),      # cohort match, no metadata at all
)
_KINDS = [kind for share, kind in _MIX for _ in range(share)]


def make_job(i: int) -> dict[str, Any]:
    """Job number i of the benchmark population (deterministic)."""
    kind = _KINDS[i % len(_KINDS)]
    job: dict[str, Any] = {"jobId": f"job-{i:07d}", **COHORT}
    if kind == "other-subject":
        job["subject"] = ("physics", "chemistry", "biology")[i % 3]
    elif kind == "other-board":
        job["board"] = ("edexcel", "ocr")[i % 2]
    if kind == "opt-out":
        job["metadata"] = {"allowAI": False}
    elif kind != "no-metadata":
        job["metadata"] = {"allowAI": True}
    job["payload"] = {"slotCount": 1 + i % 4, "topic": "quadratics"}
    return job


def population(n: int) -> list[dict[str, Any]]:
    return [make_job(i) for i in range(n)]


# --- output -------------------------------------------------------------------------------------


def header(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def machine() -> str:
    import platform

    return (f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPU(s), load avg {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def emit_summary(bench: str, rows: list[tuple[str, str, str]]) -> None:
    """Hand (metric, value, note) rows to run_all (if it is listening)."""
    target = os.environ.get("BENCH_SUMMARY_FILE")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        for metric, value, note in rows:
            fh.write(json.dumps({"bench": bench, "metric": metric, "value": value, "note": note}) + "\n")


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.2f} µs"
    return f"{ns:,.0f} ns"
