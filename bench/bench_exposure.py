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

Then, on the largest file, exposure against its floor: reading the same
file line by line and calling json.loads on each line, nothing else. Both
are timed as whole processes (in rounds: floor, exposure, floor, ...) and
in-process (the floor loop against exposure's own `_count`), as MB/s,
lines/s and the ratio exposure / floor; the aim is at most 2x. When the
in-process ratio is over 2x (or with --profile) a cProfile of `_count`
follows. If `orjson` is importable, the floor with orjson.loads and
exposure's loop with orjson.loads in place of the stdlib parse are timed
too, to show what that dependency would buy (it is not one of slotgen's).

Finally, an in-process breakdown of the hot loop on 50,000 lines (parse,
check, decide), to show where exposure's time per job goes.

    .venv/bin/python bench/bench_exposure.py [--profile]
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


def live_evaluation():
    """The controls and allowlist of the benchmark runs, parsed once as the CLI does."""
    from types import SimpleNamespace

    from slotgen_ops.contract import Controls, parse_allowlist

    return SimpleNamespace(controls=Controls.from_mapping(c.LIVE_CONTROLS),
                           allowlist=parse_allowlist(json.loads(c.ALLOWLIST.read_text(encoding="utf-8"))))


def hot_loop_breakdown(path: Path, lines: int) -> dict[str, float]:
    """ns per job of: json.loads; job_problem; decided_by (exposure's decision, on a checked job)."""
    from slotgen_ops.contract import job_problem
    from slotgen_ops.contract.order import decided_by

    evaluation = live_evaluation()
    controls, allowlist = evaluation.controls, evaluation.allowlist
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
            decided_by(j, controls, allowlist)

    t = c.interleaved({"json.loads(line)": (parse, lines), "job_problem(job)": (check, lines),
                       "decided_by(job, ...)": (decide_only, lines)}, repeat=5)
    return {k: v.best for k, v in t.items()}


FLOOR_SCRIPT = "import json, sys\nloads = json.loads\nfor line in open(sys.argv[1], 'rb'):\n    loads(line)\n"


def floor_loop(path: Path, loads) -> None:
    """The floor: read the file line by line and parse each line, nothing else."""
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)


def count_in_process(path: Path, evaluation) -> list[int]:
    """exposure's own hot loop (`_count`) over the file, without the CLI around it."""
    from slotgen_ops.cli.exposure import Invalid, _count
    from slotgen_ops.contract.order import _ALL_PASSED

    counts = [0] * (_ALL_PASSED + 1)
    with open(path, "rb") as fh:
        _count(fh, evaluation, counts, Invalid(str(path), False), None)
    return counts


def orjson_count(path: Path, evaluation, loads) -> list[int]:
    """What-if: exposure's loop with `loads` (orjson's) as the parse; same check, same decision."""
    from slotgen_ops.contract import job_problem
    from slotgen_ops.contract.order import _ALL_PASSED, decided_by

    counts = [0] * (_ALL_PASSED + 1)
    controls, allowlist = evaluation.controls, evaluation.allowlist
    with open(path, "rb") as fh:
        for line in fh:
            job = loads(line)
            if job_problem(job) is None:
                counts[decided_by(job, controls, allowlist)] += 1
    return counts


def against_the_floor(path: Path, lines: int, env: dict[str, str], cwd: Path, profile: bool) -> dict[str, float]:
    """exposure / floor on one file: whole processes in rounds, then in-process; MB/s, lines/s, ratios."""
    size = path.stat().st_size
    rounds = 3 if not c.quick() else 2
    print(f"\n  exposure against its floor (read each line, json.loads it, nothing else): {lines:,} lines, "
          f"{size / 1e6:,.1f} MB")

    def row(label: str, seconds: float, floor_s: float | None) -> None:
        ratio = f"{seconds / floor_s:>6.2f}x" if floor_s else f"{'1.00x':>7}"
        print(f"    {label:<48} {seconds:>7.2f}s {size / 1e6 / seconds:>8,.1f} MB/s "
              f"{lines / seconds:>11,.0f} lines/s {ratio}")

    procs = c.run_rounds({
        "floor": ([c.PYTHON, "-c", FLOOR_SCRIPT, str(path)], env, cwd),
        "exposure": (exposure_argv(path), env, cwd),
    }, n=rounds)
    floor_p, exposure_p = procs["floor"][0].median / 1000, procs["exposure"][0].median / 1000
    print(f"    whole process, median of {rounds} rounds:")
    row("python -c 'for line in f: json.loads(line)'", floor_p, None)
    row("slotgen exposure FILE --json", exposure_p, floor_p)

    evaluation = live_evaluation()
    cases = {
        "floor": (lambda: floor_loop(path, json.loads), 1),
        "exposure": (lambda: count_in_process(path, evaluation), 1),
    }
    try:
        import orjson
    except ImportError:
        orjson = None
    if orjson is not None:
        cases["floor-orjson"] = (lambda: floor_loop(path, orjson.loads), 1)
        cases["exposure-orjson"] = (lambda: orjson_count(path, evaluation, orjson.loads), 1)
        same = orjson_count(path, evaluation, orjson.loads) == count_in_process(path, evaluation)
    t = c.interleaved(cases, repeat=rounds, scale=1)
    floor_i, exposure_i = t["floor"].best, t["exposure"].best
    print(f"    in-process, best of {rounds}:")
    row("for line in f: json.loads(line)", floor_i, None)
    row("exposure's _count (parse, check, decide, count)", exposure_i, floor_i)
    if orjson is not None:
        print(f"    with orjson {orjson.__version__} (not a slotgen dependency), against the same json.loads floor:")
        row("for line in f: orjson.loads(line)", t["floor-orjson"].best, floor_i)
        row("exposure's loop with orjson.loads", t["exposure-orjson"].best, floor_i)
        print(f"    orjson would make exposure's loop {exposure_i / t['exposure-orjson'].best:.2f}x as fast "
              f"(same counts: {'yes' if same else 'NO'})")
    else:
        print("    orjson: not installed, not measured (pip install orjson to compare)")
    ratio = exposure_i / floor_i
    print(f"  exposure / floor: {exposure_p / floor_p:.2f}x whole process, {ratio:.2f}x in-process "
          f"(aim <= 2x: {'met' if ratio <= 2 else 'MISSED'})")
    if profile or ratio > 2:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(count_in_process, path, evaluation)
        print("\n  cProfile of exposure's _count (by own time):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(10)
    out = {"size": size, "floor_p": floor_p, "exposure_p": exposure_p, "floor_i": floor_i, "exposure_i": exposure_i}
    if orjson is not None:
        out["exposure_orjson_i"] = t["exposure-orjson"].best
    return out


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

        vs = against_the_floor(files[sizes[-1]], sizes[-1], env, tmpdir, "--profile" in sys.argv[1:])

        lines = 50_000 if not c.quick() else 10_000
        print(f"\n  in-process hot loop, {lines:,} lines (best of 5, ns per job):")
        parts = hot_loop_breakdown(files[sizes[-1]], lines)
        for name, ns in parts.items():
            print(f"    {name:<30} {ns:>8,.0f}")
        per_job_cli = rows[-1][1] / rows[-1][0] * 1e9
        print(f"    {'(exposure, whole process)':<30} {per_job_cli:>8,.0f}")
        print("    exposure checks each job once (job_problem), then decided_by() decides it without checking again.")

    c.emit_summary("exposure", [
        *[(f"exposure {n:,} jobs", f"{wall:.2f} s", f"{rate:,.0f} jobs/s, CPU {cpu:.2f} s, peak RSS {rss / 1024:.1f} MiB")
          for n, wall, rate, rss, cpu in rows],
        ("exposure peak RSS growth", f"{growth:+.1f} MiB", f"{sizes[0]:,} -> {sizes[-1]:,} jobs; floor "
         f"{floor.maxrss_kib / 1024:.1f} MiB"),
        ("exposure / json.loads floor", f"{vs['exposure_i'] / vs['floor_i']:.2f}x",
         f"in-process, {sizes[-1]:,} lines: {vs['size'] / 1e6 / vs['exposure_i']:,.0f} vs "
         f"{vs['size'] / 1e6 / vs['floor_i']:,.0f} MB/s; whole process {vs['exposure_p'] / vs['floor_p']:.2f}x "
         "(aim <= 2x)"),
    ])
    return {"rows": rows, "floor": vs}


if __name__ == "__main__":
    main()
    sys.exit(0)
