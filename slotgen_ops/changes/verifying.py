"""Verifying a change against the sample jobs (SPEC section 2), where a check that cannot run fails.

A `Verifier` runs the sample jobs in-process under the would-be controls; a
change runs it with no lock held (`_verify_unlocked`), so a slow or hung
endpoint never holds anyone up, and a verifier that cannot run counts as
failed (`run_verifier`). The audit log keeps integers and booleans of its
report (`verification_summary`). After the commit, the sample jobs' decisions
under the controls as written must be the ones verified
(`_post_commit_problem`). Before it, a preview counts the sample jobs on the
OpenAI path now and after (`sample_exposure`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import BadInput
from ..files import hooks
from .environment import Environment

# A verifier runs the sample jobs under the given controls and returns
# {"passed": bool, "checks": [{name, passed, detail}], "shadowExposure": {...}, ...}.
Verifier = Callable[[Environment, dict[str, Any]], dict[str, Any]]


def sample_exposure(env: Environment, controls: dict[str, Any], control: str, value: str) -> dict[str, int] | None:
    """How many sample jobs take the OpenAI path now and with ``control=value`` (decide only, no calls)."""
    from ..contract import PATH_OPENAI, Controls, decide
    from ..runtime.allowlist_file import load_allowlist
    from ..policy.samples import load_sample_jobs

    try:
        jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)
    except (BadInput, OSError):
        return None

    def on_openai(values: dict[str, Any]) -> int:
        parsed = Controls.from_mapping(values)
        allowlist = load_allowlist(parsed.allowlist_path, env.workspace.root)
        return sum(1 for job in jobs if decide(job, parsed, allowlist).path == PATH_OPENAI)

    return {"samples": len(jobs), "before": on_openai(dict(controls)),
            "after": on_openai({**controls, control: value})}


def run_verifier(verifier: Verifier, env: Environment, controls: dict[str, Any]) -> dict[str, Any]:
    """The verification, where a verifier that cannot run counts as failed (fail closed)."""
    try:
        return verifier(env, controls)
    except Exception as exc:  # noqa: BLE001 - any failure to verify must count as failed, never escape
        detail = f"verification could not run: {exc}"
        return {"passed": False, "cause": detail, "causeKind": "runtime",
                "checks": [{"name": "verification", "passed": False, "detail": detail}],
                "samples": 0, "openaiCalls": 0, "p95Ms": 0}


def _verify_unlocked(verifier: Verifier, env: Environment, controls: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                         dict[str, Any]]:
    """The verification of a change, run with no lock held: it may take as long as the endpoint does."""
    hooks.point("before-verify")
    report = run_verifier(verifier, env, controls)
    hooks.point("after-verify")
    return report, verification_summary(report)


def verification_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a verification: integers and booleans only (no floats)."""
    return {
        "passed": bool(report.get("passed")),
        "checks": {c["name"]: bool(c["passed"]) for c in report.get("checks", [])},
        "failed": [c["name"] for c in report.get("checks", []) if not c["passed"]],
        "samples": int(report.get("samples", 0)),
        "openaiCalls": int(report.get("openaiCalls", 0)),
        "p95Ms": int(report.get("p95Ms", 0)),
    }


def _post_commit_problem(env: Environment, report: dict[str, Any]) -> str | None:
    """What only the applied state can show: the sample decisions under the file as written are the ones verified."""
    digest = report.get("decisionDigest")
    if digest is None:
        return None
    from ..policy.samples import decision_digest_for

    try:
        now = decision_digest_for(env, env.read_controls().values)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run fails closed
        return f"the applied controls could not be checked ({exc.__class__.__name__})"
    if now != digest:
        return ("the sample jobs' decisions under the applied controls differ from those verified "
                "(was the allowlist or a sample file changed during the verification?)")
    return None
