"""One gate order (GATE_TABLE): decide, decided_by, decider and the trace all follow it.

The SPEC's order is checked elsewhere (test_contract_decision); here, that the
order is written once: every path agrees with the others on every job, and a
table reordered, cut short or changed changes every path alike.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract_helpers import ABSENT, make_allowlist, make_controls, make_job, rule_doc
from slotgen_ops.contract import (
    FEATURE_DISABLED,
    GATES,
    GATING_CODES,
    KILL_SWITCH,
    NOT_ALLOWLISTED,
    PATH_OPENAI,
    PATH_STUB,
    ROLLOUT_EXCLUDED,
    AllowlistUnavailable,
    Controls,
    Decision,
    bucket,
    decide,
    job_problem,
)
from slotgen_ops.contract import order as decision_module
from slotgen_ops.contract.decision import Engine, Gate
from slotgen_ops.contract.order import ENGINE, GATE_TABLE, decided_by, decider
from test_contract_properties import _env, allowlists, control_value, job_like, kill_off, rollout_value

SPEC_ORDER = [
    ("kill-switch", KILL_SWITCH),
    ("feature-flag", FEATURE_DISABLED),
    ("job-opt-in", NOT_ALLOWLISTED),
    ("allowlist", NOT_ALLOWLISTED),
    ("rollout", ROLLOUT_EXCLUDED),
]

# Each gate as SPEC section 1 words it, for a job that passed job_problem: True when the gate blocks.
SPEC_BLOCKS = {
    "kill-switch": lambda job, c, a: c.kill_engaged,
    "feature-flag": lambda job, c, a: not c.feature_on,
    "job-opt-in": lambda job, c, a: job.get("metadata", {}).get("allowAI") is not True,
    "allowlist": lambda job, c, a: not a.enabled or a.match(job) is None,
    "rollout": lambda job, c, a: c.rollout is None or (c.rollout != 0 and bucket(job["jobId"]) >= c.rollout),
}

BY_NAME = {gate.name: gate for gate in GATE_TABLE}


@pytest.fixture(params=["shipped", "rebuilt"])
def engine(request) -> Engine:
    """The module's engine (compiled at import), and the same table compiled again while the test runs."""
    return ENGINE if request.param == "shipped" else Engine(GATE_TABLE)

# job-000001 is in bucket 4: admitted at rollout 5, excluded at 4.
JOB_ID = "job-000001"


# ---------------------------------------------------------------- the table and the module
def test_the_table_is_the_spec_order_and_the_module_is_built_from_it():
    assert [(gate.name, gate.code) for gate in GATE_TABLE] == SPEC_ORDER
    assert GATES == tuple(name for name, _ in SPEC_ORDER)
    assert decision_module._GATE_CODES == tuple(code for _, code in SPEC_ORDER)
    assert decision_module._ALL_PASSED == len(SPEC_ORDER) == 5
    assert GATING_CODES == (KILL_SWITCH, FEATURE_DISABLED, NOT_ALLOWLISTED, ROLLOUT_EXCLUDED)
    assert ENGINE.gates == GATE_TABLE
    assert (ENGINE.names, ENGINE.codes, ENGINE.all_passed) == (GATES, decision_module._GATE_CODES, 5)
    assert decide is ENGINE.decide and decided_by is ENGINE.decided_by
    assert decider.__self__ is ENGINE and decider.__func__ is Engine.decider
    assert ENGINE.decision_type is Decision and Decision._engine is ENGINE
    assert type(decide(make_job(), make_controls(), make_allowlist())) is Decision


def test_the_compiled_functions_are_documented_where_they_belong(engine):
    for fn in (engine.decide, engine.decided_by, engine.decider):
        assert fn.__module__ == "slotgen_ops.contract.decision"
    assert engine.decide.__doc__ == "Decide STUB or OpenAI for one job. Never raises, whatever `job` is."
    assert engine.decided_by.__doc__ == ("The deciding gate's index (len(GATES) for the OpenAI path) of a job "
                                         "ALREADY checked by job_problem: no Decision object, no second check.")
    assert (engine.decide.__name__, engine.decided_by.__name__) == ("decide", "decided_by")


