"""Observed verification: the window of what the hosts sent, judged by seven checks (SPEC section 12).

Each check is `pass`, `fail`, `inconclusive` or `not-applicable`, with counts
and a one-line detail. The outcome is `fail` if any check fails, else
`inconclusive` if any is, else `pass`: too little data never passes and
never fails, it says what it waits for.

The exposure check needs no statistics. A job's path is decided by the
engine from its jobId and the controls, deterministically, so one event that
took the OpenAI path where the recorded controls (or the ones the host
carried) would not allow it is proof, and so is an event whose bucket is not
the contract's bucket of its jobId. The error rate and the p95 latency are
judged with bounds that stay valid however often the growing window is
judged again (`bounds.py`); the share with an exact binomial test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..clock import utc_display
from ..contract import bucket
from ..runbook.runbook import ObservedSettings
from .bounds import binomial_p_value, quantile_verdict, rate_bounds
from .events import Event, Reading

__all__ = ["ALPHA", "CHECKS", "Expected", "judge_window"]

ALPHA = 0.01  # the bounds are at 99%
PASS, FAIL, INCONCLUSIVE, NOT_APPLICABLE = "pass", "fail", "inconclusive", "not-applicable"
CHECKS = ("observed-schema", "observed-controls", "observed-exposure", "observed-share", "observed-errors",
          "observed-latency", "observed-volume")
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Expected:
    """What the log records for the environment, and what a host carrying it reports."""

    env: str
    kill_engaged: bool
    feature_on: bool
    rollout: int | None         # None: not a valid percent (the gate fails closed)
    allowlist_version: str | None
    latency_bound_ms: int       # section 4's bound for this rollout level
    changed_at: datetime        # the commit time of the last change of a control


def _check(name: str, outcome: str, detail: str, **counts: Any) -> dict[str, Any]:
    return {"name": name, "outcome": outcome, "detail": detail, **counts}


def _admits(kill: bool, feature: bool, rollout: int | None, job_bucket: Any) -> bool:
    """Whether controls let a job past the kill-switch, feature and rollout gates (section 1)."""
    if kill or not feature or rollout is None:
        return False
    return rollout == 0 or (isinstance(job_bucket, int) and job_bucket < rollout)


def _carried(doc: dict[str, Any]) -> tuple[Any, ...]:
    return (doc["killSwitch"], doc["featureFlag"], doc["rolloutPercent"], doc["allowlistVersion"], doc["env"])


def _recorded(expected: Expected) -> tuple[Any, ...]:
    """What a host carrying the recorded controls reports, in `_carried`'s order."""
    return (expected.kill_engaged, expected.feature_on, expected.rollout, expected.allowlist_version, expected.env)


def _where(event: Event) -> str:
    return f"{event.host} at {utc_display(event.ts)} ({event.where})"


def _schema(reading: Reading) -> dict[str, Any]:
    if reading.problem_count:
        more = f" (and {reading.problem_count - 1} more)" if reading.problem_count > 1 else ""
        return _check("observed-schema", FAIL, reading.problems[0] + more, problems=reading.problem_count)
    return _check("observed-schema", PASS, f"{len(reading.events)} events, every line a valid event", problems=0)


def _controls(events: list[Event], expected: Expected, silent: list[str]) -> dict[str, Any]:
    want = _recorded(expected)
    stale: dict[str, Event] = {}
    for event in events:
        if _carried(event.doc) != want:
            stale[event.host] = event  # the host's last such event (events are in time order)
    if stale:
        named = "; ".join(f"{host}: kill-switch {e.doc['killSwitch']}, feature {e.doc['featureFlag']}, rollout "
                          f"{e.doc['rolloutPercent']}, allowlist {e.doc['allowlistVersion']}, env {e.doc['env']} "
                          f"({_where(e)})" for host, e in sorted(stale.items()))
        return _check("observed-controls", FAIL, f"{len(stale)} host(s) carry other controls than the log records: "
                      f"{named}", hosts=sorted(stale))
    if silent:
        return _check("observed-controls", INCONCLUSIVE, f"waiting for {', '.join(silent)}: seen in the hour "
                      "before the change, nothing since", hosts=silent)
    return _check("observed-controls", PASS, f"every host carries the recorded controls ({len(events)} events)",
                  hosts=[])


