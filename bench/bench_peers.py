#!/usr/bin/env python3
"""The same rule, evaluated by slotgen, GrowthBook and Unleash, side by side, offline.

    .venv/bin/python -m pip install -q growthbook UnleashClient   # the `bench` extra
    .venv/bin/python bench/bench_peers.py

The rule: "5% rollout, and the job's subject and board match".

- slotgen: `contract.decide` with kill-switch off, feature on, rollout 5 and an
  allowlist whose one rule names the subject and board (the other three rule
  fields match too), on jobs with metadata.allowAI true;
- GrowthBook (Python SDK): a feature whose one force rule has the condition
  {subject, board}, coverage 0.05, hashAttribute jobId; built from a local
  features dict (no api_host, no client_key: it never fetches);
- Unleash (Python client): a toggle with one flexibleRollout strategy, rollout
  5, stickiness jobId, constraints subject IN [...] and board IN [...],
  bootstrapped from an in-memory cache; registration and metrics disabled and
  initialize_client() never called, so no scheduler and no fetch.

A guard replaces socket connect for the whole run: any network attempt is
refused and counted (the count is printed; it must be 0).

Each evaluator gets its input prepared outside the timed loop (the job dict,
GrowthBook's attributes, Unleash's context), so only evaluation is timed. The
three hash differently, so only the inclusion *rate* is comparable.
"""

from __future__ import annotations

import json
import socket
import sys
import time

import _common as c

FEATURE = "slotgen-ai"
SUBJECT, BOARD = "mathematics", "aqa"
AIM_GROWTHBOOK = 8.0  # issue: slotgen >= 8x faster than GrowthBook
AIM_UNLEASH = 25.0    # and >= 25x faster than Unleash

# --- the network guard -------------------------------------------------------------------------

NETWORK_ATTEMPTS: list[object] = []


def _refuse_connect(self, address, *args, **kwargs):  # noqa: ANN001
    NETWORK_ATTEMPTS.append(address)
    raise OSError("bench_peers: network access is disabled for this benchmark")


def _refuse_create_connection(address, *args, **kwargs):  # noqa: ANN001
    NETWORK_ATTEMPTS.append(address)
    raise OSError("bench_peers: network access is disabled for this benchmark")


socket.socket.connect = _refuse_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _refuse_connect  # type: ignore[method-assign]
socket.create_connection = _refuse_create_connection  # type: ignore[assignment]


# --- the three evaluators ------------------------------------------------------------------------


def slotgen_evaluator():
    from slotgen_ops.contract import Controls, decide, parse_allowlist

    rule = {"id": "subject-board", "kind": c.COHORT["kind"], "subject": SUBJECT, "level": c.COHORT["level"],
            "board": BOARD, "specVersion": c.COHORT["specVersion"]}
    allowlist = parse_allowlist({"schemaVersion": 1, "version": "bench", "enabled": True, "rules": [rule]})
    controls = Controls.from_mapping({"SLOTGEN_AI_KILL": "false", "FEATURE_SLOTGEN_AI": "true",
                                      "SLOTGEN_AI_ROLLOUT_PERCENT": "5", "SLOTGEN_AI_ALLOWLIST_PATH": "bench"})

    def prepare(job):
        return job

    def evaluate(job) -> bool:
        return decide(job, controls, allowlist).decided_by == 5  # every gate passed: the OpenAI path

    def evaluate_path(job) -> bool:
        return decide(job, controls, allowlist).path == "openai"

    return prepare, evaluate, evaluate_path


def growthbook_evaluator():
    from growthbook import GrowthBook

    features = {FEATURE: {"defaultValue": False, "rules": [
        {"condition": {"subject": SUBJECT, "board": BOARD}, "force": True, "coverage": 0.05, "hashAttribute": "jobId"},
    ]}}
    gb = GrowthBook(features=features)  # no api_host / client_key: local features only

    def prepare(job):
        return {"jobId": job["jobId"], "subject": job["subject"], "board": job["board"]}

    def evaluate(attributes) -> bool:
        gb.set_attributes(attributes)
        return gb.is_on(FEATURE)

    def evaluate_new_instance(attributes) -> bool:  # GrowthBook's documented per-request pattern
        return GrowthBook(features=features, attributes=attributes).is_on(FEATURE)

    import growthbook

    return prepare, evaluate, evaluate_new_instance, getattr(growthbook, "__version__", _dist_version("growthbook"))