def test_another_table_makes_decisions_of_its_own_kind():
    engine = Engine(GATE_TABLE[::-1])
    made = engine.decide(make_job(), make_controls(), make_allowlist())
    assert isinstance(made, Decision) and type(made) is engine.decision_type is not Decision
    assert (type(made).__name__, type(made).__module__) == ("Decision", "slotgen_ops.contract.decision")
    assert not hasattr(made, "__dict__")  # slots, like Decision
    assert [g.gate for g in made.gates()] == list(GATES[::-1])
    assert Decision._engine is ENGINE  # the shipped order is untouched


# ---------------------------------------------------------------- every path agrees, on every job
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(job=job_like(), kill=kill_off | control_value, feature=st.sampled_from(["true", " TRUE "]) | control_value,
       rollout=rollout_value, allowlist=allowlists)
def test_decide_decided_by_decider_and_the_trace_agree(engine, job, kill, feature, rollout, allowlist):
    controls = Controls.from_mapping(_env(kill, feature, rollout))
    decision = engine.decide(job, controls, allowlist)
    verdicts = [g.verdict == "pass" for g in decision.gates()]
    first_failure = verdicts.index(False) if False in verdicts else len(GATES)
    assert decision.decided_by == first_failure
    assert decision.code == (None if first_failure == len(GATES) else GATE_TABLE[first_failure].code)
    assert decision.to_json()["decidedBy"] == (None if first_failure == len(GATES) else GATES[first_failure])
    if job_problem(job) is None:
        assert engine.decided_by(job, controls, allowlist) == first_failure
        assert engine.decider(controls, allowlist)(job) == first_failure
        # each gate, judged on its own, says what the SPEC says
        assert verdicts == [not SPEC_BLOCKS[name](job, controls, allowlist) for name in GATES]
    else:
        assert decision.path == PATH_STUB
        assert verdicts[GATES.index("job-opt-in")] is False and verdicts[GATES.index("allowlist")] is False


# ---------------------------------------------------------------- the table decides the order
# One way to fail each gate; every other input passes (job-000001, bucket 4, at rollout 5).
FAIL_ONE = {
    "kill-switch": {"kill": "true"},
    "feature-flag": {"feature": "false"},
    "job-opt-in": {"allow_ai": False},
    "allowlist": {"allowlist": make_allowlist(rules=[rule_doc(subject="physics")])},
    "rollout": {"rollout": "4"},
}


def _inputs(failing: set[str], job: Any = ABSENT) -> tuple[Any, Controls, Any]:
    chosen = {"kill": "false", "feature": "true", "rollout": "5", "allow_ai": True, "allowlist": make_allowlist()}
    for name in failing:
        chosen.update(FAIL_ONE[name])
    if job is ABSENT:
        job = make_job(JOB_ID, allow_ai=chosen["allow_ai"])
    return job, make_controls(chosen["kill"], chosen["feature"], chosen["rollout"]), chosen["allowlist"]


def _every_path(engine: Engine, job: Any, controls: Controls, allowlist: Any) -> dict[str, Any]:
    """What each path of `engine` says of one job."""
    decision = engine.decide(job, controls, allowlist)
    document = decision.to_json()
    said = {
        "decide": decision.decided_by,
        "trace": [g["verdict"] for g in document["gates"]],
        "names": [g["gate"] for g in document["gates"]],
        "decisive": [g["decisive"] for g in document["gates"]],
        "code": decision.code,
        "path": decision.path,
        "decidedBy": document["decidedBy"],
    }
    if job_problem(job) is None:
        said["decided_by"] = engine.decided_by(job, controls, allowlist)
        said["decider"] = engine.decider(controls, allowlist)(job)
    return said