def _exposure(events: list[Event], expected: Expected) -> dict[str, Any]:
    for event in events:
        doc = event.doc
        job = doc["jobId"]
        if doc["bucket"] is not None and (not isinstance(job, str) or doc["bucket"] != bucket(job)):
            right = bucket(job) if isinstance(job, str) else None
            return _check("observed-exposure", FAIL, f"jobId {job!r} carries bucket {doc['bucket']}, its bucket is "
                          f"{right} ({_where(event)})", jobId=job, host=event.host, ts=utc_display(event.ts))
        if doc["path"] != "openai":
            continue
        carried = doc["decidedBy"] is None and _admits(doc["killSwitch"], doc["featureFlag"], doc["rolloutPercent"],
                                                         doc["bucket"])
        recorded = _admits(expected.kill_engaged, expected.feature_on, expected.rollout, doc["bucket"])
        if not (carried and recorded):
            under = "the recorded controls" if carried else "the controls it carries"
            return _check("observed-exposure", FAIL, f"jobId {job!r} (bucket {doc['bucket']}) took the OpenAI path, "
                          f"which {under} do not allow ({_where(event)})", jobId=job, host=event.host,
                          ts=utc_display(event.ts))
    openai = sum(1 for event in events if event.doc["path"] == "openai")
    return _check("observed-exposure", PASS, f"{openai} OpenAI-path events, each allowed by the recorded controls "
                  "and its own; every bucket is its jobId's", openai=openai)


def _off(expected: Expected) -> str | None:
    if expected.kill_engaged:
        return "the kill-switch is engaged"
    if not expected.feature_on:
        return "the feature is off"
    return None


def _share(events: list[Event], expected: Expected, params: ObservedSettings) -> dict[str, Any]:
    gate = [e for e in events if e.doc["decidedBy"] in ("rollout", None)]
    openai = sum(1 for e in gate if e.doc["path"] == "openai")
    if (off := _off(expected)) is not None:
        return _check("observed-share", NOT_APPLICABLE, off, gateEvents=len(gate), openai=openai)
    rollout = expected.rollout
    share = 0.0 if rollout is None else 1.0 if rollout in (0, 100) else rollout / 100
    if len(gate) < params.minGateEvents:
        return _check("observed-share", INCONCLUSIVE, f"{len(gate)} of {params.minGateEvents} events at the "
                      "rollout gate", gateEvents=len(gate), openai=openai, expected=share)
    p_value = binomial_p_value(openai, len(gate), share)
    seen = f"{openai} of {len(gate)} on OpenAI ({openai / len(gate):.1%}) against {share:.0%}"
    if p_value < params.srmAlpha:
        return _check("observed-share", FAIL, f"{seen}: p = {p_value:.2g} < {params.srmAlpha}",
                      gateEvents=len(gate), openai=openai, expected=share, pValue=p_value)
    return _check("observed-share", PASS, f"{seen}: p = {p_value:.2g}", gateEvents=len(gate), openai=openai,
                  expected=share, pValue=p_value)


def _not_yet(name: str, openai: list[Event], expected: Expected, params: ObservedSettings, **counts: Any) -> dict | None:
    """An OpenAI-path check that does not apply (the AI path is off) or waits for more events; None: judge it."""
    if (off := _off(expected)) is not None:
        return _check(name, NOT_APPLICABLE, off, openai=len(openai), **counts)
    if len(openai) < params.minOpenaiEvents:
        return _check(name, INCONCLUSIVE, f"{len(openai)} of {params.minOpenaiEvents} OpenAI-path events",
                      openai=len(openai), **counts)
    return None


