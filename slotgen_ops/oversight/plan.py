"""`slotgen plan`: every remaining runbook step of an environment, rehearsed in memory.

Reads only. The state comes from the audit log, checked as `status` checks it
(the whole log, then the head against the controls); the steps come from the
same judge that `set` uses (`runbook.next_step`, `runbook.judge`), each applied
to a copy of the state with `state.apply`, as if its change had been made and
its verification had passed. The exposure each step would reach is decided
job by job with the real gating engine, over the runbook's sample jobs and,
optionally, over a population streamed once for every step at a time.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, BinaryIO

from ..contract import KILL_VAR, PATH_OPENAI, Controls, decide
from ..contract.decision import AllowlistState
from ..contract.order import decider
from ..policy.allowlists import default_allowlist
from ..runbook.population import new_counts, summary as _summary
from ..policy.authority import APPROVER_ROLE
from ..clock import now_utc, until, utc
from ..runbook.guidance import explain_position, step_commands
from ..policy.pins import describe, drift
from ..runbook.judge import judge, needs_approval, next_step, soak_ready_at, unmet_requirement
from ..runbook.runbook import STEP_ORDER, Runbook
from ..policy.samples import load_sample_jobs
from ..runbook.state import ROLLBACK, SET, VERIFY, apply

PLACEHOLDER_ALLOWLIST = "allowlists/<APPROVED-FILE>.json"


class _Evaluations:
    """The controls each point of the plan runs under, with their allowlists loaded once."""

    def __init__(self, root) -> None:
        from ..runtime.allowlist_file import load_allowlist

        self._load = load_allowlist
        self._root = root
        self._allowlists: dict[str | None, AllowlistState] = {}
        self.keys: list[tuple] = []
        self.parsed: dict[tuple, tuple[Controls, AllowlistState]] = {}

    def add(self, controls: dict[str, Any]) -> tuple:
        key = tuple(sorted((k, v) for k, v in controls.items()))
        if key not in self.parsed:
            parsed = Controls.from_mapping(dict(controls))
            path = parsed.allowlist_path
            if path not in self._allowlists:
                self._allowlists[path] = self._load(path, self._root)
            self.parsed[key] = (parsed, self._allowlists[path])
            self.keys.append(key)
        return key


def _sample_exposure(jobs: list[Any], controls: Controls, allowlist: AllowlistState) -> dict[str, Any]:
    counts = new_counts()
    openai = []
    for job in jobs:
        decision = decide(job, controls, allowlist)
        counts[decision.decided_by] += 1
        if decision.path == PATH_OPENAI:
            openai.append(decision.job_id)
    return {**_summary(counts), "jobs": openai}


def count_population(fh: BinaryIO, name: str, evaluations: _Evaluations) -> dict[tuple, dict[str, Any]]:
    """One streamed pass over a population (JSON lines): counts for every evaluation at once, nothing kept per
    job. A line that is not a valid job is BadInput naming `name:line:column`, as in `exposure`."""
    from ..runbook.population import Invalid, count

    targets = {key: (decider(*evaluations.parsed[key]), new_counts()) for key in evaluations.keys}
    count(fh, list(targets.values()), Invalid(name, skip=False, hint=""))
    return {key: _summary(counts) for key, (_, counts) in targets.items()}


def _settled_state(env, now: datetime) -> tuple[dict[str, Any], list[str]]:
    """The state the next change would start from, and what was found on the way; writes nothing.

    The whole log is checked (IntegrityFailure, exit 4, as for `status` and every change). Something left
    open (an interrupted change, a kill-switch engaged outside the log, a break-glass rollback not folded in)
    is what the next change closes first with a recorded rollback: the plan applies that rollback in memory.
    """
    from ..changes.settling import needs_settling

    snap, needed = needs_settling(env)
    state = snap.state
    notes: list[str] = []
    if needed:
        state = apply(state, {"action": ROLLBACK, "control": KILL_VAR, "old": state["controls"].get(KILL_VAR),
                              "new": "true", "ts": utc(now)})
        notes.append("an interrupted change or an unrecorded rollback is open: the next change first records a "
                     "rollback (kill-switch engaged); the plan starts from there")
    return state, notes


def plan_environment(env, population: tuple[BinaryIO, str] | None = None,
                     now: datetime | None = None) -> dict[str, Any]:
    """The plan document: where the environment stands and every remaining step, simulated in memory."""
    runbook: Runbook = env.workspace.runbook
    name = env.name
    now = now or now_utc()
    state, warnings = _settled_state(env, now)
    accepted = state.get("policy")
    changed = drift(accepted, env.workspace.root) if isinstance(accepted, dict) else []
    if changed:
        warnings.append(f"policy files differ from what was accepted: {describe(changed)}; every change is refused "
                        f"until accepted ('slotgen config status --env {name}')")
    jobs = load_sample_jobs(runbook.sample_jobs_path)
    evaluations = _Evaluations(env.workspace.root)
    who = "" if os.environ.get("SLOTGEN_OPERATOR") else " --operator <OPERATOR>"

    first = next_step(state, runbook)
    done = list(STEP_ORDER) if first.step is None else list(STEP_ORDER[: STEP_ORDER.index(first.step.id)])
    start_key = evaluations.add(state["controls"])
    origin = {"step": done[-1] if done else None, "number": len(done) or None, "done": done,
              "next": first.id, "position": explain_position(state, first.id),
              "controls": dict(state["controls"]), "key": start_key}

    steps: list[dict[str, Any]] = []
    sim, ts = state, now
    for _ in range(len(STEP_ORDER) + len(runbook.ladder) + 2):
        nxt = next_step(sim, runbook)
        if nxt.step is None:
            break
        step, value = nxt.step, nxt.value
        if step.id == "allowlist-enable":
            value = default_allowlist(env.workspace) or PLACEHOLDER_ALLOWLIST
            if value == PLACEHOLDER_ALLOWLIST:
                warnings.append("no approved allowlist to suggest (allowlists/ holds none or several): the exposure "
                                "from step 3 on is shown with no allowlist, and the commands carry a placeholder")
        needs_soak = "soak-elapsed" in step.requires
        soak = runbook.soak_minutes(name) if needs_soak else 0
        ready = soak_ready_at(sim, runbook, name) if needs_soak else None
        when = max(ts, ready) if ready is not None else ts
        judged_at = when if steps else now
        if not needs_soak:
            wait = "-"
        elif not steps:
            wait = until(now, ready) if ready is not None else "now"
        else:
            wait = "now" if soak == 0 else f"{soak} min after step {steps[-1]['number']}"
        approval_needed = needs_approval(step, sim)
        if step.control is None:
            blocked = unmet_requirement(step, sim, runbook, name, judged_at, skip=("approval",))
            after = apply(sim, {"action": VERIFY, "step": step.id, "ts": utc(when), "verification": {"passed": True}})
        else:
            verdict = judge(sim, runbook, name, step.control, value, judged_at)
            blocked = verdict.refusal
            after = apply(sim, {"action": SET, "control": step.control, "old": sim["controls"].get(step.control),
                                "new": value, "step": step.id, "ts": utc(when), "verification": {"passed": True}})
        steps.append({
            "number": step.number,
            "id": step.id,
            "title": step.title,
            "control": step.control,
            "old": sim["controls"].get(step.control) if step.control else None,
            "new": value if step.control else None,
            "needsApproval": approval_needed,
            "approverRole": APPROVER_ROLE if approval_needed else None,
            "soakMinutes": soak,
            "wait": wait,
            "blockedBy": blocked,
            "exposes": step.id == "kill-switch-off",
            "commands": step_commands(name, step, value, approval_needed, who),
            "key": evaluations.add(after["controls"]),
        })
        sim, ts = after, when
    else:  # pragma: no cover - next_step always reaches the top of a validated ladder
        raise RuntimeError("the runbook did not reach the top of the ladder")

    exposure = {key: _sample_exposure(jobs, *evaluations.parsed[key]) for key in evaluations.keys}
    counted = None
    if population is not None:
        fh, source = population
        counted = count_population(fh, source, evaluations)
    for point in (origin, *steps):
        key = point.pop("key")
        point["exposure"] = exposure[key]
        point["population"] = counted[key] if counted is not None else None
    top = runbook.ladder[-1]
    return {
        "env": name,
        "from": origin,
        "steps": steps,
        "top": top,
        "samples": str(runbook.sample_jobs_path),
        "populationFile": population[1] if population is not None else None,
        "assumes": "each approval is given and every verification passes; a failed one rolls back instead",
        "warnings": warnings,
        "writes": False,
    }


__all__ = ["PLACEHOLDER_ALLOWLIST", "count_population", "plan_environment", "step_commands"]
