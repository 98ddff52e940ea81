#!/usr/bin/env python3
"""One full `slotgen verify --env staging --json` on the shipped sample jobs, blocked and live.

    .venv/bin/python bench/bench_verify.py

Starts the package's fake OpenAI server as a process
(`python -m slotgen_ops.runtime.fakeserver --mode ok --port 0 --port-file F`),
points OPENAI_BASE_URL at it (OPENAI_API_KEY=local), makes a workspace with
`slotgen init`, and times `slotgen verify --env staging --json` (unrecorded:
no operator, no decision record, so it only reports):

1. kill-switch on (the fresh workspace: every job blocked, no AI call);
2. live at rollout 5, after walking staging through the runbook with the CLI,
   exactly as an operator would (`slotgen next --env staging --json` says what
   comes next; `set ... --yes --operator oncall --decision-record DR-1`;
   rollout increases are first approved with `--operator approver`; step 5 is a
   recorded `verify`). Every `set` runs the verification itself, so the walk's
   timings are printed as well.

For each: whole-process wall time (median and best of N), the verification's
own `durationMs`, its p95 latency, and the OpenAI calls it made (the fake
server's counter, read before and after).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

import _common as c

OPERATOR, APPROVER, DR = "oncall", "approver", "DR-1"


def server_calls(base_url: str) -> int:
    origin = base_url.rsplit("/v1", 1)[0]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with opener.open(f"{origin}/_calls", timeout=5) as response:
        return int(json.loads(response.read())["calls"])


def walk_to_live(sg: list[str], env: dict[str, str], ws: Path) -> list[tuple[str, float, str]]:
    """Follow `next` until the runbook is done; returns (command, wall s, outcome) per command."""
    done = []
    for _ in range(20):
        nxt = c.run([*sg, "next", "--env", "staging", "--json"], env=env, cwd=ws).check().json()
        step = nxt.get("step")
        if step is None:
            return done
        if nxt.get("blockedBy"):
            raise SystemExit(f"bench_verify: the walk is blocked at {step}: {nxt['blockedBy']}")
        base = ["--env", "staging", "--decision-record", DR]
        if nxt.get("control") is None:  # step 5: a recorded verification
            argv = [*sg, "verify", *base, "--operator", OPERATOR, "--key", f"demo-keys/{OPERATOR}", "--json"]
            r = c.run(argv, env=env, cwd=ws).check()
            done.append((f"verify (step {nxt['number']})", r.wall_s, f"passed={r.json().get('passed')}"))
            continue
        item = f"{nxt['control']}={nxt['value']}"
        extra = []
        if nxt.get("needsApproval"):
            r = c.run([*sg, "approve", item, *base, "--operator", APPROVER, "--key", f"demo-keys/{APPROVER}", "--yes", "--json"], env=env, cwd=ws).check()
            approval = r.json()["approvalId"]
            done.append((f"approve {item}", r.wall_s, f"approval {approval}"))
            extra = ["--approval", approval]
        r = c.run([*sg, "set", item, *base, *extra, "--operator", OPERATOR, "--key", f"demo-keys/{OPERATOR}", "--yes", "--json"], env=env, cwd=ws)
        r.check()
        doc = r.json()
        done.append((f"set {item} (step {nxt['number']}, {step})", r.wall_s,
                     f"verification passed={(doc.get('verification') or {}).get('passed')}"))
    raise SystemExit("bench_verify: the runbook did not finish in 20 steps")


def time_verify(sg: list[str], env: dict[str, str], ws: Path, base_url: str, n: int) -> dict:
    argv = [*sg, "verify", "--env", "staging", "--json"]
    c.run(argv, env=env, cwd=ws)  # warm-up
    walls, cpus, durations, calls, docs = [], [], [], [], []
    for _ in range(n):
        before = server_calls(base_url)
        r = c.run(argv, env=env, cwd=ws)
        if r.returncode not in (0, 1):
            r.check()
        calls.append(server_calls(base_url) - before)
        doc = r.json()
        docs.append(doc)
        walls.append(r.wall_s * 1000)
        cpus.append(r.cpu_s * 1000)
        durations.append(doc.get("durationMs", 0))
    last = docs[-1]
    return {"wall": c.Timing(min(walls), statistics.median(walls), n), "cpu_median": statistics.median(cpus),
            "duration_median": statistics.median(durations), "duration_best": min(durations),
            "calls": calls[-1], "passed": last.get("passed"), "p95": last.get("p95Ms"),
            "samples": last.get("samples"), "codes": last.get("codes"), "reported_calls": last.get("openaiCalls"),
            "checks": {ch["name"]: ch["passed"] for ch in last.get("checks", [])}}


def import_ms(module: str) -> float:
    """Cumulative import time of `module` in a fresh interpreter (ms, best of 3)."""
    best = float("inf")
    for _ in range(3):
        r = c.run([c.PYTHON, "-X", "importtime", "-c", f"import {module}"]).check()
        for line in r.stderr.decode(errors="replace").splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == module:
                best = min(best, int(parts[1]) / 1000)
    return best


def show(label: str, res: dict) -> None:
    w = res["wall"]
    print(f"  {label}")
    print(f"    wall (whole process): median {w.median:,.0f} ms, best {w.best:,.0f} ms ({w.runs} runs); "
          f"CPU median {res['cpu_median']:,.0f} ms")
    print(f"    verification durationMs: median {res['duration_median']:,.0f} ms, best {res['duration_best']:,.0f} ms")
    print(f"    passed={res['passed']}  samples={res['samples']}  p95={res['p95']} ms  OpenAI calls: server counted "
          f"{res['calls']}, report says {res['reported_calls']}  codes={res['codes']}")
    failed = [name for name, ok in res["checks"].items() if not ok]
    if failed:
        print(f"    failed checks: {', '.join(failed)}")


def main() -> dict:
    n = 2 if c.quick() else 3
    c.header("bench_verify: slotgen verify --env staging --json (fake OpenAI server, subprocess)")
    print(c.machine())
    sg = c.slotgen_cmd()
    probe = c.run([*sg, "verify", "--help"])
    if probe.returncode != 0:
        print("  `slotgen verify` is not available yet; nothing measured")
        c.emit_summary("verify", [("verify", "not available", "slotgen verify --help failed")])
        return {}
    c.OUT_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="verify-", dir=c.OUT_DIR) as tmp, c.fake_server("ok") as base_url:
        ws = c.init_workspace(Path(tmp), "ws")
        env = c.clean_env(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="local")
        print(f"  fake OpenAI server at {base_url}")

        blocked = time_verify(sg, env, ws, base_url, n)
        show("kill-switch on (fresh workspace: blocked)", blocked)

        print("\n  walking staging to live at rollout 5 with the CLI:")
        steps = walk_to_live(sg, env, ws)
        for label, wall, outcome in steps:
            print(f"    {wall * 1000:7,.0f} ms  {label}  [{outcome}]")
        total_walk = sum(w for _, w, _ in steps)
        print(f"    {total_walk * 1000:7,.0f} ms  total, {len(steps)} commands")
        status = c.run([*sg, "status", "--env", "staging", "--json"], env=env, cwd=ws).check().json()
        print(f"    now: {status['controls']}, next={status['steps']['next']}")

        live = time_verify(sg, env, ws, base_url, n)
        print()
        show("live at rollout 5 (kill-switch off)", live)
        openai_ms = import_ms("openai")
        jsonschema_ms = import_ms("jsonschema")
        print(f"\n  for scale: `import openai` alone {openai_ms:,.0f} ms, `import jsonschema` {jsonschema_ms:,.0f} ms "
              "(python -X importtime, cumulative); the live run imports both, the blocked run jsonschema only")

    c.emit_summary("verify", [
        ("verify, blocked (kill-switch on)", f"{blocked['wall'].median:,.0f} ms",
         f"wall median; durationMs {blocked['duration_median']:,.0f}; passed={blocked['passed']}; "
         f"{blocked['calls']} OpenAI calls"),
        ("verify, live at rollout 5", f"{live['wall'].median:,.0f} ms",
         f"wall median; durationMs {live['duration_median']:,.0f}; passed={live['passed']}; "
         f"{live['calls']} OpenAI calls; p95 {live['p95']} ms"),
        ("walk init -> live 5% (CLI)", f"{total_walk:.1f} s", f"{len(steps)} commands, each set verifies"),
        ("import openai / jsonschema", f"{openai_ms:,.0f} / {jsonschema_ms:,.0f} ms", "one-time, inside durationMs"),
    ])
    return {}


if __name__ == "__main__":
    main()
    sys.exit(0)
