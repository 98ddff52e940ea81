#!/usr/bin/env python3
"""`slotgen exposure` over 100k, 300k and 1,000,000 jobs: time, throughput, peak memory.

    .venv/bin/python bench/bench_exposure.py

Writes the JSON-lines populations into a temporary directory under bench/out/
(gitignored; removed at the end), then runs, as a real subprocess,

    slotgen exposure FILE --json --with SLOTGEN_AI_KILL=false --with FEATURE_SLOTGEN_AI=true \
        --with SLOTGEN_AI_ROLLOUT_PERCENT=5 --with SLOTGEN_AI_ALLOWLIST_PATH=<repo>/allowlists/...v1.json

Peak memory is the child's ru_maxrss. It is read with os.wait4 for each run,
i.e. the rusage of that one child: resource.getrusage(RUSAGE_CHILDREN) would
report the high-water mark over every child so far, so a 100k run after a 1M
run would show the 1M figure. (The RUSAGE_CHILDREN value is printed too.)
A one-job file gives the floor: the interpreter plus the CLI's imports.

Finally, an in-process breakdown of the hot loop on 50,000 lines (parse,
check, decide), to show where exposure's time per job goes.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import timeit
from pathlib import Path

import _common as c


def write_population(path: Path, n: int) -> int:
    """n jobs of the benchmark mix (c.make_job), one JSON object a line; returns bytes written."""
    period = 20  # make_job's kinds repeat every 20 jobs, slotCount every 4
    templates = []
    for k in range(period):
        text = json.dumps(c.make_job(k), separators=(",", ":"))
        templates.append(text.replace(f"job-{k:07d}", "job-%07d") + "\n")
    size = 0
    with open(path, "w", encoding="utf-8") as fh:
        chunk = 50_000
        for start in range(0, n, chunk):
            block = "".join(templates[i % period] % i for i in range(start, min(n, start + chunk)))
            size += fh.write(block)
    return size


def exposure_argv(path: Path) -> list[str]:
    argv = [*c.slotgen_cmd(), "exposure", str(path), "--json"]
    for key, value in c.LIVE_CONTROLS.items():
        argv += ["--with", f"{key}={value}"]
    return argv


def hot_loop_breakdown(path: Path, lines: int) -> dict[str, float]:
    """ns per job of: reading + json.loads; + job_problem; + decide (which checks the job again)."""
    from slotgen_ops.contract import Controls, decide, job_problem, parse_allowlist

    controls = Controls.from_mapping(c.LIVE_CONTROLS)
    allowlist = parse_allowlist(json.loads(c.ALLOWLIST.read_text(encoding="utf-8")))
    with open(path, "rb") as fh:
        raw = [next(fh) for _ in range(lines)]
    loads = json.loads
    jobs = [loads(r) for r in raw]

    def parse():
        for r in raw:
            loads(r)

    def check():
        for j in jobs:
            job_problem(j)

    def decide_only():
        for j in jobs:
            decide(j, controls, allowlist).decided_by

    t = c.interleaved({"json.loads(line)": (parse, lines), "job_problem(job)": (check, lines),
                       "decide(job, ...).decided_by": (decide_only, lines)}, repeat=5)
    return {k: v.best for k, v in t.items()}


def main() -> dict:
    sizes = [100_000, 300_000, 1_000_000] if not c.quick() else [20_000, 60_000, 200_000]
    c.header("bench_exposure: slotgen exposure over large populations (subprocess)")
    print(c.machine())
    c.OUT_DIR.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="exposure-", dir=c.OUT_DIR) as tmp:
        tmpdir = Path(tmp)
        files = {}
        t0 = timeit.default_timer()
        for n in [1, *sizes]:
            files[n] = tmpdir / f"jobs-{n}.jsonl"
            size = write_population(files[n], n)
            if n > 1:
                print(f"  wrote {n:>9,} jobs, {size / 1e6:6.1f} MB  {files[n].name}")
        print(f"  (generated in {timeit.default_timer() - t0:.1f} s)")
        env = c.clean_env()

        floor = c.run(exposure_argv(files[1]), env=env, cwd=tmpdir).check()  # also the warm-up
        print(f"\n  floor (1 job): {floor.wall_s * 1000:,.0f} ms wall, {floor.cpu_s * 1000:,.0f} ms CPU, "
              f"peak RSS {floor.maxrss_kib / 1024:,.1f} MiB")
        print(f"\n  {'jobs':>10} {'wall':>8} {'CPU':>8} {'jobs/s':>9} {'µs/job':>7} {'peak RSS':>10}  "
              "openai / total (codes)")
        for n in sizes:
            r = c.run(exposure_argv(files[n]), env=env, cwd=tmpdir).check()
            doc = r.json()
            rate = n / r.wall_s
            print(f"  {n:>10,} {r.wall_s:>7.2f}s {r.cpu_s:>7.2f}s {rate:>9,.0f} {r.wall_s / n * 1e6:>7.2f} "
                  f"{r.maxrss_kib / 1024:>8.1f}MiB  {doc['openai']:,} / {doc['total']:,} {doc['codes']}")
            rows.append((n, r.wall_s, rate, r.maxrss_kib, r.cpu_s))
        print("  (wall > CPU: the process waited for a core; jobs/s is from wall time)")
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"\n  resource.getrusage(RUSAGE_CHILDREN).ru_maxrss after all runs: {children / 1024:,.1f} MiB "
              "(the largest child so far, whichever it was)")
        growth = (rows[-1][3] - rows[0][3]) / 1024
        print(f"  peak RSS from {sizes[0]:,} to {sizes[-1]:,} jobs: {growth:+.1f} MiB "
              f"({'flat: memory does not grow with input' if abs(growth) < 5 else 'GROWS with input'})")

        lines = 50_000 if not c.quick() else 10_000
        print(f"\n  in-process hot loop, {lines:,} lines (best of 5, ns per job):")
        parts = hot_loop_breakdown(files[sizes[-1]], lines)
        for name, ns in parts.items():
            print(f"    {name:<30} {ns:>8,.0f}")
        per_job_cli = rows[-1][1] / rows[-1][0] * 1e9
        print(f"    {'(exposure, whole process)':<30} {per_job_cli:>8,.0f}")
        print("    exposure's loop calls job_problem itself and then decide(), which runs job_problem again.")

    c.emit_summary("exposure", [
        *[(f"exposure {n:,} jobs", f"{wall:.2f} s", f"{rate:,.0f} jobs/s, CPU {cpu:.2f} s, peak RSS {rss / 1024:.1f} MiB")
          for n, wall, rate, rss, cpu in rows],
        ("exposure peak RSS growth", f"{growth:+.1f} MiB", f"{sizes[0]:,} -> {sizes[-1]:,} jobs; floor "
         f"{floor.maxrss_kib / 1024:.1f} MiB"),
    ])
    return {"rows": rows}


if __name__ == "__main__":
    main()
    sys.exit(0)
