"""Hypothesis: the Phase 4D hard invariants (seed 004 section 4) and schema equivalence."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from contract_helpers import COHORT, make_allowlist, make_controls, make_job, rule_doc, validator
from slotgen_ops.contract import (
    ALLOWLIST_VAR,
    FEATURE_VAR,
    GATES,
    KILL_SWITCH,
    KILL_VAR,
    PATH_OPENAI,
    PATH_STUB,
    ROLLOUT_VAR,
    AllowlistInvalid,
    AllowlistUnavailable,
    Controls,
    bucket,
    decide,
    job_problem,
    parse_allowlist,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIGHT = settings(SETTINGS, max_examples=100)
JOB_SCHEMA = validator("job")
ALLOWLIST_SCHEMA = validator("allowlist")
GATE_CODES = ("KILL_SWITCH", "FEATURE_DISABLED", "NOT_ALLOWLISTED", "NOT_ALLOWLISTED", "ROLLOUT_EXCLUDED")

# ---------------------------------------------------------------- strategies
short_text = st.text(max_size=10)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | short_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=6,
)
OTHER_FIELD_VALUES = ["", "*", "AQA", "aqa ", "physics", "a-level", "8301", "GCSE", "mark-scheme"]

# Mostly the cohort's value (so that whole jobs match), else something near or random.
FIELD_VALUES = {
    name: st.one_of(*[st.just(value)] * 6, st.sampled_from(OTHER_FIELD_VALUES), short_text)
    for name, value in COHORT.items()
}
JOB_FIELDS = st.fixed_dictionaries({"jobId": st.text(min_size=1, max_size=20), **FIELD_VALUES})
METADATA_EXTRA = st.dictionaries(short_text.filter(lambda k: k != "allowAI"), json_scalars, max_size=2)
ALLOW_AI_CHOICE = st.sampled_from([True, True, True, False, None])
PAYLOADS = st.dictionaries(short_text, json_scalars, max_size=2)


@st.composite
def valid_jobs(draw) -> dict[str, Any]:
    job: dict[str, Any] = draw(JOB_FIELDS)
    if draw(st.integers(0, 4)) > 0:
        metadata = draw(METADATA_EXTRA)
        allow = draw(ALLOW_AI_CHOICE)
        if allow is not None:
            metadata["allowAI"] = allow
        job["metadata"] = metadata
    if draw(st.booleans()):
        job["payload"] = draw(PAYLOADS)
    return job


JOB_KEYS = ["jobId", *COHORT, "metadata", "payload"]


@st.composite
def job_like(draw) -> Any:
    """A mix: valid jobs, jobs broken in one or two ways, and arbitrary JSON."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(json_values)
    job = draw(valid_jobs())
    if shape <= 4:
        return job
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(["drop", "retype", "add", "allowai", "metadata", "payload", "empty-id"]))
        if op == "drop":
            job.pop(draw(st.sampled_from(JOB_KEYS)), None)
        elif op == "retype":
            job[draw(st.sampled_from(JOB_KEYS))] = draw(json_values)
        elif op == "add":
            job[draw(short_text)] = draw(json_values)
        elif op == "allowai":
            metadata = job.get("metadata")
            job["metadata"] = {**(metadata if type(metadata) is dict else {}), "allowAI": draw(json_values)}
        elif op == "metadata":
            job["metadata"] = draw(json_values)
        elif op == "payload":
            job["payload"] = draw(json_values)
        else:
            job["jobId"] = ""
    return job


rule_field = st.one_of(
    st.sampled_from(list(COHORT.values()) + OTHER_FIELD_VALUES),
    st.lists(st.sampled_from(list(COHORT.values()) + OTHER_FIELD_VALUES) | short_text, min_size=1, max_size=3),
)
RULES = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=10), **{name: st.just(value) | rule_field for name, value in COHORT.items()}},
    optional={"description": short_text},
)
ALLOWLIST_DOCS = st.fixed_dictionaries(
    {
        "schemaVersion": st.sampled_from([1, 1.0]),
        "version": st.text(min_size=1, max_size=8),
        "enabled": st.booleans(),
        "rules": st.lists(RULES, max_size=3),
    },
    optional={"description": short_text},
)


TOP_KEYS = ["schemaVersion", "version", "enabled", "rules", "description"]
RULE_KEYS = ["id", "description", *COHORT]