def _errors(openai: list[Event], expected: Expected, params: ObservedSettings) -> dict[str, Any]:
    failed = sum(1 for e in openai if e.doc["outcome"] == "FAILED")
    if (early := _not_yet("observed-errors", openai, expected, params, failed=failed)) is not None:
        return early
    lower, upper = rate_bounds(failed, len(openai), ALPHA)
    seen = (f"{failed} of {len(openai)} failed; the rate is within [{lower:.2%}, {upper:.2%}] (99%), the limit "
            f"{params.maxErrorRate:.2%}")
    counts = {"openai": len(openai), "failed": failed, "lower": lower, "upper": upper}
    if lower > params.maxErrorRate:
        return _check("observed-errors", FAIL, seen, **counts)
    if upper <= params.maxErrorRate:
        return _check("observed-errors", PASS, seen, **counts)
    return _check("observed-errors", INCONCLUSIVE, seen + ": the interval straddles it", **counts)


def _latency(openai: list[Event], expected: Expected, params: ObservedSettings) -> dict[str, Any]:
    limit = expected.latency_bound_ms
    within = sum(1 for e in openai if e.doc["latencyMs"] <= limit)
    if (early := _not_yet("observed-latency", openai, expected, params, within=within)) is not None:
        return early
    lower, upper = rate_bounds(within, len(openai), ALPHA)
    verdict = quantile_verdict(within, len(openai), 0.95, ALPHA)
    words = {FAIL: "the p95 is above it", PASS: "the p95 is within it", INCONCLUSIVE: "the bounds straddle it"}
    return _check("observed-latency", verdict, f"{within} of {len(openai)} within {limit} ms; the share within is "
                  f"in [{lower:.1%}, {upper:.1%}] (99%): {words[verdict]}", openai=len(openai), within=within,
                  lower=lower, upper=upper, boundMs=limit)


def _volume(events: list[Event], reading: Reading, params: ObservedSettings) -> dict[str, Any]:
    if reading.unavailable is not None:
        return _check("observed-volume", INCONCLUSIVE, reading.unavailable, events=0)
    if len(events) < params.minEvents:
        return _check("observed-volume", INCONCLUSIVE, f"{len(events)} of {params.minEvents} events in the window",
                      events=len(events))
    return _check("observed-volume", PASS, f"{len(events)} events in the window", events=len(events))


def judge_window(reading: Reading, expected: Expected, params: ObservedSettings, now: datetime) -> dict[str, Any]:
    """The judgement of the window that starts `propagationSeconds` after the last change, up to `now`."""
    start = expected.changed_at + timedelta(seconds=params.propagationSeconds)
    events = [e for e in reading.events if start <= e.ts]
    per_host = Counter(e.host for e in events)
    silent = sorted(host for host, seen in reading.last_seen.items()
                    if host not in per_host and expected.changed_at - HOUR <= seen < start)
    want = _recorded(expected)
    last: dict[str, Event] = {e.host: e for e in events}
    hosts = [{"host": host, "events": per_host.get(host, 0), "lastSeen": utc_display(seen),
              "current": host in last and _carried(last[host].doc) == want}
             for host, seen in sorted(reading.last_seen.items()) if seen >= expected.changed_at - HOUR]
    openai = [e for e in events if e.doc["path"] == "openai"]
    checks = [_schema(reading), _controls(events, expected, silent), _exposure(events, expected),
              _share(events, expected, params), _errors(openai, expected, params),
              _latency(openai, expected, params), _volume(events, reading, params)]
    outcomes = {c["outcome"] for c in checks}
    outcome = FAIL if FAIL in outcomes else INCONCLUSIVE if INCONCLUSIVE in outcomes else PASS
    return {"outcome": outcome, "window": {"from": utc_display(start), "to": utc_display(now)},
            "events": len(events), "hosts": hosts, "checks": checks}