def _expect(table: tuple[Gate, ...], failing: set[str]) -> dict[str, Any]:
    names = [gate.name for gate in table]
    first = next((i for i, name in enumerate(names) if name in failing), len(names))
    return {
        "decide": first,
        "trace": ["fail" if name in failing else "pass" for name in names],
        "names": names,
        "decisive": [i == first for i in range(len(names))],
        "code": table[first].code if first < len(names) else None,
        "path": PATH_STUB if first < len(names) else PATH_OPENAI,
        "decidedBy": names[first] if first < len(names) else None,
        "decided_by": first,
        "decider": first,
    }


FAILING_SETS = [set(chosen) for size in range(len(GATES) + 1) for chosen in itertools.combinations(GATES, size)]


def test_the_failing_sets_fail_exactly_those_gates_under_the_shipped_order():
    for failing in FAILING_SETS:
        assert _every_path(ENGINE, *_inputs(failing)) == _expect(GATE_TABLE, failing), failing


@pytest.mark.parametrize("order", list(itertools.permutations(GATES)), ids="/".join)
def test_every_order_of_the_table_is_followed_by_every_path(order):
    table = tuple(BY_NAME[name] for name in order)
    engine = Engine(table)
    assert engine.names == order
    for failing in FAILING_SETS:
        assert _every_path(engine, *_inputs(failing)) == _expect(table, failing), failing
    # a job that breaks the schema takes the STUB path whatever the order, decided by the first gate that fails
    job, controls, allowlist = _inputs(set(), make_job(JOB_ID, allow_ai="true"))
    decision = engine.decide(job, controls, allowlist)
    assert decision.path == PATH_STUB
    assert decision.decided_by == min(order.index("job-opt-in"), order.index("allowlist"))
    assert [g.verdict for g in decision.gates()] == ["fail" if name in ("job-opt-in", "allowlist") else "pass"
                                                     for name in order]


@pytest.mark.parametrize("dropped", GATES)
def test_a_gate_dropped_from_the_table_is_dropped_from_every_path(dropped):
    table = tuple(gate for gate in GATE_TABLE if gate.name != dropped)
    engine = Engine(table)
    for failing in FAILING_SETS:
        said = _every_path(engine, *_inputs(failing))
        assert said == _expect(table, failing - {dropped}), failing
    alone = _every_path(engine, *_inputs({dropped}))
    assert (alone["path"], alone["decide"], alone["decided_by"], alone["decider"]) == (PATH_OPENAI, 4, 4, 4)


@pytest.mark.parametrize("flipped", GATES)
def test_a_test_changed_in_the_table_changes_every_path(flipped):
    table = tuple(replace(gate, test=f"not ({gate.test})") if gate.name == flipped else gate for gate in GATE_TABLE)
    engine = Engine(table)
    for failing in FAILING_SETS:
        assert _every_path(engine, *_inputs(failing)) == _expect(table, failing ^ {flipped}), failing


def test_a_code_changed_in_the_table_is_the_code_every_path_reports():
    table = tuple(replace(gate, code="OTHER") if gate.name == "rollout" else gate for gate in GATE_TABLE)
    engine = Engine(table)
    said = _every_path(engine, *_inputs({"rollout"}))
    assert (said["code"], said["decidedBy"], said["decided_by"], said["decider"]) == ("OTHER", "rollout", 4, 4)
    assert engine.codes[4] == "OTHER" and decision_module._GATE_CODES[4] == ROLLOUT_EXCLUDED


def test_a_gate_added_to_the_table_is_a_gate_of_every_path():
    extra = Gate("subject", "WRONG_SUBJECT", "job['subject'] == 'mathematics'",
                 lambda d, passed, problem: "mathematics" if passed else "not mathematics")
    table = (*GATE_TABLE[:2], extra, *GATE_TABLE[2:])
    engine = Engine(table)
    job, controls, allowlist = _inputs(set(), make_job(JOB_ID, subject="physics"))
    allowlist = make_allowlist(rules=[rule_doc(subject=["mathematics", "physics"])])
    said = _every_path(engine, job, controls, allowlist)
    assert (said["decide"], said["decided_by"], said["decider"], said["code"]) == (2, 2, 2, "WRONG_SUBJECT")
    assert said["trace"] == ["pass", "pass", "fail", "pass", "pass", "pass"]
    assert engine.decide(job, controls, allowlist).gates()[2].detail == "not mathematics"
    assert _every_path(ENGINE, job, controls, allowlist)["path"] == PATH_OPENAI