@st.composite
def allowlist_like(draw) -> Any:
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(json_values)
    doc = draw(ALLOWLIST_DOCS)
    if shape <= 3:
        return doc
    op = draw(
        st.sampled_from(
            ["drop", "retype", "add", "schema-version", "rule-drop", "rule-retype", "rule-add",
             "rule-empty-list", "rule-list-non-string", "rule-not-object", "rule-empty-id"]
        )
    )
    if op == "drop":
        doc.pop(draw(st.sampled_from(TOP_KEYS)), None)
    elif op == "retype":
        doc[draw(st.sampled_from(TOP_KEYS))] = draw(json_values)
    elif op == "add":
        doc[draw(short_text)] = draw(json_values)
    elif op == "schema-version":
        doc["schemaVersion"] = draw(st.sampled_from([True, False, 0, 2, 1.5, "1", None, [1]]))
    else:
        if not doc["rules"]:
            doc["rules"].append(draw(RULES))
        index = draw(st.integers(0, len(doc["rules"]) - 1))
        rule = doc["rules"][index]
        if op == "rule-drop":
            rule.pop(draw(st.sampled_from(RULE_KEYS)), None)
        elif op == "rule-retype":
            rule[draw(st.sampled_from(RULE_KEYS))] = draw(json_values)
        elif op == "rule-add":
            rule[draw(short_text)] = draw(json_values)
        elif op == "rule-empty-list":
            rule[draw(st.sampled_from(list(COHORT)))] = []
        elif op == "rule-list-non-string":
            rule[draw(st.sampled_from(list(COHORT)))] = ["aqa", draw(json_values)]
        elif op == "rule-not-object":
            doc["rules"][index] = draw(json_values)
        else:
            rule["id"] = ""
    return doc


FIXED_ALLOWLISTS = [
    make_allowlist(),
    make_allowlist(enabled=False),
    make_allowlist(rules=[]),
    make_allowlist(rules=[rule_doc(subject=["mathematics", "physics"], board=["aqa", "*"])]),
    AllowlistUnavailable("SLOTGEN_AI_ALLOWLIST_PATH is unset"),
]
allowlists = st.sampled_from(FIXED_ALLOWLISTS) | ALLOWLIST_DOCS.map(parse_allowlist)

INTERESTING_CONTROL_VALUES = ["true", "false", " TRUE ", "False\n", "", "0", "1", "5", "100", "101", "-1", "yes", "abc", "١", "007"]
control_value = st.none() | st.sampled_from(INTERESTING_CONTROL_VALUES) | short_text
KILL_OFF_VALUES = [None, "", "false", " FALSE ", "False\n"]
kill_off = st.sampled_from(KILL_OFF_VALUES)
kill_engaged = st.sampled_from(["true", "1", "TRUE", "yes", "garbage", " true "]) | short_text.filter(
    lambda s: s.strip().lower() not in ("", "false")
)
rollout_value = st.none() | st.sampled_from(["0", "1", "5", "50", "100", "abc", "", "101"]) | st.integers(0, 100).map(str)


def _env(kill, feature, rollout) -> dict[str, str]:
    env = {KILL_VAR: kill, FEATURE_VAR: feature, ROLLOUT_VAR: rollout, ALLOWLIST_VAR: None}
    return {k: v for k, v in env.items() if v is not None}


def _check_gates(decision) -> None:
    gates = decision.gates()
    assert [g.gate for g in gates] == list(GATES)
    decisive = [i for i, g in enumerate(gates) if g.decisive]
    if decision.path == PATH_OPENAI:
        assert decisive == [] and decision.code is None
        assert all(g.verdict == "pass" for g in gates)
    else:
        assert decisive == [decision.decided_by]
        assert GATE_CODES[decision.decided_by] == decision.code
        assert [g.verdict for g in gates[: decision.decided_by + 1]] == ["pass"] * decision.decided_by + ["fail"]


# ---------------------------------------------------------------- invariants
@SETTINGS
@given(job=job_like(), kill=kill_engaged, feature=control_value, rollout=control_value, allowlist=allowlists)
def test_kill_switch_dominates_everything(job, kill, feature, rollout, allowlist):
    decision = decide(job, Controls.from_mapping(_env(kill, feature, rollout)), allowlist)
    assert (decision.path, decision.code, decision.decided_by) == (PATH_STUB, KILL_SWITCH, 0)
    _check_gates(decision)


@SETTINGS
@given(
    job=job_like(),
    kill=kill_off | control_value,
    feature=st.sampled_from(["true", " TRUE "]) | control_value,
    rollout=rollout_value,
    allowlist=allowlists,
)
def test_decisions_are_deterministic_and_consistent(job, kill, feature, rollout, allowlist):
    env = _env(kill, feature, rollout)
    first = decide(job, Controls.from_mapping(env), allowlist)
    again = decide(copy.deepcopy(job), Controls.from_mapping(dict(env)), allowlist)
    assert (first.path, first.code, first.bucket, first.decided_by) == (
        again.path,
        again.code,
        again.bucket,
        again.decided_by,
    )
    assert first.to_json() == again.to_json()
    json.dumps(first.to_json())
    _check_gates(first)
    if job_problem(job) is not None:
        assert first.path == PATH_STUB


