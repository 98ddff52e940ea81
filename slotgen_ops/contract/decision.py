"""Decision, and the Engine that compiles a gate order into the functions that decide (SPEC section 1).

A gate order is a table of `Gate`s (the Phase 4D one is `order.GATE_TABLE`).
`Engine` builds everything that decides from such a table: decide,
decided_by, decider, and the trace behind Decision.gates(); the functions it
compiles are documented as this module's. `Decision` is what decide returns:
path and code at once, the bucket and every gate's verdict when asked.
Apart from the order itself (`order`) so that the order reads as the SPEC
writes it, and from the grammar of a test (`expression`).

The tests are compiled into straight-line code, so a decision costs what
hand-written `if`s would: the hot path decides and stops, and the bucket and
every gate's verdict are computed when asked for (CLI output, telemetry).

A job that breaks the schema fails every gate whose test reads `job`, so it
never reaches the OpenAI path; a gate that reads only `job_bucket` fails when
the job has no usable jobId, unless its test decides without the bucket.
"""

from __future__ import annotations

import itertools
import linecache
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .allowlist import Allowlist, AllowlistUnavailable
from .bucket import bucket
from .controls import Controls
from .expression import BUCKET, JOB, GateTest
from .job import job_problem

PATH_STUB = "stub"
PATH_OPENAI = "openai"

AllowlistState = Allowlist | AllowlistUnavailable