# ---------------------------------------------------------------- decider: settled once per controls
def test_the_controls_and_the_allowlist_settle_what_they_can_alone(engine):
    live, allowlist = make_controls(rollout="5"), make_allowlist()
    assert engine.settled(live, allowlist) == (True, True, None, None, None)
    assert engine.settled(make_controls(rollout="0"), allowlist) == (True, True, None, None, True)
    assert engine.settled(make_controls(rollout=None), allowlist) == (True, True, None, None, False)
    assert engine.settled(make_controls(kill="true", feature=None), allowlist) == (False, False, None, None, True)
    assert engine.settled(live, make_allowlist(enabled=False)) == (True, True, None, False, None)
    assert engine.settled(live, AllowlistUnavailable("gone")) == (True, True, None, False, None)


def test_a_decider_tests_only_what_depends_on_the_job(engine):
    decider = engine.decider
    allowlist = make_allowlist()
    # settled before any job is seen: the per-job function does not look at the job
    assert decider(make_controls(kill="true"), allowlist)(None) == 0
    assert decider(make_controls(feature="false"), allowlist)(None) == 1
    # rollout 0: no bucket is needed, whatever the jobId
    passes = make_job(JOB_ID)
    assert decider(make_controls(rollout="0"), allowlist)(passes) == 5
    assert decider(make_controls(rollout="abc"), allowlist)(passes) == 4
    assert decider(make_controls(rollout="5"), make_allowlist(enabled=False))(passes) == 3
    assert decider(make_controls(rollout="5"), make_allowlist(enabled=False))(make_job(JOB_ID, allow_ai=False)) == 2
    # one compiled function per way of settling, reused for other controls settled the same way
    first = decider(make_controls(rollout="5"), allowlist)
    again = decider(make_controls(rollout="51"), make_allowlist())
    assert first.__code__ is again.__code__
    assert first(make_job("a")) == 4 and again(make_job("a")) == 5  # bucket 50
    assert decider(make_controls(rollout="0"), allowlist).__code__ is not first.__code__


# ---------------------------------------------------------------- the trace's words, exactly
def _trace(engine: Engine, job: Any, controls: Controls, allowlist: Any) -> list[tuple[str, str]]:
    return [(g.verdict, g.detail) for g in engine.decide(job, controls, allowlist).gates()]


def test_the_trace_of_a_job_that_passes_every_gate(engine):
    assert engine.decide(make_job(), make_controls(rollout="5"), make_allowlist()).to_json() == {
        "jobId": JOB_ID,
        "path": "openai",
        "code": None,
        "bucket": 4,
        "decidedBy": None,
        "allowlistVersion": "v1",
        "gates": [
            {"gate": "kill-switch", "verdict": "pass", "detail": "SLOTGEN_AI_KILL='false': off", "decisive": False},
            {"gate": "feature-flag", "verdict": "pass", "detail": "FEATURE_SLOTGEN_AI='true': on", "decisive": False},
            {"gate": "job-opt-in", "verdict": "pass", "detail": "metadata.allowAI is true", "decisive": False},
            {"gate": "allowlist", "verdict": "pass", "detail": "matches rule 'beta-minimal-cohort' of allowlist v1",
             "decisive": False},
            {"gate": "rollout", "verdict": "pass", "detail": "bucket 4 < 5", "decisive": False},
        ],
    }