def unleash_evaluator():
    from UnleashClient import UnleashClient
    from UnleashClient.cache import BaseCache
    from UnleashClient.constants import FEATURES_URL
    from UnleashClient.utils import InstanceAllowType

    toggles = {"version": 1, "features": [{
        "name": FEATURE, "enabled": True, "type": "release", "project": "default", "impressionData": False,
        "strategies": [{
            "name": "flexibleRollout",
            "parameters": {"rollout": "5", "stickiness": "jobId", "groupId": FEATURE},
            "constraints": [
                {"contextName": "subject", "operator": "IN", "values": [SUBJECT], "caseInsensitive": False,
                 "inverted": False},
                {"contextName": "board", "operator": "IN", "values": [BOARD], "caseInsensitive": False,
                 "inverted": False},
            ],
        }],
    }]}

    class MemoryBootstrap(BaseCache):
        """In memory, bootstrapped: no file cache, no fetch."""

        def __init__(self, state: dict) -> None:
            self._data = {FEATURES_URL: json.dumps(state)}
            self.bootstrapped = True

        def set(self, key, value):
            self._data[key] = value

        def mset(self, data):
            self._data.update(data)

        def get(self, key, default=None):
            return self._data.get(key, default)

        def exists(self, key):
            return key in self._data

        def destroy(self):
            self._data.clear()

    client = UnleashClient(url="http://127.0.0.1:9/api", app_name="slotgen-bench", disable_metrics=True,
                           disable_registration=True, cache=MemoryBootstrap(toggles),
                           multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW)
    # Not initialize_client(): that would start a poller. The bootstrap already loaded the engine.

    def prepare(job):
        return {"properties": {"jobId": job["jobId"], "subject": job["subject"], "board": job["board"]}}

    def evaluate(context) -> bool:
        return client.is_enabled(FEATURE, context)

    return prepare, evaluate, client, _dist_version("UnleashClient")


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


# --- the run ---------------------------------------------------------------------------------------


def jobs_for(n: int) -> tuple[list[dict], list[bool]]:
    """n jobs, allowAI true; 4 in 5 match subject and board, 1 in 5 do not (other subject or board)."""
    jobs, matching = [], []
    for i in range(n):
        job = {"jobId": f"job-{i:07d}", **c.COHORT, "subject": SUBJECT, "board": BOARD,
               "metadata": {"allowAI": True}, "payload": {"slotCount": 1}}
        m = i % 5 != 4
        if not m:
            if i % 2:
                job["subject"] = "physics"
            else:
                job["board"] = "ocr"
        jobs.append(job)
        matching.append(m)
    return jobs, matching


