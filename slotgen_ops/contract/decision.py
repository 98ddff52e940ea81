"""decide(): the Phase 4D decision order (seed 004, section 2; SPEC section 1).

Earlier rules always dominate later ones:
  1 kill-switch engaged        -> STUB, KILL_SWITCH
  2 feature flag not on        -> STUB, FEATURE_DISABLED
  3 metadata.allowAI not true  -> STUB, NOT_ALLOWLISTED
  4 allowlist disabled/no rule -> STUB, NOT_ALLOWLISTED
  5 rollout != 0, bucket >= %  -> STUB, ROLLOUT_EXCLUDED (invalid % fails closed)
  6 otherwise                  -> the OpenAI path

The hot path decides and stops; the bucket and every gate's verdict are
computed when asked for (CLI output, telemetry), so a decision costs little
more than the bucket hash itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .allowlist import Allowlist, AllowlistUnavailable
from .bucket import bucket
from .controls import Controls
from .job import job_problem

PATH_STUB = "stub"
PATH_OPENAI = "openai"

KILL_SWITCH = "KILL_SWITCH"
FEATURE_DISABLED = "FEATURE_DISABLED"
NOT_ALLOWLISTED = "NOT_ALLOWLISTED"
ROLLOUT_EXCLUDED = "ROLLOUT_EXCLUDED"
GATING_CODES: tuple[str, ...] = (KILL_SWITCH, FEATURE_DISABLED, NOT_ALLOWLISTED, ROLLOUT_EXCLUDED)

GATES: tuple[str, ...] = ("kill-switch", "feature-flag", "job-opt-in", "allowlist", "rollout")
_GATE_CODES = (KILL_SWITCH, FEATURE_DISABLED, NOT_ALLOWLISTED, NOT_ALLOWLISTED, ROLLOUT_EXCLUDED)
_ALL_PASSED = len(GATES)

AllowlistState = Allowlist | AllowlistUnavailable


@dataclass(frozen=True, slots=True)
class GateVerdict:
    gate: str
    verdict: str  # "pass" or "fail"
    detail: str
    decisive: bool

    def to_json(self) -> dict[str, Any]:
        return {"gate": self.gate, "verdict": self.verdict, "detail": self.detail, "decisive": self.decisive}


class Decision:
    """The outcome of decide(): path, code, and (on demand) bucket and gates."""

    __slots__ = ("job", "controls", "allowlist", "decided_by", "_bucket")

    def __init__(self, job: Any, controls: Controls, allowlist: AllowlistState, decided_by: int) -> None:
        self.job = job
        self.controls = controls
        self.allowlist = allowlist
        self.decided_by = decided_by  # index into GATES, or len(GATES) when every gate passed
        self._bucket: int | None = -1

    @property
    def path(self) -> str:
        return PATH_OPENAI if self.decided_by == _ALL_PASSED else PATH_STUB

    @property
    def code(self) -> str | None:
        return None if self.decided_by == _ALL_PASSED else _GATE_CODES[self.decided_by]

    @property
    def job_id(self) -> str | None:
        job_id = self.job.get("jobId") if type(self.job) is dict else None
        return job_id if type(job_id) is str and job_id else None

    @property
    def bucket(self) -> int | None:
        """The job's bucket, or None when the job has no usable jobId."""
        if self._bucket == -1:
            job_id = self.job_id
            try:
                self._bucket = bucket(job_id) if job_id is not None else None
            except UnicodeEncodeError:
                self._bucket = None
        return self._bucket

    def gates(self) -> list[GateVerdict]:
        """Every gate's verdict, in decision order; the first failing one decided."""
        return [
            GateVerdict(name, "pass" if ok else "fail", detail, index == self.decided_by)
            for index, (name, (ok, detail)) in enumerate(zip(GATES, self._evaluate_all()))
        ]

    def _evaluate_all(self) -> list[tuple[bool, str]]:
        c = self.controls
        kill_shown = "unset" if c.kill_raw is None else repr(c.kill_raw)
        kill = (
            (False, f"SLOTGEN_AI_KILL={kill_shown}: engaged, every job takes the STUB path")
            if c.kill_engaged
            else (True, f"SLOTGEN_AI_KILL={kill_shown}: off")
        )
        feature_shown = "unset" if c.feature_raw is None else repr(c.feature_raw)
        feature = (
            (True, f"FEATURE_SLOTGEN_AI={feature_shown}: on")
            if c.feature_on
            else (False, f"FEATURE_SLOTGEN_AI={feature_shown}: not 'true', the AI path is disabled")
        )
        problem = job_problem(self.job)
        if problem is not None:
            opt_in = (False, f"job is invalid ({problem}): the STUB path")
            allow = (False, "job is invalid: not matched")
        else:
            allow_ai = self.job.get("metadata", {}).get("allowAI")
            opt_in = (
                (True, "metadata.allowAI is true")
                if allow_ai is True
                else (False, f"metadata.allowAI is {'missing' if allow_ai is None else repr(allow_ai).lower()}, not true")
            )
            allow = _allowlist_verdict(self.allowlist, self.job)
        rollout = _rollout_verdict(c, self.bucket)
        return [kill, feature, opt_in, allow, rollout]

    def to_json(self) -> dict[str, Any]:
        """The `decide --json` document (SPEC section 5)."""
        return {
            "jobId": self.job_id,
            "path": self.path,
            "code": self.code,
            "bucket": self.bucket,
            "decidedBy": GATES[self.decided_by] if self.decided_by < _ALL_PASSED else None,
            "allowlistVersion": self.allowlist.version,
            "gates": [g.to_json() for g in self.gates()],
        }