def test_the_trace_words_every_failure(engine):
    no_rule = make_allowlist(rules=[rule_doc(subject="physics")])
    controls = make_controls(kill=" yes", feature=None, rollout="4")
    trace = _trace(engine, make_job(JOB_ID, allow_ai=False), controls, no_rule)
    assert trace == [
        ("fail", "SLOTGEN_AI_KILL=' yes': engaged, every job takes the STUB path"),
        ("fail", "FEATURE_SLOTGEN_AI=unset: not 'true', the AI path is disabled"),
        ("fail", "metadata.allowAI is false, not true"),
        ("fail", "no rule of allowlist v1 matches (kind, subject, level, board, specVersion)"),
        ("fail", "bucket 4 >= 4"),
    ]
    trace = _trace(engine, make_job(JOB_ID, allow_ai=ABSENT), make_controls(kill=None, feature="1", rollout="abc"),
                   make_allowlist(enabled=False))
    assert trace == [
        ("pass", "SLOTGEN_AI_KILL=unset: off"),
        ("fail", "FEATURE_SLOTGEN_AI='1': not 'true', the AI path is disabled"),
        ("fail", "metadata.allowAI is missing, not true"),
        ("fail", "allowlist v1 is disabled"),
        ("fail", "SLOTGEN_AI_ROLLOUT_PERCENT='abc' is not an integer 0..100: fails closed"),
    ]
    assert _trace(engine, make_job(JOB_ID, metadata=ABSENT), make_controls(), make_allowlist())[2] == (
        "fail", "metadata.allowAI is missing, not true")
    trace = _trace(engine, make_job(JOB_ID), make_controls(rollout=None), AllowlistUnavailable("test: gone"))
    assert trace[3:] == [
        ("fail", "allowlist unavailable (test: gone): fails closed"),
        ("fail", "SLOTGEN_AI_ROLLOUT_PERCENT=unset is not an integer 0..100: fails closed"),
    ]


def test_the_trace_of_a_job_that_breaks_the_schema(engine):
    invalid = make_job(JOB_ID, metadata={"allowAI": "true"})
    assert _trace(engine, invalid, make_controls(rollout="5"), make_allowlist())[2:] == [
        ("fail", "job is invalid (metadata.allowAI: must be true or false, got string): the STUB path"),
        ("fail", "job is invalid: not matched"),
        ("pass", "bucket 4 < 5"),  # the bucket is the jobId's, valid or not
    ]
    no_id = make_job(ABSENT, jobId=ABSENT)
    assert _trace(engine, no_id, make_controls(rollout="5"), make_allowlist(enabled=False))[2:] == [
        ("fail", "job is invalid (jobId: required field is missing): the STUB path"),
        ("fail", "job is invalid: not matched"),
        ("fail", "no usable jobId, no bucket: fails closed"),
    ]
    # rollout 0 needs no bucket: it passes even a job without one
    assert _trace(engine, no_id, make_controls(rollout="0"), make_allowlist())[4] == (
        "pass", "rollout 0: gate disabled, every admitted job passes")
    assert engine.decide(no_id, make_controls(rollout="0"), make_allowlist()).decided_by == 2


def test_a_gate_that_reads_the_bucket_first_checks_the_job_first():
    engine = Engine((BY_NAME["rollout"], *(gate for gate in GATE_TABLE if gate.name != "rollout")))
    no_id = make_job(ABSENT, jobId=ABSENT)
    excluded = engine.decide(no_id, make_controls(rollout="5"), make_allowlist())
    assert (excluded.decided_by, excluded.code, excluded.bucket) == (0, ROLLOUT_EXCLUDED, None)
    assert [g.verdict for g in excluded.gates()] == ["fail", "pass", "pass", "fail", "fail"]
    assert excluded.gates()[0].detail == "no usable jobId, no bucket: fails closed"
    admitted = engine.decide(no_id, make_controls(rollout="0"), make_allowlist())
    assert (admitted.decided_by, admitted.code) == (3, NOT_ALLOWLISTED)
    assert engine.decide(make_job("a"), make_controls(rollout="50"), make_allowlist()).decided_by == 0
    assert engine.decide(make_job("a"), make_controls(rollout="51"), make_allowlist()).decided_by == 5


