#!/usr/bin/env python3
"""Time from exec of `slotgen rollback` to the kill-switch engaged, durable and read back: idle and busy.

    .venv/bin/python bench/bench_rollback.py               # 7 samples of each case (about 30-40 s)
    .venv/bin/python bench/bench_rollback.py --samples 15

Every case runs once per round, in rounds (A B C D, A B C D, ...), after one
discarded warm-up round, so that load from other processes falls on all of
them alike:

1. floor: `python -c "import typer, pydantic, yaml"` (the venv's interpreter),
   whole-process wall time. No `slotgen` can be faster than its dependencies.
2. idle: `slotgen rollback --env staging --reason bench --operator oncall --json`
   on a live environment (rollout 1, kill-switch off). Each sample gets a fresh
   copy of one workspace walked to live with tests/walked.py (the real change
   service and verification against the shipped fake endpoint in `ok` mode),
   which is the same state as re-walking it. Per sample:
     - engaged from exec (external): the benchmark polls the controls file
       every ~1 ms from just before exec and reads it as the runtime does
       (slotgen_ops.changes.controls_file.runtime_values); the time at which it
       first reads SLOTGEN_AI_KILL engaged, in a file that is no longer the one
       found before exec. That is the earliest moment the runtime sees it.
     - engagedMs as the CLI reports it (`rollback.engagedMs` in its JSON: from
       `slotgen_ops.STARTED`, the package's first import, to the write read
       back by the entry point, before the CLI is imported). It leaves out the
       interpreter's start; the gap to the external figure is that part.
     - the whole process (the rollback's record and its verification included).
3. busy: the same while another process is inside its verification against
   the shipped fake endpoint in `hung` mode (FakeOpenAIServer("hung") in a
   thread; timeoutSeconds 60 in the workspace, so it stays stuck through the
   sample). The other process is started through the test-only launcher,
   `python tests/faultwrap.py --at before-verify --do touch:MARKER -- ...`;
   the rollback starts as soon as MARKER exists, and the other process is
   killed after the sample. Two variants:
     a. `slotgen set --env staging SLOTGEN_AI_KILL=false` at runbook position 5
        ("verified, kill-switch on": the step this set takes). The kill-switch
        is already engaged in the file before the rollback, so the external
        figure is the first *rewrite* of the file that reads engaged.
     b. a recorded `slotgen verify` on the live environment of case 2: the same
        starting state as idle, kill-switch off until the rollback writes it.

The aims are printed with the ratios: engaged ≤ 1.5x the floor, busy ≤ 1.2x
idle (medians of engaged-from-exec, external). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as c

sys.path.insert(0, str(c.REPO / "tests"))
import walked  # noqa: E402  (tests/walked.py: a workspace walked to a runbook position, in-process)

from slotgen_ops.contract import KILL_VAR, kill_switch_engaged  # noqa: E402
from slotgen_ops.changes.controls_file import runtime_values  # noqa: E402
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer  # noqa: E402

FAULTWRAP = c.REPO / "tests" / "faultwrap.py"
# Run in the workspace: each operator signs with the rehearsal key `slotgen init` wrote for them.
ROLLBACK = ["rollback", "--env", "staging", "--reason", "bench", "--operator", "oncall", "--key", "demo-keys/oncall",
            "--json"]
SET_KILL_OFF = ["set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-1", "--operator",
                "owner", "--key", "demo-keys/owner", "--yes", "--json"]
VERIFY_RECORDED = ["verify", "--env", "staging", "--decision-record", "DR-1", "--operator", "owner", "--key",
                   "demo-keys/owner", "--json"]
POLL_S = 0.001
AIM_FLOOR, AIM_BUSY = 1.5, 1.2


# --- one timed rollback ---------------------------------------------------------------------------


@dataclass
class Sample:
    engaged_ms: float | None   # exec -> the controls file first reads engaged (polled); None: never seen while running
    whole_ms: float            # exec -> the process has exited
    cli_engaged_ms: float      # rollback.engagedMs from its JSON (from the package's first import)
    cli_total_ms: float        # rollback.totalMs (engaged + recorded)
    polls: int
    doc: dict[str, Any]
    other_alive: bool | None = None   # busy: the verifying process was still running when the rollback exited
    other_reached: bool | None = None  # busy: its completion request had reached the hung endpoint by then


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _reads_engaged(path: Path, before: tuple[int, int, int] | None) -> bool:
    """The file is not the one found before exec, and the runtime would read the kill-switch engaged."""
    try:
        if _identity(path) == before:
            return False
        raw = path.read_bytes()
    except OSError:
        return False
    return kill_switch_engaged(runtime_values(raw)[KILL_VAR])


def timed_rollback(ws: Path, env: dict[str, str], timeout: float = 120) -> Sample:
    controls = ws / "environments" / "staging.env"
    before = _identity(controls)
    argv = [*c.slotgen_cmd(), *ROLLBACK, "--workspace", str(ws)]
    ended: dict[str, float] = {}
    polls = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=ws)

        def wait() -> None:
            proc.wait()
            ended["t"] = time.perf_counter()

        waiter = threading.Thread(target=wait, name="rollback-wait", daemon=True)
        waiter.start()
        engaged_at = None
        deadline = start + timeout
        while waiter.is_alive():
            polls += 1
            if _reads_engaged(controls, before):
                engaged_at = time.perf_counter()
                break
            if time.perf_counter() > deadline:
                proc.kill()
                break
            time.sleep(POLL_S)
        waiter.join(timeout)
        out.seek(0)
        err.seek(0)
        run = c.Run(argv, ended.get("t", time.perf_counter()) - start, proc.returncode, out.read(), err.read(), 0, 0)
    run.check()
    doc = run.json()
    rb = doc.get("rollback") or {}
    return Sample(engaged_ms=None if engaged_at is None else (engaged_at - start) * 1000, whole_ms=run.wall_s * 1000,
                  cli_engaged_ms=float(rb.get("engagedMs")), cli_total_ms=float(rb.get("totalMs")), polls=polls,
                  doc=doc)


# --- the cases ------------------------------------------------------------------------------------


def fresh_copy(template: Path, parent: Path, name: str) -> Path:
    root = parent / name
    shutil.copytree(template, root, symlinks=True)
    return root


def floor_sample(env: dict[str, str], cwd: Path) -> float:
    return c.run([c.PYTHON, "-c", "import typer, pydantic, yaml"], env=env, cwd=cwd).check().wall_s * 1000


def busy_sample(ws: Path, args: list[str], env: dict[str, str], hung: FakeOpenAIServer, marker: Path) -> Sample:
    """Start the verifying process, wait until it is at `before-verify`, time the rollback, kill it."""
    argv = [c.PYTHON, str(FAULTWRAP), "--at", "before-verify", "--do", f"touch:{marker}", "--", *args,
            "--workspace", str(ws)]
    with tempfile.TemporaryFile() as err:
        other = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                 cwd=ws)
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():
                if other.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    raise SystemExit(f"bench_rollback: `{' '.join(args[:3])}` never reached its verification "
                                     f"(exit {other.returncode}): {err.read().decode(errors='replace')[-1500:]}")
                time.sleep(0.001)
            calls = hung.calls
            sample = timed_rollback(ws, env)
            sample.other_alive = other.poll() is None
            sample.other_reached = hung.calls > calls
        finally:
            other.kill()
            other.wait()
    return sample


# --- figures --------------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


@dataclass
class Case:
    label: str
    samples: list[Sample] = field(default_factory=list)

    def figures(self, attr: str) -> list[float]:
        return [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]

    def median(self, attr: str = "engaged_ms") -> float:
        return statistics.median(self.figures(attr))


def row(label: str, values: list[float], floor: float | None = None) -> str:
    if not values:
        return f"  {label:<52} {'n/a':>10}"
    ratio = f"{statistics.median(values) / floor:6.2f}x" if floor else " " * 7
    return (f"  {label:<52} {statistics.median(values):7.1f} ms {p90(values):7.1f} ms {min(values):7.1f} ms "
            f"{ratio}")


def verdict(ratio: float, aim: float) -> str:
    return "met" if ratio <= aim else "missed"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4 if c.quick() else 7,
                        help="samples of each case, after one warm-up round (default 7; 4 with BENCH_QUICK=1)")
    n = max(1, parser.parse_args(argv).samples)
    c.header("bench_rollback: exec of `slotgen rollback` to the kill-switch engaged and read back (subprocess)")
    print(c.machine())
    c.OUT_DIR.mkdir(exist_ok=True)
    env = c.clean_env(OPENAI_API_KEY=walked.API_KEY)
    os.environ.setdefault("OPENAI_API_KEY", walked.API_KEY)  # the in-process walks (walked.walk sets it too)

    with tempfile.TemporaryDirectory(prefix="rollback-", dir=c.OUT_DIR) as tmp, \
            FakeOpenAIServer("ok") as ok, FakeOpenAIServer("ok") as hung:
        tmpdir = Path(tmp)
        t0 = time.perf_counter()
        live = tmpdir / "tmpl-live"
        walked.walk(live, 6, ok.base_url)           # live at rollout 1, kill-switch off
        # The busy cases' workspaces point at the second endpoint with a 60 s timeout from the start: the endpoint
        # is part of the pinned policy (an edit of slotgen.yaml after the walk would refuse every change), so
        # they are walked against it while it still answers, and it hangs from then on.
        configure = walked.configure_endpoint
        walked.configure_endpoint = lambda root, base_url: configure(root, base_url, timeout_s=60)
        try:
            live_hung = tmpdir / "tmpl-live-hung"
            walked.walk(live_hung, 6, hung.base_url)
            at5_hung = tmpdir / "tmpl-5-hung"
            walked.walk(at5_hung, 5, hung.base_url)  # verified, kill-switch on: `set SLOTGEN_AI_KILL=false` is next
        finally:
            walked.configure_endpoint = configure
        hung.set_mode("hung")
        print(f"  workspaces walked in {time.perf_counter() - t0:.1f} s (tests/walked.py, real verification against "
              f"the fake endpoint in `ok` mode); each sample runs on a fresh copy")

        # A copy is a consistent environment: one rollback on it, then `audit verify`.
        probe = fresh_copy(live, tmpdir, "probe")
        c.run([*c.slotgen_cmd(), *ROLLBACK, "--workspace", str(probe)], env=env, cwd=probe).check()
        audit = c.run([*c.slotgen_cmd(), "audit", "verify", "--env", "staging", "--json", "--workspace", str(probe)],
                      env=env, cwd=probe).check().json()
        print(f"  copy check: rollback on a copy, then audit verify: valid={audit.get('valid')}, "
              f"entries={audit.get('entries')}")

        floor: list[float] = []
        idle = Case("idle: rollback on live (rollout 1)")
        busy_set = Case("busy: set KILL=false verifying (position 5)")
        busy_verify = Case("busy: recorded verify verifying (live)")
        print(f"\n  {n} rounds after 1 warm-up round; each round: floor, idle, busy (set), busy (verify) ...",
              flush=True)
        t0 = time.perf_counter()
        for round_no in range(n + 1):
            keep = round_no > 0
            f = floor_sample(env, tmpdir)
            s_idle = timed_rollback(fresh_copy(live, tmpdir, f"idle-{round_no}"), env)
            s_set = busy_sample(fresh_copy(at5_hung, tmpdir, f"set-{round_no}"), SET_KILL_OFF, env, hung,
                                tmpdir / f"verifying-set-{round_no}")
            s_ver = busy_sample(fresh_copy(live_hung, tmpdir, f"verify-{round_no}"), VERIFY_RECORDED, env, hung,
                                tmpdir / f"verifying-verify-{round_no}")
            if keep:
                floor.append(f)
                idle.samples.append(s_idle)
                busy_set.samples.append(s_set)
                busy_verify.samples.append(s_ver)
        print(f"  ({time.perf_counter() - t0:.1f} s)")

    fl = statistics.median(floor)
    print(f"\n  {'':<52} {'median':>10} {'p90':>10} {'best':>10} {'x floor':>7}")
    print(row("floor: python -c 'import typer, pydantic, yaml'", floor))
    for case in (idle, busy_set, busy_verify):
        print(f"  {case.label}")
        print(row("  engaged from exec (external poll of controls file)", case.figures("engaged_ms"), fl))
        print(row("  engagedMs as the CLI reports it (from import)", case.figures("cli_engaged_ms")))
        gap = [s.engaged_ms - s.cli_engaged_ms for s in case.samples if s.engaged_ms is not None]
        print(row("  external - CLI engagedMs (start + imports, +poll)", gap))
        print(row("  totalMs as the CLI reports it (engaged + recorded)", case.figures("cli_total_ms")))
        print(row("  whole process (incl. its verification)", case.figures("whole_ms"), fl))
        unseen = sum(1 for s in case.samples if s.engaged_ms is None)
        glass = sum(1 for s in case.samples if (s.doc.get("rollback") or {}).get("breakGlass"))
        recorded = sum(1 for s in case.samples if s.doc.get("auditSeq") is not None)
        passed = sum(1 for s in case.samples if (s.doc.get("verification") or {}).get("passed"))
        notes = [f"recorded in the audit log {recorded}/{n}", f"break-glass {glass}/{n}",
                 f"its verification passed {passed}/{n}",
                 f"polls per sample ~{statistics.median([s.polls for s in case.samples]):.0f}"]
        if unseen:
            notes.append(f"engaged NOT SEEN by the poll while running in {unseen}/{n}")
        if case is not idle:
            notes.append(f"other process still verifying at rollback exit "
                         f"{sum(1 for s in case.samples if s.other_alive)}/{n}")
            notes.append(f"its request already at the hung endpoint "
                         f"{sum(1 for s in case.samples if s.other_reached)}/{n}")
        print(f"    ({'; '.join(notes)})")

    idle_m = idle.median()
    r_floor = idle_m / fl
    r_set = busy_set.median() / idle_m
    r_ver = busy_verify.median() / idle_m
    print("\n  aims (medians of engaged from exec, external):")
    print(f"    idle engaged <= {AIM_FLOOR}x floor: {idle_m:.1f} / {fl:.1f} ms = {r_floor:.2f}x  "
          f"{verdict(r_floor, AIM_FLOOR)}")
    print(f"    busy engaged <= {AIM_BUSY}x idle:   set (position 5) {busy_set.median():.1f} / {idle_m:.1f} ms = "
          f"{r_set:.2f}x  {verdict(r_set, AIM_BUSY)}")
    print(f"    {'':<32}verify (live)    {busy_verify.median():.1f} / {idle_m:.1f} ms = "
          f"{r_ver:.2f}x  {verdict(r_ver, AIM_BUSY)}")
    p_idle, p_set, p_ver = (p90(x.figures("engaged_ms")) for x in (idle, busy_set, busy_verify))
    print(f"    (p90: idle {p_idle / p90(floor):.2f}x floor p90; busy set {p_set / p_idle:.2f}x, "
          f"busy verify {p_ver / p_idle:.2f}x idle p90)")

    c.emit_summary("rollback", [
        ("floor: import typer, pydantic, yaml", f"{fl:.0f} ms", f"median; p90 {p90(floor):.0f} ms"),
        ("idle: engaged from exec", f"{idle_m:.0f} ms",
         f"{r_floor:.2f}x floor (aim <= {AIM_FLOOR}x: {verdict(r_floor, AIM_FLOOR)}); p90 {p_idle:.0f} ms; "
         f"CLI engagedMs {idle.median('cli_engaged_ms'):.0f} ms"),
        ("idle: whole process", f"{idle.median('whole_ms'):.0f} ms", f"p90 {p90(idle.figures('whole_ms')):.0f} ms"),
        ("busy (set at 5): engaged from exec", f"{busy_set.median():.0f} ms",
         f"{r_set:.2f}x idle (aim <= {AIM_BUSY}x: {verdict(r_set, AIM_BUSY)}); p90 {p_set:.0f} ms"),
        ("busy (verify, live): engaged from exec", f"{busy_verify.median():.0f} ms",
         f"{r_ver:.2f}x idle (aim <= {AIM_BUSY}x: {verdict(r_ver, AIM_BUSY)}); p90 {p_ver:.0f} ms"),
        ("busy (set at 5): whole process", f"{busy_set.median('whole_ms'):.0f} ms",
         f"p90 {p90(busy_set.figures('whole_ms')):.0f} ms"),
    ])
    return {}


if __name__ == "__main__":
    main()
    sys.exit(0)