def main() -> dict:
    try:
        gb_prepare, gb_eval, gb_new, gb_version = growthbook_evaluator()
        un_prepare, un_eval, un_client, un_version = unleash_evaluator()
    except ImportError as exc:
        c.header("bench_peers: skipped")
        print(f"the bench extra is not installed ({exc}); run: .venv/bin/pip install -q growthbook UnleashClient")
        c.emit_summary("peers", [("peers", "skipped", "pip install growthbook UnleashClient")])
        return {}
    sg_prepare, sg_eval, sg_eval_path = slotgen_evaluator()

    rate_n = 10_000 if c.quick() else 40_000
    # Per-evaluator loop sizes: about the same wall time for each (Unleash is the slow one).
    sizes = {"slotgen": 10_000, "GrowthBook": 4_000, "Unleash": 1_500} if not c.quick() else \
        {"slotgen": 4_000, "GrowthBook": 1_500, "Unleash": 500}
    repeat = 5 if c.quick() else 7
    c.header("bench_peers: '5% rollout + subject and board match' in slotgen, GrowthBook, Unleash (offline)")
    print(c.machine())
    print(f"GrowthBook {gb_version}, UnleashClient {un_version} (yggdrasil engine); network guard on")

    jobs, matching = jobs_for(rate_n)
    evaluators = {
        "slotgen": (sg_prepare, sg_eval),
        "GrowthBook": (gb_prepare, gb_eval),
        "Unleash": (un_prepare, un_eval),
    }
    inputs = {name: [prep(job) for job in jobs] for name, (prep, _) in evaluators.items()}

    print(f"\ninclusion over {rate_n:,} jobs ({sum(matching):,} match subject+board, "
          f"{rate_n - sum(matching):,} do not):")
    rates = {}
    for name, (_, fn) in evaluators.items():
        verdicts = [fn(x) for x in inputs[name]]
        inc_match = sum(v for v, m in zip(verdicts, matching) if m)
        inc_other = sum(v for v, m in zip(verdicts, matching) if not m)
        rates[name] = inc_match / sum(matching)
        print(f"  {name:<11} {inc_match:>6,} of the matching = {100 * rates[name]:.2f}%   "
              f"non-matching included: {inc_other}")
    agree = all(abs(r - 0.05) < 0.005 for r in rates.values())
    print(f"  -> {'all three' if agree else 'NOT all'} within 5% ± 0.5 points among matching jobs")

    print(f"\ntime per evaluation (the same mix; jobs: {', '.join(f'{k} {v:,}' for k, v in sizes.items())}; "
          f"{repeat} repeats; input prepared beforehand):")
    # Timed in rounds (slotgen, GrowthBook, Unleash, ..., then again) so that load from
    # other processes falls on every evaluator alike.
    cases = {}
    for name, (_, fn) in evaluators.items():
        items = inputs[name][:sizes[name]]

        def loop(items=items, fn=fn):
            for x in items:
                fn(x)

        cases[name] = (loop, len(items))
    gb_items = inputs["GrowthBook"][:sizes["Unleash"]]
    cases["GrowthBook, new instance per evaluation"] = (lambda: [gb_new(x) for x in gb_items], len(gb_items))
    sg_items = inputs["slotgen"][:sizes["slotgen"]]
    cases["slotgen, decide(...).path"] = (lambda: [sg_eval_path(x) for x in sg_items], len(sg_items))
    timings = c.interleaved(cases, repeat=repeat)
    notes = {"GrowthBook, new instance per evaluation": "   (documented per-request pattern; not in the factors)"}
    for name, t in timings.items():
        print(f"  {name:<40} {c.fmt_ns(t.best):>10} best   {c.fmt_ns(t.median):>10} median{notes.get(name, '')}")

    sg = timings["slotgen"]
    f_gb = timings["GrowthBook"].best / sg.best
    f_un = timings["Unleash"].best / sg.best
    f_gb_med = timings["GrowthBook"].median / sg.median
    f_un_med = timings["Unleash"].median / sg.median
    print("\nspeed-up of slotgen (best / median):")
    print(f"  vs GrowthBook: {f_gb:.1f}x / {f_gb_med:.1f}x   (issue aims >= {AIM_GROWTHBOOK:g}x: "
          f"{'met' if f_gb >= AIM_GROWTHBOOK else 'missed'})")
    print(f"  vs Unleash:    {f_un:.1f}x / {f_un_med:.1f}x   (issue aims >= {AIM_UNLEASH:g}x: "
          f"{'met' if f_un >= AIM_UNLEASH else 'missed'})")
    print(f"\nnetwork attempts during the run: {len(NETWORK_ATTEMPTS)}"
          + (f" ({NETWORK_ATTEMPTS[:3]})" if NETWORK_ATTEMPTS else " (fully offline)"))
    import logging

    logging.disable(logging.WARNING)  # destroy() logs that the never-started scheduler is not running
    try:
        un_client.destroy()
    finally:
        logging.disable(logging.NOTSET)

    c.emit_summary("peers", [
        ("slotgen per evaluation", f"{sg.best:,.0f} ns", f"median {sg.median:,.0f}; inclusion {100 * rates['slotgen']:.2f}%"),
        ("GrowthBook per evaluation", f"{timings['GrowthBook'].best:,.0f} ns",
         f"median {timings['GrowthBook'].median:,.0f}; inclusion {100 * rates['GrowthBook']:.2f}%"),
        ("Unleash per evaluation", f"{timings['Unleash'].best:,.0f} ns",
         f"median {timings['Unleash'].median:,.0f}; inclusion {100 * rates['Unleash']:.2f}%"),
        ("speed-up vs GrowthBook", f"{f_gb:.1f}x", f"aim >= 8x ({'met' if f_gb >= AIM_GROWTHBOOK else 'missed'})"),
        ("speed-up vs Unleash", f"{f_un:.1f}x", f"aim >= 25x ({'met' if f_un >= AIM_UNLEASH else 'missed'})"),
        ("network attempts", str(len(NETWORK_ATTEMPTS)), "guarded socket; 0 = offline"),
    ])
    return {"vs_growthbook": f_gb, "vs_unleash": f_un}


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
    sys.exit(0)
