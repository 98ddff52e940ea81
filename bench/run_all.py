#!/usr/bin/env python3
"""Run every benchmark in turn, then print one summary table.

    .venv/bin/python bench/run_all.py            # all of them (what `make bench` runs)
    .venv/bin/python bench/run_all.py --quick    # smaller sizes and fewer repeats: a smoke run
    .venv/bin/python bench/run_all.py decide peers   # only these (names: decide peers exposure startup verify rollback)

Each benchmark runs as its own process (its output is shown as it comes) and
hands its key figures back through the file named by $BENCH_SUMMARY_FILE.
Benchmarks print figures; they never assert. Exit status is non-zero only if
a benchmark script itself crashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ORDER = ("decide", "peers", "exposure", "startup", "verify", "rollback", "team")


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")] or list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        sys.stderr.write(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}\n")
        return 2
    env = dict(os.environ)
    if quick:
        env["BENCH_QUICK"] = "1"
    failures = []
    durations = {}
    with tempfile.TemporaryDirectory(prefix="slotgen-bench-") as tmp:
        summary_file = Path(tmp) / "summary.jsonl"
        summary_file.touch()
        env["BENCH_SUMMARY_FILE"] = str(summary_file)
        started = time.perf_counter()
        for name in names:
            script = BENCH_DIR / f"bench_{name}.py"
            t0 = time.perf_counter()
            rc = subprocess.call([sys.executable, str(script)], env=env, cwd=BENCH_DIR.parent)
            durations[name] = time.perf_counter() - t0
            if rc != 0:
                failures.append(f"{name} (exit {rc})")
        total = time.perf_counter() - started
        rows = [json.loads(line) for line in summary_file.read_text(encoding="utf-8").splitlines() if line.strip()]

    print_table(rows, durations, total, quick)
    if failures:
        print(f"\nFAILED to run: {', '.join(failures)}")
        return 1
    return 0


def print_table(rows: list[dict], durations: dict[str, float], total: float, quick: bool) -> None:
    import platform

    title = "slotgen benchmark summary" + (" (QUICK: smaller sizes, rougher figures)" if quick else "")
    print("\n" + "=" * len(title))
    print(title)
    print("=" * len(title))
    print(f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPU(s), "
          f"load avg {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    headers = ("bench", "metric", "value", "note")
    table = [headers] + [(r["bench"], r["metric"], r["value"], r["note"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(3)]
    line = lambda row: "  ".join(  # noqa: E731
        [str(row[0]).ljust(widths[0]), str(row[1]).ljust(widths[1]), str(row[2]).rjust(widths[2]), str(row[3])])
    print(line(headers))
    print("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    previous = None
    for row in table[1:]:
        if previous is not None and row[0] != previous:
            print()
        print(line(row))
        previous = row[0]
    print("\n" + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations.items())
          + f"; total {total:.0f} s")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
