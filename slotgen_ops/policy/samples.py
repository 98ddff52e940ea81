"""The runbook's sample jobs, and the shadow exposure over them.

Light on purpose (contract only): `status` uses it without paying for the
runtime, and `verify` uses the same code, so both report the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..contract import KILL_VAR, PATH_OPENAI, Controls, Decision, decide, job_problem
from ..errors import BadInput


#: The sample jobs are a few hundred short lines.
SAMPLES_BOUND = 16 << 20


def load_sample_jobs(path: Path) -> list[dict[str, Any]]:
    """The sample jobs, one JSON object a line (blank lines skipped); BadInput names file:line."""
    from ..files.atomic import UnsafeFile, read_bounded

    try:
        text = read_bounded(path, SAMPLES_BOUND).decode("utf-8")  # never waits on a FIFO (SPEC section 14)
    except FileNotFoundError:
        raise BadInput(f"{path}: sample jobs file not found") from None
    except UnsafeFile as exc:
        raise BadInput(f"{exc}: not read as sample jobs") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read sample jobs ({exc.__class__.__name__})") from None
    jobs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as exc:
            raise BadInput(f"{path}:{number}: not JSON ({getattr(exc, 'msg', exc)})") from None
        problem = job_problem(job)
        if problem is not None:
            raise BadInput(f"{path}:{number}: not a valid job: {problem}")
        jobs.append(job)
    return jobs


def job_label(job: Any, index: int) -> str:
    job_id = job.get("jobId") if isinstance(job, dict) else None
    return job_id if isinstance(job_id, str) and job_id else f"sample #{index + 1}"


def shadow_exposure(jobs: Sequence[Any], controls: Mapping[str, str | None], allowlist: Any,
                    decisions: Sequence[Decision] | None = None) -> dict[str, Any]:
    """Which jobs would take the OpenAI path with the kill-switch off and the rest unchanged,
    and how many more than now (`decisions`: the current ones, if already made)."""
    shadow_controls = Controls.from_mapping({**controls, KILL_VAR: "false"})
    if decisions is None:
        current = Controls.from_mapping(dict(controls))
        decisions = [decide(job, current, allowlist) for job in jobs]
    ids = [job_label(job, i) for i, job in enumerate(jobs)
           if decide(job, shadow_controls, allowlist).path == PATH_OPENAI]
    now = sum(1 for d in decisions if d.path == PATH_OPENAI)
    return {"jobs": ids, "count": len(ids), "now": now, "more": len(ids) - now}


def decision_digest(jobs: Sequence[Any], decisions: Sequence[Decision]) -> str:
    """A digest of (jobId, path, code) over the samples: what a verification ran under."""
    import hashlib

    rows = [[job_label(job, i), d.path, d.code] for i, (job, d) in enumerate(zip(jobs, decisions))]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def decision_digest_for(env: Any, controls: Mapping[str, str | None]) -> str:
    """`decision_digest` of the runbook's samples under `controls`, files read now."""
    from ..runtime.allowlist_file import load_allowlist

    jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    parsed = Controls.from_mapping(dict(controls))
    allowlist = load_allowlist(parsed.allowlist_path, base=env.workspace.root)
    return decision_digest(jobs, [decide(job, parsed, allowlist) for job in jobs])
