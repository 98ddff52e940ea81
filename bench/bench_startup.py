#!/usr/bin/env python3
"""Whole-process wall time of the CLI's commands, what they import, and status at 10 vs 100,000 entries.

    .venv/bin/python bench/bench_startup.py

1. Median (and best) of N subprocess runs, after one discarded warm-up, of
     python -c "import typer, pydantic, yaml"      (the baseline: the CLI's own dependencies)
     slotgen --help
     slotgen decide JOB --json                     (controls from the process environment: live, rollout 5)
     slotgen status --env staging                  (in a fresh `slotgen init` workspace)
     slotgen rollback --env staging --reason bench --operator oncall --json
   and each one's ratio to the baseline. Rollback from a rolled-back state is
   fine: every run records a rollback entry and the verification that follows
   it (the post-change verification runs the sample jobs through the runtime
   and validates every executor status and telemetry event with jsonschema; a
   local fake OpenAI server answers its call-counter probe).
2. Whether `openai` / `jsonschema` (and httpx, rich.table) end up imported by
   each command: a wrapper runs the real entry point and reports sys.modules at exit.
3. The slowest imports of each command (python -X importtime, top cumulative).
4. `slotgen status --env staging` with 10 vs 100,000 audit entries, and
   `slotgen audit verify --env staging --json` entries/second at 100,000.
   The 10-entry log is made by real appends through the library
   (Environment.writer() -> ControlsWriter.record: lock, append + fsync,
   controls written and read back); the 100,000-entry log continues that one
   with correctly chained `refused` entries written directly (each carries the
   unchanged state, as a real refusal does), then the controls file's head is
   rewritten with changes.environment.render_controls, so the environment stays
   consistent. `audit verify` confirms it (valid: true).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import _common as c

WATCHED = ("openai", "jsonschema", "httpx", "rich.table", "pydantic", "yaml")

_WRAPPER = """
import atexit, json, os, sys
def _report():
    with open(os.environ["BENCH_MODULES_OUT"], "w") as fh:
        json.dump({"modules": {m: m in sys.modules for m in json.loads(os.environ["BENCH_WATCHED"])},
                   "count": len(sys.modules)}, fh)