def _allowlist_verdict(allowlist: AllowlistState, job: dict[str, Any]) -> tuple[bool, str]:
    if not allowlist.available:
        return False, f"allowlist unavailable ({allowlist.reason}): fails closed"
    if not allowlist.enabled:
        return False, f"allowlist {allowlist.version} is disabled"
    rule = allowlist.match(job)
    if rule is None:
        return False, f"no rule of allowlist {allowlist.version} matches (kind, subject, level, board, specVersion)"
    return True, f"matches rule {rule!r} of allowlist {allowlist.version}"


def _rollout_verdict(c: Controls, job_bucket: int | None) -> tuple[bool, str]:
    if c.rollout is None:
        shown = "unset" if c.rollout_raw is None else repr(c.rollout_raw)
        return False, f"SLOTGEN_AI_ROLLOUT_PERCENT={shown} is not an integer 0..100: fails closed"
    if c.rollout == 0:
        return True, "rollout 0: gate disabled, every admitted job passes"
    if job_bucket is None:
        return False, "no usable jobId, no bucket: fails closed"
    if job_bucket < c.rollout:
        return True, f"bucket {job_bucket} < {c.rollout}"
    return False, f"bucket {job_bucket} >= {c.rollout}"


def decided_by(job: dict[str, Any], controls: Controls, allowlist: AllowlistState) -> int:
    """The deciding gate's index (len(GATES) for the OpenAI path) of a job ALREADY checked
    by job_problem. The hot loop of `exposure`: no Decision object, no second check."""
    if controls.kill_engaged:
        return 0
    if not controls.feature_on:
        return 1
    metadata = job.get("metadata")
    if metadata is None or metadata.get("allowAI") is not True:
        return 2
    if not allowlist.enabled or allowlist.match(job) is None:
        return 3
    percent = controls.rollout
    if percent is None or (percent != 0 and bucket(job["jobId"]) >= percent):
        return 4
    return _ALL_PASSED


def decide(job: Any, controls: Controls, allowlist: AllowlistState) -> Decision:
    """Decide STUB or OpenAI for one job. Never raises, whatever `job` is."""
    if controls.kill_engaged:
        return Decision(job, controls, allowlist, 0)
    if not controls.feature_on:
        return Decision(job, controls, allowlist, 1)
    if job_problem(job) is not None:
        return Decision(job, controls, allowlist, 2)
    metadata = job.get("metadata")
    if metadata is None or metadata.get("allowAI") is not True:
        return Decision(job, controls, allowlist, 2)
    if not allowlist.enabled or allowlist.match(job) is None:
        return Decision(job, controls, allowlist, 3)
    percent = controls.rollout
    if percent is None:
        return Decision(job, controls, allowlist, 4)
    decision = Decision(job, controls, allowlist, _ALL_PASSED)
    if percent != 0:
        job_bucket = bucket(job["jobId"])
        decision._bucket = job_bucket
        if job_bucket >= percent:
            decision.decided_by = 4
    return decision
