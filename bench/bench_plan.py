#!/usr/bin/env python3
"""`slotgen plan --jobs` over 100k and 300k jobs, beside one `slotgen exposure` over the same file.

    .venv/bin/python bench/bench_plan.py          # BENCH_QUICK=1: 100k only, fewer runs

A fresh workspace (`slotgen init`) plans all seven steps of `staging`: the
population is read once, and each job is decided under every distinct set of
controls the plan passes through (six here: steps 1 and 5 change no control
that matters to a job). `exposure` decides each job once, so the ratio of the
two is the cost of those extra decisions. Time is the median wall time of
whole processes after a discarded warm-up; peak memory is the child's
ru_maxrss (os.wait4), which must not grow with the population.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import _common as c
from bench_exposure import write_population


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.read().decode()[:300]}")
    return elapsed, usage.ru_maxrss


def measure(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float, int]:
    run_once(argv, env)  # warm-up, discarded
    times, peaks = [], []
    for _ in range(runs):
        elapsed, peak = run_once(argv, env)
        times.append(elapsed)
        peaks.append(peak)
    return statistics.median(times), min(times), max(peaks)


def main() -> None:
    sizes = (100_000,) if c.quick() else (100_000, 300_000)
    runs = 2 if c.quick() else 3
    c.OUT_DIR.mkdir(exist_ok=True)
    env = c.clean_env()
    rows = []
    with tempfile.TemporaryDirectory(dir=c.OUT_DIR, prefix="plan-") as tmp:
        ws = Path(tmp) / "ws"
        subprocess.run([*c.slotgen_cmd(), "init", str(ws)], env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"{'jobs':>9}  {'command':<28} {'median s':>9} {'best s':>8} {'jobs/s':>10} {'peak MiB':>9}")
        for n in sizes:
            population = Path(tmp) / f"jobs-{n}.jsonl"
            write_population(population, n)
            cases = {
                "plan --jobs (7 steps)": [*c.slotgen_cmd(), "plan", "--env", "staging", "--workspace", str(ws),
                                          "--json", "--jobs", str(population)],
                "exposure (one set)": [*c.slotgen_cmd(), "exposure", str(population), "--env", "staging",
                                       "--workspace", str(ws), "--with", "SLOTGEN_AI_KILL=false", "--json"],
            }
            for name, argv in cases.items():
                median, best, peak = measure(argv, env, runs)
                print(f"{n:>9}  {name:<28} {median:>9.2f} {best:>8.2f} {n / median:>10,.0f} {peak / 1024:>9.1f}")
                rows.append((f"{name}, {n:,} jobs", f"{median:.2f} s", f"{n / median:,.0f} jobs/s, "
                             f"peak {peak / 1024:.0f} MiB"))
    c.emit_summary("plan", rows)


if __name__ == "__main__":
    main()