atexit.register(_report)
sys.argv = ["slotgen", *json.loads(os.environ["BENCH_ARGS"])]
from slotgen_ops.cli.entry import main
main()
"""


def modules_imported(args: list[str], env: dict[str, str], cwd: Path, ok=(0,)) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    try:
        e = dict(env, BENCH_MODULES_OUT=out, BENCH_WATCHED=json.dumps(WATCHED), BENCH_ARGS=json.dumps(args))
        c.run([c.PYTHON, "-c", _WRAPPER], env=e, cwd=cwd).check(ok)
        return json.loads(Path(out).read_text())
    finally:
        os.unlink(out)


def slowest_imports(argv_tail: list[str], env: dict[str, str], cwd: Path, top: int = 5) -> list[tuple[str, int]]:
    """Top-level imports by cumulative time (µs), from python -X importtime."""
    code = "import sys; sys.argv=['slotgen', *sys.argv[1:]]; from slotgen_ops.cli.entry import main; main()"
    r = c.run([c.PYTHON, "-X", "importtime", "-c", code, *argv_tail], env=env, cwd=cwd)
    rows = []
    for line in r.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        try:
            _, cumulative, name = line[len("import time:"):].split("|", 2)
        except ValueError:
            continue
        if name.startswith(" ") and not name.startswith("  "):  # top level: one space, no nesting
            rows.append((name.strip(), int(cumulative)))
    rows.sort(key=lambda x: -x[1])
    return rows[:top]


# --- audit logs -----------------------------------------------------------------------------------


def _refusal_fields(env_name: str, actor) -> dict:
    """A refusal as the product records it. By a proven operator it is signed; by an unknown one
    (`actor.unidentified()`) it is recorded unsigned, which `audit verify` accepts for a refusal."""
    reason = ("ladder jump: SLOTGEN_AI_ROLLOUT_PERCENT 0 -> 5 skips the rung 1 (bench-generated refusal)")
    return {"env": env_name, **actor.audit_fields(), "action": "refused", "control": "SLOTGEN_AI_ROLLOUT_PERCENT",
            "old": None, "new": "5", "decisionRecord": "DR-1", "reason": reason, "step": None,
            "verification": None, "approvalId": None,
            "details": {"command": "set", "items": ["SLOTGEN_AI_ROLLOUT_PERCENT=5"], "refusal": reason}}


def grow_log_with_library(root: Path, target: int) -> None:
    """Real appends: lock, snapshot, append (+fsync), controls written and read back."""
    from slotgen_ops.policy.authority import resolve_actor
    from slotgen_ops.workspace import Workspace

    ws = Workspace.locate(root)
    env = ws.environment("staging")
    actor = resolve_actor(ws.roster, "oncall", root / "demo-keys" / "oncall")
    fields = _refusal_fields(env.name, actor)

    def body(writer) -> None:  # signed: computed, signed with the lock released, then recorded
        while writer.snapshot.head["seq"] < target:
            writer.record({**fields, "state": writer.snapshot.state})

    env.transact(actor, body)


def grow_log_fast(root: Path, target: int) -> None:
    """Correctly chained refusal entries appended in bulk, then the controls head rewritten.

    The refusals are by an unknown operator (unsigned, as the product records them). Every entry is the
    same refusal but for ts, seq, prevHash and hash, so its
    canonical bytes are a template with those four filled in; the first entry
    is checked against a full canonical serialisation, and `audit verify`
    checks them all afterwards.
    """
    from slotgen_ops.files.atomic import atomic_write
    from slotgen_ops.policy.authority import resolve_actor
    from slotgen_ops.audit.canonical import _dumps, canonical_bytes
    from slotgen_ops.changes.environment import render_controls
    from slotgen_ops.workspace import Workspace

    ws = Workspace.locate(root)
    env = ws.environment("staging")
    fields = _refusal_fields(env.name, resolve_actor(ws.roster, "mallory").unidentified())
    with env.log.locked():
        snap = env.snapshot()
        state, seq, prev = snap.state, snap.head["seq"], snap.head["hash"]
        marks = {"ts": "@@bench-ts@@", "seq": 987654321987654321, "prevHash": "@@bench-prev@@"}
        body_t = _dumps({**fields, **marks, "state": state})
        line_t = _dumps({**fields, **marks, "state": state, "hash": "@@bench-hash@@"}) + b"\n"
        seq_mark = str(marks["seq"]).encode()

        def fill(template: bytes, ts: bytes, seq: int, prev: bytes, digest: bytes = b"") -> bytes:
            out = template.replace(b"@@bench-ts@@", ts, 1).replace(seq_mark, b"%d" % seq, 1)
            out = out.replace(b"@@bench-prev@@", prev, 1)
            return out.replace(b"@@bench-hash@@", digest, 1) if digest else out

        # From the start of the next minute, 10 µs apart: after the existing entries, strictly increasing.
        start = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
        stamp = start.strftime("%Y-%m-%dT%H:%M:").encode()
        assert (target - seq) * 10 < 60_000_000, "more entries than fit in one minute at 10 µs apart"

        def ts_of(i: int) -> bytes:
            micro = i * 10
            return stamp + b"%02d.%06dZ" % (micro // 1_000_000, micro % 1_000_000)

        first = {**fields, "ts": ts_of(1).decode(), "seq": seq + 1, "prevHash": prev, "state": state}
        assert fill(body_t, ts_of(1), seq + 1, prev.encode()) == canonical_bytes(first), "template drifted"
        with open(env.log.path, "ab") as fh:
            buf = []
            prev_b = prev.encode()
            for i, seq in enumerate(range(seq + 1, target + 1), 1):
                ts = ts_of(i)
                digest = hashlib.sha256(fill(body_t, ts, seq, prev_b)).hexdigest().encode()
                buf.append(fill(line_t, ts, seq, prev_b, digest))
                prev_b = digest
                if len(buf) >= 5000:
                    fh.write(b"".join(buf))
                    buf.clear()
            fh.write(b"".join(buf))
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write(env.controls_path, render_controls(env.name, state["controls"], target, prev_b.decode()))


def grow_log_signed(root: Path, target: int) -> None:
    """`target` refusals by oncall appended after the log's head, each signed by oncall's rehearsal key.

    An entry's hash does not cover its signature, so the chain of hashes is computed first and then
    every hash is signed by one `ssh-keygen -Y sign` per 2,000 entries; `audit verify` checks them all.
    """
    from slotgen_ops.audit import sshkeygen
    from slotgen_ops.files.atomic import atomic_write
    from slotgen_ops.audit.append import complete
    from slotgen_ops.policy.authority import resolve_actor
    from slotgen_ops.audit.canonical import _dumps
    from slotgen_ops.changes.environment import render_controls
    from slotgen_ops.policy.signing import NAMESPACE, signature
    from slotgen_ops.runbook.state import apply
    from slotgen_ops.workspace import Workspace

    ws = Workspace.locate(root)
    env = ws.environment("staging")
    key = root / "demo-keys" / "oncall"
    actor = resolve_actor(ws.roster, "oncall", key)
    fields = _refusal_fields(env.name, actor)
    with env.log.locked():
        snap = env.snapshot()
        prev, state = snap.head, snap.state
        start = datetime.now(timezone.utc)
        made = []
        for i in range(target):
            ts = (start + timedelta(microseconds=10 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            entry = complete({**fields, "ts": ts, "state": apply(state, {**fields, "ts": ts})}, prev)
            made.append(entry)
            prev = entry
        for at in range(0, len(made), 2000):
            batch = made[at:at + 2000]
            armored = sshkeygen.sign_many([e["hash"].encode() for e in batch], key, NAMESPACE)
            for entry, text in zip(batch, armored):
                entry["signature"] = signature(actor.fingerprint, text)
        with open(env.log.path, "ab") as fh:
            fh.write(b"".join(_dumps(e) + b"\n" for e in made))
            fh.flush()
            os.fsync(fh.fileno())
        head = made[-1]
        atomic_write(env.controls_path, render_controls(env.name, head["state"]["controls"], head["seq"], head["hash"]))


# --- the run --------------------------------------------------------------------------------------


def main() -> dict:
    n = 3 if c.quick() else 5
    c.header("bench_startup: whole-process wall time of CLI commands (subprocess)")
    print(c.machine())
    c.OUT_DIR.mkdir(exist_ok=True)
    summary = []
    with tempfile.TemporaryDirectory(prefix="startup-", dir=c.OUT_DIR) as tmp, c.fake_server("ok") as base_url:
        tmpdir = Path(tmp)
        ws = c.init_workspace(tmpdir, "ws")
        job = tmpdir / "job.json"
        job.write_text(json.dumps(c.make_job(0)), encoding="utf-8")
        env = c.clean_env(OPENAI_BASE_URL=base_url)
        env_live = dict(env, **c.LIVE_CONTROLS)
        sg = c.slotgen_cmd()
        cases = [
            ("python -c 'pass' (interpreter)", [c.PYTHON, "-c", "pass"], env, tmpdir, None),
            ("python -c 'import typer, pydantic, yaml'", [c.PYTHON, "-c", "import typer, pydantic, yaml"], env,
             tmpdir, None),
            ("slotgen --help", [*sg, "--help"], env, tmpdir, ["--help"]),
            ("slotgen decide JOB --json", [*sg, "decide", str(job), "--json"], env_live, tmpdir,
             ["decide", str(job), "--json"]),
            ("slotgen status --env staging", [*sg, "status", "--env", "staging"], env, ws,
             ["status", "--env", "staging"]),
            ("slotgen status --env staging --json", [*sg, "status", "--env", "staging", "--json"], env, ws,
             ["status", "--env", "staging", "--json"]),
            ("slotgen status (every environment)", [*sg, "status"], env, ws, ["status"]),
            ("slotgen rollback --env staging ... --json",
             [*sg, "rollback", "--env", "staging", "--reason", "bench", "--operator", "oncall", "--key",
              "demo-keys/oncall", "--json"], env, ws,
             ["rollback", "--env", "staging", "--reason", "bench", "--operator", "oncall", "--key", "demo-keys/oncall",
              "--json"]),
        ]
        print(f"\n  {n} rounds after 1 warm-up round (each round runs every command once, in turn); "
              "wall time of the whole process, and its CPU time (user + system: steadier on a busy machine)")
        print(f"  {'command':<44} {'median':>9} {'best':>9} {'x baseline':>10} {'cpu':>7} {'x base':>7}   imports "
              "openai / jsonschema / httpx / pydantic / rich.table  (modules)")
        results = c.run_rounds({label: (argv, e, cwd) for label, argv, e, cwd, _ in cases}, n)
        baseline = results["python -c 'import typer, pydantic, yaml'"][0]
        for label, argv, e, cwd, args in cases:
            t, last = results[label]
            ratio = f"{t.median / baseline.median:.2f}x" if label != cases[0][0] else "-"
            cpu_ratio = f"{t.cpu_median / baseline.cpu_median:.2f}x" if label != cases[0][0] else "-"
            mods = ""
            if args is not None:
                m = modules_imported(args, e, cwd)
                flags = " / ".join("yes" if m["modules"][k] else "no" for k in ("openai", "jsonschema", "httpx",
                                                                                 "pydantic", "rich.table"))
                mods = f"{flags}  ({m['count']})"
                summary.append((f"startup: {label}", f"{t.median:.0f} ms",
                                f"{t.median / baseline.median:.2f}x baseline (CPU {t.cpu_median / baseline.cpu_median:.2f}x); "
                                f"imports openai/jsonschema/httpx/pydantic/rich.table: {flags.replace(' / ', '/')}"))
            else:
                summary.append((f"startup: {label}", f"{t.median:.0f} ms",
                                "the baseline" if t is baseline else "interpreter alone"))
            print(f"  {label:<44} {t.median:>7.0f}ms {t.best:>7.0f}ms {ratio:>10} {t.cpu_median:>5.0f}ms {cpu_ratio:>7}"
                  f"   {mods}")
        rb = results[cases[-1][0]][1].json()
        print(f"  (rollback: ok={rb.get('ok')}, verification passed={((rb.get('verification') or {}).get('passed'))}, "
              f"kill-switch engaged in {(rb.get('rollback') or {}).get('engagedMs')} ms; each run added 2 entries)")

        print("\n  slowest top-level imports (python -X importtime, cumulative):")
        for label, args, e, cwd in [("--help", ["--help"], env, tmpdir),
                                    ("decide", ["decide", str(job), "--json"], env_live, tmpdir),
                                    ("status", ["status", "--env", "staging"], env, ws),
                                    ("rollback", ["rollback", "--env", "staging", "--reason", "bench",
                                                  "--operator", "oncall", "--json"], env, ws)]:
            top = slowest_imports(args, e, cwd)
            print(f"    {label:<9} " + ", ".join(f"{name} {us / 1000:.0f} ms" for name, us in top))

        # --- status at 10 vs 100,000 entries ---------------------------------------------------
        big = 20_000 if c.quick() else 100_000
        print(f"\n  status with 10 vs {big:,} audit entries (fresh workspaces)")
        ws10 = c.init_workspace(tmpdir, "ws10")
        grow_log_with_library(ws10, 10)
        wsbig = tmpdir / "wsbig"
        shutil.copytree(ws10, wsbig)
        t0 = datetime.now()
        grow_log_fast(wsbig, big)
        built = (datetime.now() - t0).total_seconds()
        size_mb = (wsbig / "environments" / "staging.audit.jsonl").stat().st_size / 1e6
        print(f"    built: 10 entries by library appends; {big:,} entries ({size_mb:.0f} MB) in {built:.1f} s")
        status_argv = [*sg, "status", "--env", "staging"]
        verify_argv = [*sg, "audit", "verify", "--env", "staging", "--json"]
        rounds = c.run_rounds({"10": (status_argv, env, ws10), f"{big:,}": (status_argv, env, wsbig)}, n)
        st = {label: t for label, (t, _) in rounds.items()}
        for label, t in st.items():
            print(f"    slotgen status --env staging, {label:>7} entries: median {t.median:6.0f} ms, best {t.best:6.0f} ms")
        ratio = st[f"{big:,}"].median / st["10"].median
        print(f"    -> {ratio:.2f}x at {big:,} entries vs 10")
        dry_argv = [*sg, "set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", "DR-1",
                    "--operator", "owner", "--key", "demo-keys/owner", "--dry-run", "--yes"]
        dry = {label: t for label, (t, _) in c.run_rounds(
            {"10": (dry_argv, env, ws10), f"{big:,}": (dry_argv, env, wsbig)}, n).items()}
        for label, t in dry.items():
            print(f"    slotgen set --dry-run,          {label:>7} entries: median {t.median:6.0f} ms, best {t.best:6.0f} ms")
        dry_ratio = dry[f"{big:,}"].median / dry["10"].median
        print(f"    -> {dry_ratio:.2f}x at {big:,} entries vs 10 (the whole log checked: the cache is warm)")
        for label, root in (("10", ws10), (f"{big:,}", wsbig)):
            r = c.run(verify_argv, env=env, cwd=root)
            doc = r.json()
            rate = doc["entries"] / r.wall_s
            print(f"    slotgen audit verify --env staging --json, {label:>7} entries: {r.wall_s:6.2f} s wall, "
                  f"{r.cpu_s:6.2f} s CPU, valid={doc['valid']} entries={doc['entries']:,} -> {rate:,.0f} entries/s, "
                  f"peak RSS {r.maxrss_kib / 1024:.0f} MiB")
        signed_n = 2_000 if c.quick() else 10_000
        wssigned = tmpdir / "wssigned"
        shutil.copytree(ws10, wssigned)
        t0 = datetime.now()
        grow_log_signed(wssigned, signed_n)
        built = (datetime.now() - t0).total_seconds()
        print(f"\n  audit verify on a signed log: {signed_n:,} entries, each signed by ssh-keygen -Y sign (Ed25519), "
              f"built in {built:.1f} s")
        walls = []
        for _ in range(n):
            sr = c.run(verify_argv, env=env, cwd=wssigned)
            walls.append(sr.wall_s)
        sdoc = sr.json()
        best = min(walls)
        med = sorted(walls)[len(walls) // 2]
        signed_rate = sdoc["entries"] / med
        print(f"    slotgen audit verify --env staging --json: median {med:.2f} s, best {best:.2f} s wall, "
              f"valid={sdoc['valid']} entries={sdoc['entries']:,} -> {signed_rate:,.0f} signed entries/s "
              f"(median; {sdoc['entries'] / best:,.0f} best), whole process included")
        summary += [
            (f"audit verify, {signed_n:,} signed entries", f"{signed_rate:,.0f} entries/s",
             f"{med:.2f} s median, valid={sdoc['valid']}"),
            ("status, 10 entries", f"{st['10'].median:.0f} ms", "median"),
            (f"status, {big:,} entries", f"{st[f'{big:,}'].median:.0f} ms", f"{ratio:.2f}x the 10-entry time"),
            (f"set --dry-run, {big:,} entries", f"{dry[f'{big:,}'].median:.0f} ms",
             f"{dry_ratio:.2f}x the 10-entry time"),
            (f"audit verify, {big:,} entries", f"{rate:,.0f} entries/s",
             f"{r.wall_s:.2f} s, valid={doc['valid']}, peak RSS {r.maxrss_kib / 1024:.0f} MiB"),
        ]
    c.emit_summary("startup", summary)
    return {}


if __name__ == "__main__":
    main()
    sys.exit(0)