@LIGHT
@given(doc=ALLOWLIST_DOCS, job=valid_jobs(), rollout=rollout_value)
def test_determinism_across_a_fresh_allowlist_parse(doc, job, rollout):
    controls = make_controls(rollout=rollout)
    first = decide(job, controls, parse_allowlist(doc))
    again = decide(job, controls, parse_allowlist(json.loads(json.dumps(doc))))
    assert first.to_json() == again.to_json()


@SETTINGS
@given(
    job=valid_jobs(),
    kill=kill_off,
    feature=st.sampled_from(["true", " TRUE "]) | control_value,
    rollout=rollout_value,
    allowlist=allowlists,
    absent=st.sampled_from(["feature", "rollout", "allowlist", "allowAI", "metadata"]),
)
def test_deny_by_default_any_absent_input_means_stub(job, kill, feature, rollout, allowlist, absent):
    if absent == "feature":
        feature = None
    elif absent == "rollout":
        rollout = None
    elif absent == "allowlist":
        allowlist = AllowlistUnavailable("SLOTGEN_AI_ALLOWLIST_PATH is unset")
    elif absent == "allowAI":
        job.get("metadata", {}).pop("allowAI", None)
    else:
        job.pop("metadata", None)
    decision = decide(job, Controls.from_mapping(_env(kill, feature, rollout)), allowlist)
    assert decision.path == PATH_STUB


@LIGHT
@given(job=valid_jobs(), kill=kill_off)
def test_deny_by_default_the_all_present_case_can_pass(job, kill):
    """The counterpart: with every input present and passing, the OpenAI path is reachable."""
    job["metadata"] = {"allowAI": True}
    job.update(COHORT)
    decision = decide(job, make_controls(kill=kill, feature="true", rollout="100"), make_allowlist())
    assert decision.path == PATH_OPENAI


@SETTINGS
@given(job_id=st.text(min_size=1, max_size=40), p=st.integers(1, 100), q=st.integers(1, 100))
def test_raising_the_percent_never_removes_an_included_job(job_id, p, q):
    low, high = sorted((p, q))
    allowlist = make_allowlist()
    job = make_job(job_id)
    at_low = decide(job, make_controls(rollout=str(low)), allowlist)
    at_high = decide(job, make_controls(rollout=str(high)), allowlist)
    if at_low.path == PATH_OPENAI:
        assert at_high.path == PATH_OPENAI
    assert (at_low.path == PATH_OPENAI) == (bucket(job_id) < low)


@SETTINGS
@given(job_id=st.text(max_size=200))
def test_bucket_range_and_independent_formula(job_id):
    value = bucket(job_id)
    assert 0 <= value <= 99
    digest = hashlib.sha256(job_id.encode("utf-8")).digest()
    assert value == struct.unpack(">Q", digest[:8])[0] % 100


# ---------------------------------------------------------------- schema equivalence
def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=job_like())
def test_job_problem_agrees_with_the_job_schema(job):
    assume(_encodable(job))
    valid = job_problem(job) is None
    event("valid job" if valid else "invalid job")
    assert valid == JOB_SCHEMA.is_valid(job), (job_problem(job), job)


def _allowlist_ok(doc: Any) -> bool:
    try:
        parse_allowlist(doc)
    except AllowlistInvalid:
        return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=allowlist_like())
def test_parse_allowlist_agrees_with_the_allowlist_schema(doc):
    assume(_encodable(doc))
    valid = _allowlist_ok(doc)
    event("valid allowlist" if valid else "invalid allowlist")
    assert valid == ALLOWLIST_SCHEMA.is_valid(doc), doc


@settings(max_examples=300, deadline=None)
@given(job=job_like(), kill=control_value, feature=control_value, rollout=rollout_value, allowlist=allowlists)
def test_fast_paths_agree_with_the_careful_ones(job, kill, feature, rollout, allowlist):
    """job_problem's fast path, decided_by and decider (exposure's hot loop) say what the careful code says."""
    from slotgen_ops.contract.order import decided_by, decider
    from slotgen_ops.contract.job import _problem

    assert (job_problem(job) is None) == (_problem(job) is None)
    if job_problem(job) is None:
        controls = Controls.from_mapping(_env(kill, feature, rollout))
        expected = decide(job, controls, allowlist).decided_by
        assert decided_by(job, controls, allowlist) == expected
        assert decider(controls, allowlist)(job) == expected
