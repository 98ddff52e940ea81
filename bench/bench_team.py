#!/usr/bin/env python3
"""A team on PostgreSQL against the file backend, and `render --watch` fan-out (issue 9's figures).

    .venv/bin/python bench/bench_team.py        (BENCH_QUICK=1: fewer rounds, 20 watchers)

A real PostgreSQL 15 server is started on 127.0.0.1 (store.pgserver.LocalPostgres, fsync off as in the
tests; the figures compare the backends, they are not a tuning exercise), and a file workspace and a
database workspace are made with `slotgen init` side by side.

1. `slotgen rollback --json` on each backend, in rounds: the kill-switch engaged (the command's own
   engagedMs: from process start to the kill-switch written and read back; on PostgreSQL, the row
   committed) and the whole process (record and the verification after it included); and `slotgen
   approve --json` (a recorded, signed change without a verification) whole process.
2. `render --watch` propagation: one watcher; 100 changes (a signed approval each, through the library,
   committed), each timed from its COMMIT to the rendered file holding the new head (polled every
   0.5 ms): p50 / p99 / max.
3. Hosts: N `render --watch` processes (real processes, one connection each), then one change: the
   time from its COMMIT until every host's file holds it (p50 / p99 / max over hosts), and the server's
   connection count.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

sys.path.insert(0, str(c.REPO))
from slotgen_ops.store.pgserver import LocalPostgres  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def head_of(path: Path) -> str | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("# slotgen-head:"):
                return line
    except OSError:
        return None
    return None


def approve_in_process(ws: Path, url: str, n: int) -> None:
    """One signed approval recorded through the library (what `slotgen approve` does, without the process)."""
    os.environ["SLOTGEN_STATE_URL"] = url
    from slotgen_ops.policy.authority import resolve_actor
    from slotgen_ops.changes.steps import approve
    from slotgen_ops.workspace import Workspace

    workspace = Workspace(ws)
    actor = resolve_actor(workspace.roster, "approver", ws / "demo-keys" / "approver")
    approve(workspace.environment("staging"), ["SLOTGEN_AI_ROLLOUT_PERCENT=1"], actor=actor,
            decision_record=f"DR-{n + 1}", dry_run=False, confirm=lambda p: True)


def main() -> None:
    quick = c.quick()
    rounds = 3 if quick else 7
    changes = 30 if quick else 100
    hosts = 20 if quick else 200
    c.header("bench_team: PostgreSQL against files, and render --watch fan-out")
    print(c.machine())
    summary = []
    c.OUT_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="team-", dir=c.OUT_DIR) as tmp, LocalPostgres() as pg, \
            c.fake_server("ok") as base_url:
        tmpdir = Path(tmp)
        import psycopg

        with psycopg.connect(pg.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE team")
        url = pg.url("slotgen_admin", pg.password, "team")
        files_ws = c.init_workspace(tmpdir, "files")
        c.run([*c.slotgen_cmd(), "init", str(tmpdir / "pg"), "--state", url], cwd=tmpdir).check()
        pg_ws = tmpdir / "pg"
        env_files = c.clean_env(OPENAI_BASE_URL=base_url)
        env_pg = dict(env_files, SLOTGEN_STATE_URL=url)
        sg = c.slotgen_cmd()
        for ws, env in ((files_ws, env_files), (pg_ws, env_pg)):  # step 1-3 so that an approval is due
            for item, who in (("SLOTGEN_AI_KILL=true", "owner"), ("FEATURE_SLOTGEN_AI=true", "oncall"),
                              ("SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json", "owner")):
                c.run([*sg, "set", "--env", "staging", item, "--decision-record", "DR-1", "--operator", who, "--key",
                       f"demo-keys/{who}", "--yes"], env=env, cwd=ws).check()

        # 1. rollback and approve, both backends, in rounds
        print(f"\n  1. {rounds} rounds after 1 warm-up (whole process wall time, ms)")
        rollback = ["rollback", "--env", "staging", "--reason", "bench", "--operator", "oncall", "--key",
                    "demo-keys/oncall", "--json"]
        approve = ["approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-2",
                   "--operator", "approver", "--key", "demo-keys/approver", "--yes", "--json"]
        engaged: dict[str, list[float]] = {"files": [], "postgresql": []}
        results = c.run_rounds({
            "rollback, files": ([*sg, *rollback], env_files, files_ws),
            "rollback, postgresql": ([*sg, *rollback], env_pg, pg_ws),
            "approve, files": ([*sg, *approve], env_files, files_ws),
            "approve, postgresql": ([*sg, *approve], env_pg, pg_ws),
        }, rounds)
        for backend, ws, env in (("files", files_ws, env_files), ("postgresql", pg_ws, env_pg)):
            for _ in range(rounds):
                r = c.run([*sg, *rollback], env=env, cwd=ws).check()
                engaged[backend].append(float(r.json()["rollback"]["engagedMs"]))
        for label, (timing, _) in results.items():
            print(f"    {label:<24} median {timing.median:7.0f} ms   best {timing.best:7.0f} ms")
        med = {k: statistics.median(v) for k, v in engaged.items()}
        ratio = med["postgresql"] / med["files"]
        print(f"    rollback: kill-switch engaged {med['files']:.1f} ms (files) vs {med['postgresql']:.1f} ms "
              f"(postgresql): {ratio:.2f}x (aim <= 1.5x)")
        summary += [
            ("rollback engaged, files vs postgresql", f"{med['files']:.0f} / {med['postgresql']:.0f} ms",
             f"{ratio:.2f}x (aim <= 1.5x)"),
            ("rollback whole process, files vs postgresql",
             f"{results['rollback, files'][0].median:.0f} / {results['rollback, postgresql'][0].median:.0f} ms", ""),
            ("approve whole process, files vs postgresql",
             f"{results['approve, files'][0].median:.0f} / {results['approve, postgresql'][0].median:.0f} ms", ""),
        ]

        # 2. propagation to one watcher
        out = tmpdir / "host.env"
        watcher = subprocess.Popen([*sg, "render", "--env", "staging", "--output", str(out), "--watch",
                                    "--workspace", str(pg_ws)], env=env_pg, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        lags: list[float] = []
        try:
            while head_of(out) is None:
                time.sleep(0.01)
            for n in range(changes):
                before = head_of(out)
                approve_in_process(pg_ws, url, n)
                t0 = time.perf_counter()
                while head_of(out) == before:
                    time.sleep(0.0005)
                lags.append((time.perf_counter() - t0) * 1000)
        finally:
            watcher.terminate()
            watcher.wait(30)
        print(f"\n  2. render --watch propagation over {changes} changes (COMMIT to the file rewritten): "
              f"p50 {pct(lags, 50):.1f} ms, p99 {pct(lags, 99):.1f} ms, max {max(lags):.1f} ms (aim: p99 < 1 s)")
        summary.append((f"render --watch propagation ({changes} changes)",
                        f"p50 {pct(lags, 50):.1f} / p99 {pct(lags, 99):.1f} ms", "aim p99 < 1,000 ms"))

        # 3. many hosts
        outs = [tmpdir / "hosts" / f"h{i}.env" for i in range(hosts)]
        outs[0].parent.mkdir()
        started = time.perf_counter()
        procs = []
        try:
            for path in outs:
                procs.append(subprocess.Popen([*sg, "render", "--env", "staging", "--output", str(path), "--watch",
                                               "--workspace", str(pg_ws)], env=env_pg, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
            while any(head_of(p) is None for p in outs):
                dead = [p for p in procs if p.poll() is not None]
                if dead:
                    raise SystemExit(f"bench_team: {len(dead)} watchers exited")
                time.sleep(0.05)
            ready_s = time.perf_counter() - started
            with psycopg.connect(pg.admin_url) as conn:
                connections = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'team'").fetchone()[0]
            before = head_of(outs[0])
            approve_in_process(pg_ws, url, 9999)
            t0 = time.perf_counter()
            pending = {i for i in range(hosts)}
            seen: dict[int, float] = {}
            while pending and time.perf_counter() - t0 < 60:
                for i in list(pending):
                    if head_of(outs[i]) != before:
                        seen[i] = (time.perf_counter() - t0) * 1000
                        pending.discard(i)
                time.sleep(0.001)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        times = list(seen.values())
        print(f"\n  3. {hosts} render --watch hosts (processes), all started and rendering in {ready_s:.1f} s; "
              f"{connections} connections to the database")
        print(f"    one change reached {len(times)} of {hosts} hosts: p50 {pct(times, 50):.0f} ms, "
              f"p99 {pct(times, 99):.0f} ms, max {max(times):.0f} ms")
        summary.append((f"{hosts} watching hosts, one change",
                        f"{len(times)}/{hosts}, p99 {pct(times, 99):.0f} ms", f"{connections} connections"))
    c.emit_summary("team", summary)


if __name__ == "__main__":
    main()
    sys.exit(0)
