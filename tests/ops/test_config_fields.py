"""The configuration files' models (policy/fields.py): unknown keys refused, types strict, bounds exact, every
problem named by its field path, and the shipped files read into the values every command relies on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from slotgen_ops.policy.fields import Invalid, build
from slotgen_ops.policy.roster import Roster
from slotgen_ops.runbook.runbook import Runbook
from slotgen_ops.policy.config import OpenAISettings, WorkspaceConfig
from slotgen_ops.policy.yamlfile import safe_load

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = safe_load((ROOT / "runbooks" / "beta-enable.yaml").read_text())
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMHE88CLRYh5iqjSs5Q9G8XHwqt6NDkiC1Hjn1e7ndEO demo"
ROSTER = {"operators": [{"id": "owner", "name": "Owner", "roles": ["engineering-owner"], "keys": [KEY]},
                        {"id": "oncall", "name": "On call", "roles": ["on-call", "approver"]}]}
CONFIG = {"version": 1, "environments": {"staging": {}, "production": {"openai": {"timeoutSeconds": 5}}}}


def problems(model, doc) -> list[str]:
    with pytest.raises(Invalid) as caught:
        build(model, doc)
    return caught.value.problems


def edited(doc: dict, path: str, value, delete: bool = False) -> dict:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    here = out
    for part in parents:
        here = here[int(part)] if isinstance(here, list) else here[part]
    if delete:
        del here[last]
    elif isinstance(here, list):
        here[int(last)] = value
    else:
        here[last] = value
    return out


def test_the_shipped_runbook_reads_into_the_values_the_judge_uses():
    runbook = build(Runbook, RUNBOOK)
    assert [s.id for s in runbook.steps][0] == "kill-switch-on"
    assert runbook.ladder == (1, 5) and isinstance(runbook.ladder, tuple)
    assert runbook.step("verify").control is None and runbook.step("verify").value is None
    assert runbook.step("rollout-progression").requires == ("live", "verification-passing", "soak-elapsed", "approval")
    assert runbook.approvals.ttlHours == 24.0 and isinstance(runbook.approvals.ttlHours, float)
    assert runbook.soak_minutes("production") == 30 and runbook.soak_minutes("qa") == 30
    assert runbook.latency_bound_ms(5) == 3000 and runbook.min_samples("latency") == 20
    assert runbook.path is None


def test_a_workspace_config_gets_its_defaults():
    config = build(WorkspaceConfig, CONFIG)
    assert (config.identity, config.state, config.runbook) == ("signed", "files", "runbooks/beta-enable.yaml")
    assert config.environments["staging"].openai == OpenAISettings()
    assert config.environments["production"].openai.timeoutSeconds == 5.0
    assert config.environments["production"].openai.maxRetries == 1


def test_the_roster_document_a_policy_pins_is_stable():
    """`as_doc` is what a policy snapshot hashes: every field in order, key lines normalised (a change here
    would make every accepted policy look drifted)."""
    doc = copy.deepcopy(ROSTER)
    doc["operators"][0]["keys"] = ["  ssh-ed25519   " + KEY.split()[1] + "   demo "]
    assert json.dumps(Roster.from_doc(doc).as_doc()) == json.dumps({"operators": [
        {"id": "owner", "name": "Owner", "roles": ["engineering-owner"], "keys": [KEY]},
        {"id": "oncall", "name": "On call", "roles": ["on-call", "approver"], "keys": []}]})


@pytest.mark.parametrize("path,value,expected", [
    ("surprise", True, "surprise: unknown key"),
    ("ladder", [5, 1], "ladder: the ladder must rise strictly"),
    ("ladder", [0, 5], "ladder: the ladder must rise strictly"),
    ("ladder", [1, 101], "ladder: the ladder must rise strictly"),
    ("ladder", [1, 1, 5], "ladder: the ladder must rise strictly"),
    ("ladder", [], "ladder: needs at least 1 item"),
    ("ladder", [1, "5"], "ladder.1: must be a whole number, not a string"),
    ("ladder", [1, True], "ladder.1: must be a whole number, not a boolean"),
    ("ladder", [1, 5.0], "ladder.1: must be a whole number, not a number"),
    ("ladder", "1,5", "ladder: must be a list, not a string"),
    ("schemaVersion", 2, "schemaVersion: must be one of 1, not 2"),
    ("schemaVersion", True, "schemaVersion: must be one of 1, not True"),
    ("schemaVersion", "1", "schemaVersion: must be one of 1, not '1'"),
    ("id", "", "id: must not be empty"),
    ("steps.0.requires", ["vibes"], "steps.0.requires.0: must be one of"),
    ("steps.1.control", "SLOTGEN_AI_TURBO", "steps.1.control: must be one of"),
    ("steps.0.value", True, "steps.0.value: must be a string, not a boolean"),
    ("steps.2.extra", 1, "steps.2.extra: unknown key"),
    ("steps.0.id", "verify-first", "steps: the steps must be exactly, in order"),
    ("minimalCohort.maxRules", 0, "minimalCohort.maxRules: 0 is out of range (at least 1)"),
    ("soakMinutes.staging", -1, "soakMinutes: needs a 'default' and non-negative minutes"),
    ("soakMinutes.staging", "0", "soakMinutes.staging: must be a whole number, not a string"),
    ("latencyP95Ms", {}, "latencyP95Ms: at least one bound is required"),
    ("latencyP95Ms", {"0": 0}, "latencyP95Ms: level '0' must be 0..100 with a bound of at least 1 ms"),
    ("latencyP95Ms", {"101": 5}, "latencyP95Ms: level '101' must be 0..100"),
    ("latencyP95Ms", {0: 2000}, "latencyP95Ms.0: the key must be a string, not a number (quote it)"),
    ("verification.minSamples.vibes", 3, "verification.minSamples.vibes: must be one of"),
    ("verification.sampleJobs", "", "verification.sampleJobs: must not be empty"),
    ("approvals.ttlHours", 0, "approvals.ttlHours: 0 is out of range (more than 0 and at most 168)"),
    ("approvals.ttlHours", 168.5, "approvals.ttlHours: 168.5 is out of range"),
    ("approvals.ttlHours", float("nan"), "approvals.ttlHours: must be a number"),
    ("approvals.ttlHours", "24", "approvals.ttlHours: must be a number, not a string"),
    ("approvals", None, "approvals: must be a mapping, not null"),
])
def test_a_runbook_that_breaks_a_rule_is_refused_naming_the_field(path, value, expected):
    found = problems(Runbook, edited(RUNBOOK, path, value))
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize("path", ["ladder", "steps", "approvals", "verification.sampleJobs", "steps.0.control",
                                  "steps.0.value", "steps.0.requires", "minimalCohort.maxCombinations"])
def test_a_required_key_that_is_missing_is_named(path):
    assert f"{path}: required" in problems(Runbook, edited(RUNBOOK, path, None, delete=True))


def test_the_bounds_are_inclusive_where_they_say_so():
    at_edges = edited(edited(RUNBOOK, "approvals.ttlHours", 168), "minimalCohort.maxRules", 1)
    at_edges = edited(edited(at_edges, "ladder", [1, 100]), "soakMinutes.staging", 0)
    runbook = build(Runbook, edited(at_edges, "latencyP95Ms", {"0": 1, "100": 5}))
    assert (runbook.approvals.ttlHours, runbook.minimalCohort.maxRules, runbook.ladder) == (168.0, 1, (1, 100))
    assert runbook.latency_bound_ms(100) == 5
    assert build(Runbook, edited(RUNBOOK, "approvals.ttlHours", 0.01)).approvals.ttlHours == 0.01
    settings = build(OpenAISettings, {"timeoutSeconds": 120, "maxRetries": 0})
    assert (settings.timeoutSeconds, settings.maxRetries) == (120.0, 0)
    assert build(OpenAISettings, {"maxRetries": 5}).maxRetries == 5
    for doc, where in (({"timeoutSeconds": 120.01}, "timeoutSeconds"), ({"timeoutSeconds": 0}, "timeoutSeconds"),
                       ({"maxRetries": 6}, "maxRetries"), ({"maxRetries": -1}, "maxRetries")):
        assert [p.split(":")[0] for p in problems(OpenAISettings, doc)] == [where]


def test_every_problem_is_reported_not_only_the_first():
    doc = edited(edited(edited(RUNBOOK, "surprise", 1), "approvals.ttlHours", -1), "minimalCohort.maxRules", "1")
    found = problems(Runbook, doc)
    assert [p.split(":")[0] for p in found] == ["surprise", "minimalCohort.maxRules", "approvals.ttlHours"]
    assert str(Invalid(found)) == "; ".join(found)


@pytest.mark.parametrize("edit,expected", [
    (("operators.0.id", "On Call!"), "operators.0.id: 'On Call!' must match"),
    (("operators.0.id", "x" * 65), "operators.0.id:"),
    (("operators.0.name", ""), "operators.0.name: must not be empty"),
    (("operators.0.roles", []), "operators.0.roles: needs at least 1 item"),
    (("operators.0.roles", ["superuser"]), "operators.0.roles.0: must be one of 'engineering-owner', 'on-call', "
                                            "'approver', not 'superuser'"),
    (("operators.0.keys", ["ssh-ed25519 not-base64"]), "operators.0.keys.0: not a usable OpenSSH public key"),
    (("operators.1.id", "owner"), "operators: operator id 'owner' is listed twice"),
    (("operators", {}), "operators: must be a list, not a mapping"),
    (("operators.0.name", 7), "operators.0.name: must be a string, not a number"),
])
def test_a_roster_that_breaks_a_rule_is_refused(edit, expected):
    found = problems(Roster, edited(ROSTER, *edit))
    assert any(p.startswith(expected) for p in found), found


def test_the_accepted_roster_is_none_when_it_no_longer_reads():
    from slotgen_ops.policy.pins import accepted_roster

    assert accepted_roster({"policy": {"roster": ROSTER}}).get("owner").roles == ("engineering-owner",)
    assert accepted_roster({"policy": {"roster": edited(ROSTER, "operators.0.roles", ["root"])}}) is None
    assert accepted_roster({"policy": {}}) is None


@pytest.mark.parametrize("edit,expected", [
    (("version", 2), "version: must be one of 1"),
    (("identity", "trusted"), "identity: must be one of 'signed', 'declared'"),
    (("state", "mysql://db"), "state: must be 'files' or a postgresql:// URL"),
    (("state", "postgresql://u:secret@db/x"), "state: must not hold a password"),
    (("environments", {}), "environments: at least one environment is required"),
    (("environments", {"Prod Env": {}}), "environments: environment name 'Prod Env' must match"),
    (("environments.staging.openai.model", None), "environments.staging.openai.model: must be a string, not null"),
    (("environments.staging.openai.retries", 2), "environments.staging.openai.retries: unknown key"),
    (("decisionRecordPattern", "(["), "decisionRecordPattern: not a regular expression"),
])
def test_a_workspace_config_that_breaks_a_rule_is_refused(edit, expected):
    doc = copy.deepcopy(CONFIG)
    doc["environments"]["staging"] = {"openai": {}}
    found = problems(WorkspaceConfig, edited(doc, *edit))
    assert any(p.startswith(expected) for p in found), found


def test_a_document_that_is_not_a_mapping_is_refused_at_the_top():
    assert problems(WorkspaceConfig, ["a"]) == ["(top): must be a mapping, not a list"]
    assert problems(WorkspaceConfig, {}) == ["environments: required"]


# -- the readers one by one (built here, so that each is checked as it is constructed too) ---------------------

def read(reader, value, loc="f"):
    """(value read or None, problems)."""
    from slotgen_ops.policy import fields

    problems: list[str] = []
    out = reader(value, loc, problems)
    return (None if out is fields._FAILED else out), problems


def test_text_bounds_and_patterns():
    from slotgen_ops.policy.fields import Text

    assert read(Text(min_length=1), "x") == ("x", [])
    assert read(Text(min_length=1), "") == (None, ["f: must not be empty"])
    assert read(Text(), "") == ("", [])
    assert read(Text(pattern=r"[a-z]+"), "abc") == ("abc", [])
    assert read(Text(pattern=r"[a-z]+"), "abc1") == (None, ["f: 'abc1' must match [a-z]+"])
    assert read(Text(), 3) == (None, ["f: must be a string, not a number"])


def test_a_yaml_date_or_other_type_is_named_by_its_type():
    import datetime

    from slotgen_ops.policy.fields import Text

    assert read(Text(), datetime.date(2026, 1, 1)) == (None, ["f: must be a string, not date"])
    assert read(Text(), None, loc="") == (None, ["(top): must be a string, not null"])


def test_integer_and_number_say_their_bounds():
    from slotgen_ops.policy.fields import Integer, Number

    assert read(Integer(ge=0, le=5), 6) == (None, ["f: 6 is out of range (at least 0 and at most 5)"])
    assert read(Integer(ge=0, le=5), -1) == (None, ["f: -1 is out of range (at least 0 and at most 5)"])
    assert read(Integer(ge=0, le=5), 0) == (0, []) and read(Integer(ge=0, le=5), 5) == (5, [])
    assert read(Integer(le=5), 6) == (None, ["f: 6 is out of range (at most 5)"])
    assert read(Integer(le=5), -10**9) == (-10**9, [])
    assert read(Integer(ge=1), 0) == (None, ["f: 0 is out of range (at least 1)"])
    assert read(Integer(), 10**12) == (10**12, [])
    assert read(Number(gt=0, le=2), 2) == (2.0, []) and read(Number(gt=0, le=2), 1e-9) == (1e-9, [])
    assert read(Number(gt=0, le=2), 0) == (None, ["f: 0 is out of range (more than 0 and at most 2)"])
    assert read(Number(gt=0), 2.5) == (2.5, []) and read(Number(le=1), -3) == (-3.0, [])
    assert read(Number(le=1), 1.5) == (None, ["f: 1.5 is out of range (at most 1)"])
    assert read(Number(), True) == (None, ["f: must be a number, not a boolean"])


def test_one_of_compares_type_and_value_and_shows_null():
    from slotgen_ops.policy.fields import OneOf

    assert read(OneOf(1, None), 1) == (1, []) and read(OneOf(1, None), None) == (None, [])
    assert read(OneOf(1, None), True) == (None, ["f: must be one of 1, null, not True"])
    assert read(OneOf("a", "b"), "c") == (None, ["f: must be one of 'a', 'b', not 'c'"])


def test_items_and_optional():
    from slotgen_ops.policy.fields import Integer, Items, Optional

    assert read(Items(Integer(), min_length=2), [1]) == (None, ["f: needs at least 2 items"])
    assert read(Items(Integer(), min_length=1), []) == (None, ["f: needs at least 1 item"])
    assert read(Items(Integer(), min_length=2), [1, 2]) == ((1, 2), [])
    assert read(Items(Integer()), []) == ((), []), "an empty list is fine unless a minimum is asked"
    assert read(Items(Integer()), [1, "2", 3, "4"]) == (None, ["f.1: must be a whole number, not a string",
                                                              "f.3: must be a whole number, not a string"])
    assert read(Optional(Integer()), None) == (None, []) and read(Optional(Integer()), 7) == (7, [])
    assert read(Optional(Integer()), "7") == (None, ["f: must be a whole number, not a string"])


def test_mapping_keys_values_and_where():
    from slotgen_ops.policy.fields import Checked, Integer, Mapping, OneOf

    assert read(Mapping(Integer()), {"a": 1}) == ({"a": 1}, [])
    assert read(Mapping(Integer()), {"a": "x"}, loc="") == (None, ["a: must be a whole number, not a string"])
    assert read(Mapping(Integer()), [1]) == (None, ["f: must be a mapping, not a list"])
    assert read(Mapping(Integer(), keys=OneOf("a")), {"b": 1}) == (None, ["f.b: must be one of 'a', not 'b'"])
    checked = []
    reader = Checked(Mapping(Integer(), keys=OneOf("a")), lambda v: checked.append(v) or v)
    assert read(reader, {"a": 1, "b": 2})[0] is None and checked == [], "a check never sees a value that failed"
    assert read(reader, {"a": 1}) == ({"a": 1}, []) and checked == [{"a": 1}]


def test_checked_keeps_what_the_check_returns_and_reports_its_reason():
    from slotgen_ops.policy.fields import Checked, Text

    def upper(value):
        if value == "no":
            raise ValueError("not that one")
        return value.upper()

    assert read(Checked(Text(), upper), "yes") == ("YES", [])
    assert read(Checked(Text(), upper), "no") == (None, ["f: not that one"])


def test_a_nested_model_reads_into_its_class():
    from slotgen_ops.policy.fields import Model
    from slotgen_ops.runbook.runbook import ApprovalSettings

    assert read(Model(ApprovalSettings), {"ttlHours": 2}) == (ApprovalSettings(ttlHours=2.0), [])
    assert read(Model(ApprovalSettings), {"ttlHours": 2, "x": 1}) == (None, ["f.x: unknown key"])


def test_an_environment_name_with_a_trailing_newline_is_not_a_name():
    # "$" matches before a final newline: "prod\n" would pass and reach the controls file's header line.
    from slotgen_ops.policy.paths import ENV_NAME_RE
    from slotgen_ops.store.pgfast import _ENV_RE

    for rx in (ENV_NAME_RE, _ENV_RE):
        assert rx.match("prod") and not rx.match("prod\n")
