"""SPEC section 1 / seed 004 section 2: every gate, its code, and the decision order."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from contract_helpers import (
    ABSENT,
    SHIPPED_ALLOWLIST,
    allowlist_doc,
    ids_in_buckets,
    make_allowlist,
    make_controls,
    make_job,
    rule_doc,
)
from slotgen_ops.contract import (
    FEATURE_DISABLED,
    GATES,
    KILL_SWITCH,
    NOT_ALLOWLISTED,
    PATH_OPENAI,
    PATH_STUB,
    ROLLOUT_EXCLUDED,
    AllowlistUnavailable,
    bucket,
    decide,
    job_problem,
)
from slotgen_ops.runtime.allowlist_file import load_allowlist

GATE_CODES = {
    "kill-switch": KILL_SWITCH,
    "feature-flag": FEATURE_DISABLED,
    "job-opt-in": NOT_ALLOWLISTED,
    "allowlist": NOT_ALLOWLISTED,
    "rollout": ROLLOUT_EXCLUDED,
}

# job-000001 is in bucket 4 (SPEC example): admitted at rollout 5, excluded at 1..4.
BASE_JOB_ID = "job-000001"


# ---------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    """Everything decide() reads; the default passes every gate (OpenAI path)."""

    kill: str | None = "false"
    feature: str | None = "true"
    rollout: str | None = "5"
    job: dict[str, Any] = field(default_factory=lambda: make_job(BASE_JOB_ID))
    allowlist: Any = field(default_factory=make_allowlist)

    def decide(self):
        return decide(self.job, make_controls(self.kill, self.feature, self.rollout), self.allowlist)


def _set(attr: str, value: Any) -> Callable[[Scenario], None]:
    def apply(s: Scenario) -> None:
        setattr(s, attr, value)

    return apply


def _job(**changes: Any) -> Callable[[Scenario], None]:
    def apply(s: Scenario) -> None:
        for key, value in changes.items():
            if value is ABSENT:
                s.job.pop(key, None)
            else:
                s.job[key] = value

    return apply


def _metadata(value: Any) -> Callable[[Scenario], None]:
    return _job(metadata=value)


# One list of ways to fail per gate, in decision order. Each way touches only
# what its gate reads, so any combination can be applied together.
FAILURES: dict[str, dict[str, Callable[[Scenario], None]]] = {
    "kill-switch": {
        "true": _set("kill", "true"),
        "1": _set("kill", "1"),
        "garbage": _set("kill", "garbage"),
        "yes-padded": _set("kill", " yes "),
    },
    "feature-flag": {
        "unset": _set("feature", None),
        "false": _set("feature", "false"),
        "1": _set("feature", "1"),
        "empty": _set("feature", ""),
    },
    "job-opt-in": {
        "allowai-false": _metadata({"allowAI": False}),
        "allowai-missing": _metadata({}),
        "metadata-missing": _metadata(ABSENT),
        "allowai-string-true": _metadata({"allowAI": "true"}),  # an invalid job
        "jobid-missing": _job(jobId=ABSENT),  # an invalid job
    },
    "allowlist": {
        "disabled": _set("allowlist", make_allowlist(enabled=False)),
        "no-rule-matches": _set("allowlist", make_allowlist(rules=[rule_doc(subject="physics")])),
        "unavailable": _set("allowlist", AllowlistUnavailable("test: file not found")),
        "job-board-case": _job(board="AQA"),
    },
    "rollout": {
        "bucket-above-percent": _set("rollout", "1"),
        "bucket-equals-percent": _set("rollout", "4"),
        "unset": _set("rollout", None),
        "not-a-number": _set("rollout", "abc"),
        "over-100": _set("rollout", "101"),
    },
}
assert tuple(FAILURES) == GATES


def _scenario(failing: dict[str, str]) -> Scenario:
    scenario = Scenario()
    for gate, how in failing.items():
        FAILURES[gate][how](scenario)
    return scenario


def test_the_base_scenario_takes_the_openai_path():
    decision = Scenario().decide()
    assert (decision.path, decision.code, decision.decided_by) == (PATH_OPENAI, None, len(GATES))
    assert bucket(BASE_JOB_ID) == 4


@pytest.mark.parametrize(
    ("gate", "how"),
    [(gate, how) for gate, ways in FAILURES.items() for how in ways],
)
def test_each_gate_alone_blocks_with_its_code(gate, how):
    decision = _scenario({gate: how}).decide()
    assert decision.path == PATH_STUB
    assert decision.code == GATE_CODES[gate]
    assert decision.decided_by == GATES.index(gate)


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(GATES, 2)))
def test_every_pair_of_failing_gates_is_decided_by_the_earlier(first, second):
    for how_first, how_second in itertools.product(FAILURES[first], FAILURES[second]):
        decision = _scenario({first: how_first, second: how_second}).decide()
        assert decision.decided_by == GATES.index(first), (how_first, how_second)
        assert decision.code == GATE_CODES[first]
        assert decision.path == PATH_STUB


def test_every_combination_of_failures_is_decided_by_the_first_failing_gate():
    checked = 0
    options = [[None, *ways] for ways in FAILURES.values()]
    for choice in itertools.product(*options):
        failing = {gate: how for gate, how in zip(GATES, choice) if how is not None}
        decision = _scenario(failing).decide()
        if not failing:
            assert decision.path == PATH_OPENAI
            _check_gates(decision)
            continue
        first = next(gate for gate in GATES if gate in failing)
        assert decision.decided_by == GATES.index(first), failing
        assert (decision.path, decision.code) == (PATH_STUB, GATE_CODES[first])
        _check_gates(decision)
        checked += 1
    assert checked == 5 * 5 * 6 * 5 * 6 - 1


def _check_gates(decision) -> None:
    """gates(): five verdicts in order, consistent with the decision."""
    gates = decision.gates()
    assert [g.gate for g in gates] == list(GATES)
    decisive = [i for i, g in enumerate(gates) if g.decisive]
    if decision.path == PATH_OPENAI:
        assert decisive == []
        assert all(g.verdict == "pass" for g in gates)
        return
    assert decisive == [decision.decided_by]
    index = decisive[0]
    assert gates[index].verdict == "fail"
    assert GATE_CODES[gates[index].gate] == decision.code
    # every gate before the decisive one passed: the decisive one is the first failure
    assert all(g.verdict == "pass" for g in gates[:index])
    assert all(g.verdict in ("pass", "fail") and g.detail for g in gates)


# ------------------------------------------------- the allowlist gate (4)
def _write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


UNAVAILABLE_CASES: dict[str, Callable[[Path], str | None]] = {
    "unset": lambda tmp: None,
    "empty-path": lambda tmp: "",
    "missing-file": lambda tmp: str(tmp / "nope" / "allowlist.json"),
    "a-directory": lambda tmp: str(tmp),
    "not-utf8": lambda tmp: _write(tmp / "latin1.json", '{"version": "caf\xe9"}'.encode("latin-1")),
    "empty-file": lambda tmp: _write(tmp / "empty.json", ""),
    "not-json": lambda tmp: _write(tmp / "broken.json", '{"schemaVersion": 1, "version": "v1",'),
    "yaml-not-json": lambda tmp: _write(tmp / "a.yaml", "schemaVersion: 1\nversion: v1\n"),
    "schema-invalid-version": lambda tmp: _write(
        tmp / "v2.json", json.dumps({**allowlist_doc(), "schemaVersion": 2})
    ),
    "schema-invalid-wildcard-key": lambda tmp: _write(
        tmp / "wild.json", json.dumps(allowlist_doc(rules=[rule_doc(**{"*": "*"})]))
    ),
    "schema-invalid-not-object": lambda tmp: _write(tmp / "list.json", json.dumps([allowlist_doc()])),
}


@pytest.mark.parametrize("case", UNAVAILABLE_CASES)
def test_an_unavailable_allowlist_fails_closed(case, tmp_path):
    path = UNAVAILABLE_CASES[case](tmp_path)
    state = load_allowlist(path)
    assert isinstance(state, AllowlistUnavailable)
    assert state.available is False and state.reason
    decision = Scenario(allowlist=state).decide()
    assert (decision.path, decision.code, decision.decided_by) == (PATH_STUB, NOT_ALLOWLISTED, 3)
    assert "unavailable" in decision.gates()[3].detail
    assert decision.to_json()["allowlistVersion"] is None


def _as_nobody(fn):
    """fn() in a forked child that dropped root for the unprivileged `nobody` (root reads a mode-000 file,
    so as root the check would pass vacuously); its result comes back over a pipe. Not root: fn() here."""
    if os.geteuid() != 0:
        return fn()
    import pickle
    import pwd

    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, run, report, exit without cleanup handlers
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            assert os.geteuid() == nobody.pw_uid
            result = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = ("error", repr(exc))
        with os.fdopen(write, "wb") as out:
            pickle.dump(result, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        kind, value = pickle.load(inp)
    os.waitpid(pid, 0)
    assert kind == "ok", value
    return value


def test_an_unreadable_allowlist_fails_closed(tmp_path):
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="slotgen-mode000-"))
    try:
        folder.chmod(0o755)  # traversable by anyone: only the file itself is unreadable
        path = folder / "locked.json"
        path.write_text(json.dumps(allowlist_doc()), encoding="utf-8")
        path.chmod(0)
        state = _as_nobody(lambda: load_allowlist(str(path)))
        assert isinstance(state, AllowlistUnavailable), state
        assert "permission" in state.reason.lower() or "cannot read" in state.reason.lower(), state.reason
        assert Scenario(allowlist=state).decide().code == NOT_ALLOWLISTED
        path.chmod(0o644)  # the same file readable: it loads (the failure above was the mode, nothing else)
        assert _as_nobody(lambda: load_allowlist(str(path))).available
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def test_a_valid_allowlist_file_loads_absolute_or_relative_to_base(tmp_path):
    (tmp_path / "allowlists").mkdir()
    _write(tmp_path / "allowlists" / "a.json", json.dumps(allowlist_doc(version="v7")))
    for state in (
        load_allowlist(str(tmp_path / "allowlists" / "a.json")),
        load_allowlist("allowlists/a.json", base=tmp_path),
    ):
        assert state.available and state.version == "v7"
        assert Scenario(allowlist=state).decide().path == PATH_OPENAI
    assert load_allowlist(str(SHIPPED_ALLOWLIST)).available


def test_a_disabled_allowlist_blocks_even_a_matching_job():
    allowlist = make_allowlist(enabled=False)
    assert allowlist.match(make_job()) == "beta-minimal-cohort"  # the rule matches...
    decision = Scenario(allowlist=allowlist).decide()
    assert (decision.path, decision.code) == (PATH_STUB, NOT_ALLOWLISTED)  # ...and still blocks
    assert "disabled" in decision.gates()[3].detail


def test_rule_fields_may_list_exact_strings():
    allowlist = make_allowlist(
        rules=[rule_doc(subject=["physics", "mathematics"], board=["aqa"], specVersion=["8300", "8463"])]
    )
    for fields, expected in [
        ({}, PATH_OPENAI),
        ({"subject": "physics"}, PATH_OPENAI),
        ({"subject": "physics", "specVersion": "8463"}, PATH_OPENAI),
        ({"subject": "chemistry"}, PATH_STUB),
        ({"specVersion": "8464"}, PATH_STUB),
        ({"board": "edexcel"}, PATH_STUB),
    ]:
        job = make_job(BASE_JOB_ID, **fields)
        assert Scenario(job=job, allowlist=allowlist).decide().path == expected, fields


def test_every_field_must_match_and_any_rule_may():
    allowlist = make_allowlist(
        rules=[rule_doc("physics", subject="physics", level="a-level"), rule_doc("maths")]
    )
    assert allowlist.match(make_job()) == "maths"
    assert allowlist.match(make_job(subject="physics", level="a-level")) == "physics"
    assert allowlist.match(make_job(subject="physics")) is None  # level still gcse
    for name in ("kind", "subject", "level", "board", "specVersion"):
        job = make_job(BASE_JOB_ID, **{name: "other"})
        assert Scenario(job=job).decide().code == NOT_ALLOWLISTED, name


def test_no_wildcards_star_is_a_literal():
    star = make_allowlist(rules=[rule_doc(board="*", subject=["*", "x*"])])
    assert Scenario(allowlist=star).decide().code == NOT_ALLOWLISTED
    assert star.match(make_job(board="aqa", subject="*")) is None
    assert star.match(make_job(board="*", subject="*")) is not None
    assert star.match(make_job(board="*", subject="x*")) is not None
    assert star.match(make_job(board="*", subject="xy")) is None
    # and a literal "*" in the job does not match a concrete rule either
    assert Scenario(job=make_job(BASE_JOB_ID, subject="*")).decide().code == NOT_ALLOWLISTED


@pytest.mark.parametrize("value", ["AQA", "aqa ", " aqa", "aqa\n", "a qa", "ａｑａ"])
def test_matching_is_exact_no_case_folding_no_trimming(value):
    assert Scenario(job=make_job(BASE_JOB_ID, board=value)).decide().code == NOT_ALLOWLISTED


def test_first_matching_rule_wins_and_a_large_allowlist_still_matches():
    two = make_allowlist(rules=[rule_doc("first"), rule_doc("second")])
    assert two.match(make_job()) == "first"
    # more combinations than the expansion limit: matched rule by rule
    big_values = [f"s{i}" for i in range(700)]
    big = make_allowlist(
        rules=[rule_doc("wide", subject=big_values, level=big_values), rule_doc("exact")]
    )
    assert big.cohort_size > 200_000
    assert big.match(make_job(subject="s5", level="s699")) == "wide"
    assert big.match(make_job()) == "exact"
    assert big.match(make_job(subject="s5", level="s700")) is None


# ------------------------------------------------- the opt-in gate (3)
@pytest.mark.parametrize(
    ("metadata", "valid"),
    [
        ({"allowAI": False}, True),
        ({}, True),
        (ABSENT, True),
        ({"allowAI": "true"}, False),
        ({"allowAI": 1}, False),
        ({"allowAI": None}, False),
        ({"allowAI": [True]}, False),
        ({"AllowAI": True}, True),  # the key is case-sensitive: allowAI missing
        (None, False),
        ([{"allowAI": True}], False),
    ],
    ids=repr,
)
def test_allow_ai_must_be_exactly_boolean_true(metadata, valid):
    job = make_job(BASE_JOB_ID, metadata=metadata)
    assert (job_problem(job) is None) == valid
    decision = Scenario(job=job).decide()
    assert (decision.path, decision.code, decision.decided_by) == (PATH_STUB, NOT_ALLOWLISTED, 2)


# ------------------------------------------------- the rollout gate (5)
def test_percent_zero_disables_the_gate_every_admitted_job_passes():
    ids = [f"job-{n:06d}" for n in range(300)] + [ids_in_buckets({b}, 1)[0] for b in range(100)]
    assert {bucket(i) for i in ids} == set(range(100))
    for job_id in ids:
        assert Scenario(rollout="0", job=make_job(job_id)).decide().path == PATH_OPENAI
        # but 0 admits nobody that an earlier gate blocks
        blocked = Scenario(rollout="0", job=make_job(job_id, allow_ai=False)).decide()
        assert blocked.code == NOT_ALLOWLISTED


def test_percent_100_admits_every_admitted_job():
    ids = [f"job-{n:06d}" for n in range(300)] + [ids_in_buckets({b}, 1)[0] for b in range(100)]
    for job_id in ids:
        assert Scenario(rollout="100", job=make_job(job_id)).decide().path == PATH_OPENAI


@pytest.mark.parametrize("percent", [1, 2, 5, 50, 99])
def test_a_job_is_included_exactly_when_its_bucket_is_below_the_percent(percent):
    for n in range(200):
        job_id = f"job-{n:06d}"
        decision = Scenario(rollout=str(percent), job=make_job(job_id)).decide()
        if bucket(job_id) < percent:
            assert decision.path == PATH_OPENAI
        else:
            assert (decision.path, decision.code) == (PATH_STUB, ROLLOUT_EXCLUDED)
        assert decision.bucket == bucket(job_id)


def test_spec_bucket_examples_drive_the_rollout_gate():
    # job-000001 -> 4: excluded at 4, included at 5
    assert Scenario(rollout="4").decide().code == ROLLOUT_EXCLUDED
    assert Scenario(rollout="5").decide().path == PATH_OPENAI
    # a -> 50: excluded at 50, included at 51
    assert Scenario(rollout="50", job=make_job("a")).decide().code == ROLLOUT_EXCLUDED
    assert Scenario(rollout="51", job=make_job("a")).decide().path == PATH_OPENAI


# ------------------------------------------------- garbage never raises
GARBAGE_JOBS: list[Any] = [
    None, 0, 1.5, True, "job-000001", b"job", [], [make_job()], {}, object(), {1: 2}, {"jobId": None},
    {"jobId": ""}, {**make_job(), "jobId": b"job-000001"}, make_job(jobId=ABSENT), make_job("\ud800"),
    make_job("job-\udfff-x"), make_job(subject=None), make_job(kind=7), make_job(specVersion=8300),
    make_job(metadata=[]), make_job(metadata="allowAI"), make_job(payload=[1, 2]), make_job(payload=None),
    make_job(extra=True), make_job(metadata={"allowAI": "yes"}), {"jobId": "x", "metadata": {"allowAI": True}},
    {**make_job(), "jobId": ["job-000001"]}, {frozenset(): 1, **make_job()},
]


@pytest.mark.parametrize("job", GARBAGE_JOBS, ids=lambda j: repr(j)[:40])
@pytest.mark.parametrize("rollout", ["0", "5", "100", None])
def test_decide_on_garbage_never_raises_and_takes_the_stub_path(job, rollout):
    assert job_problem(job) is not None
    for allowlist in (make_allowlist(), AllowlistUnavailable("x")):
        decision = Scenario(job=job, rollout=rollout, allowlist=allowlist).decide()
        assert decision.path == PATH_STUB
        assert decision.code == NOT_ALLOWLISTED and decision.decided_by == 2
        document = decision.to_json()
        json.dumps(document)  # serialisable, even with a lone surrogate in jobId
        _check_gates(decision)
        assert "invalid" in decision.gates()[2].detail


def test_a_lone_surrogate_job_id_has_no_bucket():
    decision = Scenario(job=make_job("\ud800")).decide()
    assert decision.bucket is None
    assert decision.to_json()["bucket"] is None


# ------------------------------------------------- gates() and to_json()
def test_to_json_fields_on_the_openai_path():
    document = Scenario().decide().to_json()
    assert document["jobId"] == BASE_JOB_ID
    assert document["path"] == "openai"
    assert document["code"] is None
    assert document["bucket"] == 4
    assert [g["gate"] for g in document["gates"]] == list(GATES)
    assert all(set(g) >= {"gate", "verdict", "detail"} for g in document["gates"])
    assert all(g["verdict"] == "pass" for g in document["gates"])
    assert json.loads(json.dumps(document)) == document


@pytest.mark.parametrize("gate", GATES)
def test_to_json_fields_on_a_stub_path(gate):
    how = next(iter(FAILURES[gate]))
    document = _scenario({gate: how}).decide().to_json()
    assert document["path"] == "stub"
    assert document["code"] == GATE_CODES[gate]
    assert document["bucket"] == bucket(BASE_JOB_ID)  # reported whatever decided
    verdicts = [g["verdict"] for g in document["gates"]]
    index = GATES.index(gate)
    assert verdicts[index] == "fail" and verdicts[:index] == ["pass"] * index
    assert [g["decisive"] for g in document["gates"]] == [i == index for i in range(len(GATES))]


def test_bucket_is_reported_for_valid_jobs_on_every_path():
    job_id = ids_in_buckets({73}, 1, "job-")[0]
    for scenario in (Scenario(kill="true"), Scenario(feature=None), Scenario(rollout="100")):
        scenario.job = make_job(job_id)
        assert scenario.decide().bucket == 73
