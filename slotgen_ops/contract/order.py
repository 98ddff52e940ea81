"""decide(): the Phase 4D decision order (seed 004, section 2; SPEC section 1).

Earlier rules always dominate later ones:
  1 kill-switch engaged        -> STUB, KILL_SWITCH
  2 feature flag not on        -> STUB, FEATURE_DISABLED
  3 metadata.allowAI not true  -> STUB, NOT_ALLOWLISTED
  4 allowlist disabled/no rule -> STUB, NOT_ALLOWLISTED
  5 rollout != 0, bucket >= %  -> STUB, ROLLOUT_EXCLUDED (invalid % fails closed)
  6 otherwise                  -> the OpenAI path

The order is written once, in GATE_TABLE: each gate's name, its code, the
test a job must pass (a Python expression) and how the trace words the
verdict. This module owns that table, the words of each gate's verdict and
the functions compiled from it by `decision.Engine` (ENGINE):

  decide(job, controls, allowlist)      -> Decision; any job, never raises
  decided_by(job, controls, allowlist)  -> the deciding gate's index, for a checked job
  decider(controls, allowlist)          -> a per-job decided_by, specialised to the controls
  Decision.gates() / to_json()          -> every gate's verdict and detail, in order

How a test is written (what it may read) is `expression`'s; how the table is
compiled, and the Decision it makes, is `decision`'s.
"""

from __future__ import annotations

from .decision import Decision, Engine, Gate

KILL_SWITCH = "KILL_SWITCH"
FEATURE_DISABLED = "FEATURE_DISABLED"
NOT_ALLOWLISTED = "NOT_ALLOWLISTED"
ROLLOUT_EXCLUDED = "ROLLOUT_EXCLUDED"


# ----------------------------------------------------------------- the trace's words
def _shown(raw: str | None) -> str:
    return "unset" if raw is None else repr(raw)


def _kill_detail(d: Decision, passed: bool, problem: str | None) -> str:
    shown = _shown(d.controls.kill_raw)
    if passed:
        return f"SLOTGEN_AI_KILL={shown}: off"
    return f"SLOTGEN_AI_KILL={shown}: engaged, every job takes the STUB path"


def _feature_detail(d: Decision, passed: bool, problem: str | None) -> str:
    shown = _shown(d.controls.feature_raw)
    if passed:
        return f"FEATURE_SLOTGEN_AI={shown}: on"
    return f"FEATURE_SLOTGEN_AI={shown}: not 'true', the AI path is disabled"


def _opt_in_detail(d: Decision, passed: bool, problem: str | None) -> str:
    if problem is not None:
        return f"job is invalid ({problem}): the STUB path"
    if passed:
        return "metadata.allowAI is true"
    allow_ai = d.job.get("metadata", {}).get("allowAI")
    return f"metadata.allowAI is {'missing' if allow_ai is None else repr(allow_ai).lower()}, not true"


def _allowlist_detail(d: Decision, passed: bool, problem: str | None) -> str:
    allowlist = d.allowlist
    if problem is not None:
        return "job is invalid: not matched"
    if passed:
        return f"matches rule {allowlist.match(d.job)!r} of allowlist {allowlist.version}"
    if not allowlist.available:
        return f"allowlist unavailable ({allowlist.reason}): fails closed"
    if not allowlist.enabled:
        return f"allowlist {allowlist.version} is disabled"
    return f"no rule of allowlist {allowlist.version} matches (kind, subject, level, board, specVersion)"


def _rollout_detail(d: Decision, passed: bool, problem: str | None) -> str:
    percent = d.controls.rollout
    if percent is None:
        return f"SLOTGEN_AI_ROLLOUT_PERCENT={_shown(d.controls.rollout_raw)} is not an integer 0..100: fails closed"
    if percent == 0:
        return "rollout 0: gate disabled, every admitted job passes"
    job_bucket = d.bucket
    if job_bucket is None:
        return "no usable jobId, no bucket: fails closed"
    if passed:
        return f"bucket {job_bucket} < {percent}"
    return f"bucket {job_bucket} >= {percent}"


# ----------------------------------------------------------------- the order, once
GATE_TABLE: tuple[Gate, ...] = (
    Gate("kill-switch", KILL_SWITCH, "not controls.kill_engaged", _kill_detail),
    Gate("feature-flag", FEATURE_DISABLED, "controls.feature_on", _feature_detail),
    Gate("job-opt-in", NOT_ALLOWLISTED, "(job.get('metadata') or {}).get('allowAI') is True", _opt_in_detail),
    Gate("allowlist", NOT_ALLOWLISTED, "allowlist.enabled and allowlist.match(job) is not None",
         _allowlist_detail),
    Gate("rollout", ROLLOUT_EXCLUDED,
         "controls.rollout == 0 or controls.rollout is not None and job_bucket < controls.rollout",
         _rollout_detail),
)


ENGINE = Engine(GATE_TABLE, Decision)

GATES: tuple[str, ...] = ENGINE.names
_GATE_CODES: tuple[str, ...] = ENGINE.codes
_ALL_PASSED = ENGINE.all_passed
GATING_CODES: tuple[str, ...] = tuple(dict.fromkeys(_GATE_CODES))

decide = ENGINE.decide
decided_by = ENGINE.decided_by
decider = ENGINE.decider