# How the compiled paths read `job_bucket` of a checked job: hashed where the test needs it, and
# in decide() kept for the Decision, so that asking for its bucket afterwards costs nothing.
_HASH_BUCKET = "_bucket(job['jobId'])"
_KEEP_BUCKET = "(job_bucket := _bucket(job['jobId']))"


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate of the decision order.

    `test` is a Python expression, true when the job passes the gate; it may
    read `controls`, `allowlist`, `job` and `job_bucket` (see
    `expression`). `detail(decision, passed, problem)` words the verdict for the
    trace; `problem` is job_problem(decision.job).
    """

    name: str
    code: str
    test: str
    detail: Callable[["Decision", bool, str | None], str]


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

    # The gate order this decision was made by, and its number of gates; set by Engine.
    _engine: "Engine"
    _all_passed: int

    def __init__(self, job: Any, controls: Controls, allowlist: AllowlistState, decided_by: int,
                 job_bucket: int | None = -1) -> None:
        self.job = job
        self.controls = controls
        self.allowlist = allowlist
        self.decided_by = decided_by  # index into GATES, or len(GATES) when every gate passed
        self._bucket = job_bucket  # -1: not computed yet

    @property
    def path(self) -> str:
        return PATH_OPENAI if self.decided_by == self._all_passed else PATH_STUB

    @property
    def code(self) -> str | None:
        return None if self.decided_by == self._all_passed else self._engine.codes[self.decided_by]

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
        decided = self.decided_by
        return [
            GateVerdict(gate.name, "pass" if ok else "fail", detail, index == decided)
            for index, (gate, (ok, detail)) in enumerate(zip(self._engine.gates, self._evaluate_all()))
        ]

    def _evaluate_all(self) -> list[tuple[bool, str]]:
        """(passed, detail) of every gate, in decision order."""
        return self._engine.trace(self)

    def to_json(self) -> dict[str, Any]:
        """The `decide --json` document (SPEC section 5)."""
        engine = self._engine
        return {
            "jobId": self.job_id,
            "path": self.path,
            "code": self.code,
            "bucket": self.bucket,
            "decidedBy": engine.names[self.decided_by] if self.decided_by < engine.all_passed else None,
            "allowlistVersion": self.allowlist.version,
            "gates": [g.to_json() for g in self.gates()],
        }


# ----------------------------------------------------------------- the compiler
class _Missing(Exception):
    """A test needed an input the job does not have (see Engine)."""


def _need_bucket(decision: Decision) -> int:
    job_bucket = decision.bucket
    if job_bucket is None:
        raise _Missing
    return job_bucket


def _missing() -> Any:
    raise _Missing


_compiled = itertools.count()


def _define(source: str, namespace: dict[str, Any], name: str) -> Callable[..., Any]:
    """Compile one function built from a gate table; its source stays readable in tracebacks."""
    filename = f"<slotgen gate order: {name} #{next(_compiled)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - source built from the gate table
    fn = namespace[name]
    fn.__module__ = __name__
    return fn


class Engine:
    """A gate order, compiled: decide, decided_by, decider and the trace, all from one table.

    Every form evaluates the same tests in the same order; they differ only in
    how a test reads the job and its bucket:

    - decided_by and decider: on a job already checked; `job_bucket` is hashed
      where a test needs it.
    - decide: any job. The job is checked before the first test that reads it;
      one that breaks the schema is decided by the trace's verdicts (below).
      The bucket, once hashed, is kept in the Decision.
    - the trace (Decision.gates()): every test on its own. An invalid job fails
      every test that reads `job`; a test that needs the bucket of a job
      without one fails.
    """

    def __init__(self, table: Sequence[Gate], decision_type: type[Decision] | None = None) -> None:
        self.gates: tuple[Gate, ...] = tuple(table)
        if not self.gates:
            raise ValueError("a gate order needs at least one gate")
        self.names: tuple[str, ...] = tuple(gate.name for gate in self.gates)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"gate names must be unique: {', '.join(self.names)}")
        self.codes: tuple[str, ...] = tuple(gate.code for gate in self.gates)
        self.all_passed = len(self.gates)
        self._tests = tuple(GateTest.parse(gate.name, gate.test) for gate in self.gates)
        if not any(test.reads_job for test in self._tests):
            raise ValueError("a gate order must check the job: no gate's test reads `job`")
        if decision_type is None:
            decision_type = type("Decision", (Decision,), {"__slots__": ()})
        decision_type._engine = self
        decision_type._all_passed = self.all_passed
        self.decision_type = decision_type
        self.decided_by: Callable[[dict[str, Any], Controls, AllowlistState], int] = self._compile_decided_by()
        self.decide: Callable[[Any, Controls, AllowlistState], Decision] = self._compile_decide()
        self._trace: Callable[..., list[tuple[bool, str]]] = self._compile_trace()
        self._alone = tuple(self._compile_alone(test) for test in self._tests)
        self._factories: dict[tuple[bool | None, ...], Callable[..., Callable[[dict[str, Any]], int]]] = {}

    # -- the trace
    def trace(self, decision: Decision) -> list[tuple[bool, str]]:
        """(passed, detail) of every gate on the decision's inputs, each test evaluated on its own."""
        return self._trace(decision, decision.controls, decision.allowlist, decision.job, job_problem(decision.job))

    def _compile_trace(self) -> Callable[..., list[tuple[bool, str]]]:
        """Every test on its own: an invalid job (`problem`) fails those that read `job`, and a test that
        needs the bucket of a job without one fails; then each gate words its verdict."""
        lines = ["def trace(decision, controls, allowlist, job, problem):\n", "    valid = problem is None\n"]
        for index, test in enumerate(self._tests):
            check = f"bool({test.source({BUCKET: '_need_bucket(decision)'})})"
            if test.reads_job:
                check = f"valid and {check}"
            if test.reads_bucket:
                lines.append(f"    try:\n        v{index} = {check}\n"
                             f"    except _Missing:\n        v{index} = False\n")
            else:
                lines.append(f"    v{index} = {check}\n")
        items = ", ".join(f"(v{i}, _d{i}(decision, v{i}, problem))" for i in range(self.all_passed))
        lines.append(f"    return [{items}]\n")
        namespace = {"_need_bucket": _need_bucket, "_Missing": _Missing,
                     **{f"_d{i}": gate.detail for i, gate in enumerate(self.gates)}}
        return _define("".join(lines), namespace, "trace")

    # -- the compiled paths
    def _compile_decided_by(self) -> Callable[..., int]:
        lines = ["def decided_by(job, controls, allowlist):\n"]
        for index, test in enumerate(self._tests):
            lines.append(f"    if not ({test.source({BUCKET: _HASH_BUCKET})}):\n        return {index}\n")
        lines.append(f"    return {self.all_passed}\n")
        fn = _define("".join(lines), {"_bucket": bucket}, "decided_by")
        fn.__doc__ = ("The deciding gate's index (len(GATES) for the OpenAI path) of a job ALREADY checked "
                      "by job_problem: no Decision object, no second check.")
        return fn

    def _compile_decide(self) -> Callable[..., Decision]:
        lines = ["def decide(job, controls, allowlist):\n"]
        kept = ""
        for index, test in enumerate(self._tests):
            if (test.reads_job or test.reads_bucket) and not kept:
                lines.append("    if _problem(job) is not None:\n"
                             "        return _invalid(job, controls, allowlist)\n"
                             "    job_bucket = -1\n")
                kept = ", job_bucket"
            lines.append(f"    if not ({test.source({BUCKET: _KEEP_BUCKET})}):\n"
                         f"        return _Decision(job, controls, allowlist, {index}{kept})\n")
        lines.append(f"    return _Decision(job, controls, allowlist, {self.all_passed}{kept})\n")
        namespace = {"_Decision": self.decision_type, "_problem": job_problem, "_bucket": bucket,
                     "_invalid": self._decide_invalid}
        fn = _define("".join(lines), namespace, "decide")
        fn.__doc__ = "Decide STUB or OpenAI for one job. Never raises, whatever `job` is."
        return fn

    def _decide_invalid(self, job: Any, controls: Controls, allowlist: AllowlistState) -> Decision:
        decision = self.decision_type(job, controls, allowlist, self.all_passed)
        verdicts = [passed for passed, _ in self.trace(decision)]
        decision.decided_by = verdicts.index(False)  # a gate reads `job`, and an invalid job fails it
        return decision

    # -- specialised to the controls
    def _compile_alone(self, test: GateTest) -> Callable[[Controls, AllowlistState], bool]:
        """The test with the controls and allowlist only: _Missing as soon as it reads the job."""
        source = (f"def alone(controls, allowlist):\n"
                  f"    return bool({test.source({JOB: '_missing()', BUCKET: '_missing()'})})\n")
        return _define(source, {"_missing": _missing}, "alone")

    def settled(self, controls: Controls, allowlist: AllowlistState) -> tuple[bool | None, ...]:
        """Each gate's verdict when the controls and the allowlist settle it alone; None when it depends
        on the job."""
        settled: list[bool | None] = []
        for alone in self._alone:
            try:
                settled.append(alone(controls, allowlist))
            except _Missing:
                settled.append(None)
        return tuple(settled)

    def decider(self, controls: Controls, allowlist: AllowlistState) -> Callable[[dict[str, Any]], int]:
        """decided_by for these controls and this allowlist: `decider(c, a)(job) == decided_by(job, c, a)`.

        Gates that the controls and the allowlist settle alone (a kill-switch,
        a disabled allowlist, rollout 0) are settled once, here; the function
        returned tests only what depends on the job. For jobs already checked
        by job_problem, like decided_by. Call it once per (controls, allowlist)
        and the result once per job.
        """
        settled = self.settled(controls, allowlist)
        factory = self._factories.get(settled)
        if factory is None:
            factory = self._factories[settled] = self._compile_decider(settled)
        return factory(controls, allowlist)

    def _compile_decider(self, settled: tuple[bool | None, ...]) -> Callable[..., Callable[[dict[str, Any]], int]]:
        lines = ["def make(controls, allowlist):\n", "    def decided_by(job):\n"]
        result = self.all_passed
        for index, (test, verdict) in enumerate(zip(self._tests, settled)):
            if verdict is False:
                result = index
                break
            if verdict is None:
                lines.append(f"        if not ({test.source({BUCKET: _HASH_BUCKET})}):\n            return {index}\n")
        lines.append(f"        return {result}\n    return decided_by\n")
        return _define("".join(lines), {"_bucket": bucket}, "make")