def test_decide_keeps_the_bucket_it_hashed_and_hashes_none_it_did_not_need(engine):
    decide = engine.decide
    hashed = decide(make_job(JOB_ID), make_controls(rollout="5"), make_allowlist())
    assert hashed._bucket == 4
    for controls, allowlist, job in [
        (make_controls(kill="true"), make_allowlist(), make_job(JOB_ID)),
        (make_controls(rollout="0"), make_allowlist(), make_job(JOB_ID)),
        (make_controls(rollout=None), make_allowlist(), make_job(JOB_ID)),
        (make_controls(rollout="5"), make_allowlist(enabled=False), make_job(JOB_ID)),
        (make_controls(rollout="5"), make_allowlist(), make_job(JOB_ID, allow_ai=False)),
        (make_controls(kill="true", rollout="5"), make_allowlist(), make_job(JOB_ID, allow_ai="true")),  # not checked
    ]:
        decision = decide(job, controls, allowlist)
        assert decision._bucket == -1
        assert decision.bucket == 4 and decision._bucket == 4


# ---------------------------------------------------------------- a table that cannot be compiled
BINDS = "gate 'job-opt-in': a test reads its inputs, it binds no names"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ((), "a gate order needs at least one gate"),
        ((BY_NAME["job-opt-in"], BY_NAME["kill-switch"], BY_NAME["job-opt-in"]),
         "gate names must be unique: job-opt-in, kill-switch, job-opt-in"),
        ((replace(BY_NAME["job-opt-in"], test="job.get('metadata') or"),),
         "gate 'job-opt-in': its test is not an expression (invalid syntax)"),
        ((replace(BY_NAME["job-opt-in"], test="import job"),),
         "gate 'job-opt-in': its test is not an expression (invalid syntax)"),
        ((replace(BY_NAME["job-opt-in"], test="job_problem(job) is None and bucket(job)"),),
         "gate 'job-opt-in': its test names bucket, job_problem; a test may read only "
         "controls, allowlist, job, job_bucket"),
        ((replace(BY_NAME["job-opt-in"], test="(seen := job) is not None"),), BINDS),
        ((replace(BY_NAME["job-opt-in"], test="all(x for x in job)"),), BINDS),
        ((replace(BY_NAME["job-opt-in"], test="(lambda: job)()"),), BINDS),
        ((BY_NAME["kill-switch"], BY_NAME["rollout"]), "a gate order must check the job: no gate's test reads `job`"),
    ],
    ids=["empty", "duplicate", "syntax", "statement", "unknown-name", "walrus", "comprehension", "lambda",
         "no-job-gate"],
)
def test_a_table_that_cannot_be_compiled_is_refused(table, message):
    with pytest.raises(ValueError) as refused:
        Engine(table)
    assert str(refused.value) == message


def test_the_fast_path_is_the_table_in_straight_line_code(engine):
    import inspect

    assert inspect.getsource(engine.decided_by) == (
        "def decided_by(job, controls, allowlist):\n"
        "    if not (not controls.kill_engaged):\n"
        "        return 0\n"
        "    if not (controls.feature_on):\n"
        "        return 1\n"
        "    if not ((job.get('metadata') or {}).get('allowAI') is True):\n"
        "        return 2\n"
        "    if not (allowlist.enabled and allowlist.match(job) is not None):\n"
        "        return 3\n"
        "    if not (controls.rollout == 0 or (controls.rollout is not None and _bucket(job['jobId']) < "
        "controls.rollout)):\n"
        "        return 4\n"
        "    return 5\n"
    )


def test_a_compiled_path_shows_its_source_in_a_traceback(engine):
    import traceback

    class Broken:
        kill_engaged = False

        @property
        def feature_on(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError) as caught:
        engine.decided_by(make_job(), Broken(), make_allowlist())
    text = "".join(traceback.format_exception(caught.value))
    assert "<slotgen gate order: decided_by" in text
    assert "if not (controls.feature_on):" in text
