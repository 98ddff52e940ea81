"""One constructor for audit entries (`changes.entries`): the field list lives there once, and each form of entry
has exactly the fields, and so the canonical bytes, it has always had (the hash covers every field: an entry
that never had a field must not gain one, or old logs, journals and checkpoints stop agreeing with new ones)."""

from __future__ import annotations

import pytest

from slotgen_ops.audit.canonical import canonical_bytes
from slotgen_ops.audit.review import AUDIT_FIELDS as REVIEW_COLUMNS
from slotgen_ops.contract import KILL_VAR
from slotgen_ops.changes import entries
from slotgen_ops.policy.authority import Actor
from slotgen_ops.changes.entries import journal_entry, new_entry, stateless_repair_fields
from slotgen_ops.runbook.state import INIT, REFUSED, ROLLBACK, SAFE_CONTROLS, SET, apply

from helpers_runbook import T0

TS = "2030-01-01T12:00:00.000000Z"
ACTOR = Actor(claimed="oncall", operator=None, identity="unidentified")
POLICY = {"digest": "d" * 64, "files": {}, "roster": None, "identity": "signed"}


def _state():
    return apply(None, {"action": INIT, "new": dict(SAFE_CONTROLS), "details": {"policy": POLICY}, "ts": TS})


def test_the_review_columns_are_the_constructors_field_list():
    assert REVIEW_COLUMNS == entries.AUDIT_FIELDS
    assert set(entries.AUDIT_FIELDS) | set(entries.CONTEXT_FIELDS) == entries.ENTRY_FIELDS
    assert len(entries.ENTRY_FIELDS) == len(entries.AUDIT_FIELDS) + len(entries.CONTEXT_FIELDS)


def test_a_log_entry_has_every_field_null_unless_given(monkeypatch):
    monkeypatch.setattr(entries, "now_utc", lambda: T0)
    entry = new_entry("staging", ACTOR, _state(), action=SET, control=KILL_VAR, old="true", new="false")
    assert set(entry) == {"env", "operator", "roles", "actor", "action", "control", "old", "new", "decisionRecord",
                          "reason", "step", "verification", "approvalId", "details", "policy", "ts", "state"}
    assert set(entry) == entries.ENTRY_FIELDS - set(entries.LOG_FIELDS)
    assert (entry["policy"], entry["ts"]) == ("d" * 64, TS)
    assert entry["state"]["controls"][KILL_VAR] == "false" and entry["state"]["lastChangeAt"] == TS


def _old_new_entry(env_name, actor, state, **fields):
    """The constructor as it was written before the field list moved into one place (the reference bytes)."""
    base = {
        "env": env_name, **actor.audit_fields(), "control": None, "old": None, "new": None,
        "decisionRecord": None, "reason": None, "step": None, "verification": None, "approvalId": None,
        "details": None, "policy": entries.policy_in_force(state), "ts": TS}
    base.update(fields)
    base["state"] = apply(state, base)
    return base


@pytest.mark.parametrize("fields", [
    dict(action=SET, control=KILL_VAR, old="true", new="false", decisionRecord="DR-1", step="kill-switch-off",
         verification={"passed": True}),
    dict(action=REFUSED, control="FEATURE_SLOTGEN_AI", new="true", reason="skipped", details={"refusal": "x"}),
    dict(action=ROLLBACK, control=KILL_VAR, old="false", new="true", reason="r", details={"trigger": "recover"}),
    dict(action="config-accept", policy="e" * 64, approvalId="apv-1", details={"policy": POLICY}),
    dict(action="audit-repair", control=KILL_VAR, old="true", new="true", reason="cut", ts="2031-01-01T00:00:00Z"),
])
def test_log_entries_are_byte_for_byte_what_they_were(monkeypatch, fields):
    monkeypatch.setattr(entries, "now_utc", lambda: T0)
    state = _state()
    assert canonical_bytes(new_entry("staging", ACTOR, state, **fields)) == canonical_bytes(
        _old_new_entry("staging", ACTOR, state, **fields))


def test_a_journal_entry_has_no_policy_state_or_time_as_before():
    fields = journal_entry("staging", ACTOR, action=ROLLBACK, control=KILL_VAR, old="false", new="true",
                           decisionRecord=None, reason="r", details={"breakGlass": True, "problem": "p"})
    before = {"env": "staging", **ACTOR.audit_fields(), "action": ROLLBACK, "control": KILL_VAR, "old": "false",
              "new": "true", "decisionRecord": None, "reason": "r", "step": None, "verification": None,
              "approvalId": None, "details": {"breakGlass": True, "problem": "p"}}
    assert canonical_bytes(fields) == canonical_bytes(before)


def test_a_stateless_repair_has_only_the_fields_given_as_before():
    fields = stateless_repair_fields(ACTOR, control=KILL_VAR, old=None, new="true", reason="cut", ts=TS)
    before = {**ACTOR.audit_fields(), "control": KILL_VAR, "old": None, "new": "true", "reason": "cut",
              "state": None, "ts": TS}
    assert canonical_bytes(fields) == canonical_bytes(before)


@pytest.mark.parametrize("name", ["decision_record", "operatorId", "seq", "hash", "prevHash", "signature"])
def test_a_field_that_is_not_an_entrys_is_refused(name):
    with pytest.raises(TypeError, match=name):
        new_entry("staging", ACTOR, _state(), action=SET, **{name: "x"})
    with pytest.raises(TypeError, match=name):
        journal_entry("staging", ACTOR, action=ROLLBACK, **{name: "x"})
    with pytest.raises(TypeError, match=name):
        stateless_repair_fields(ACTOR, **{name: "x"})


def test_no_audit_entry_is_built_by_hand_outside_the_constructor():
    """No dict literal in the product spells an entry (its environment with the act's fields) outside
    changes/entries.py; rows shown to people (status, timeline) name no environment and are not entries."""
    import ast
    from pathlib import Path

    package = Path(entries.__file__).resolve().parents[1]
    skeleton = {"decisionRecord", "reason", "step", "verification", "approvalId"}
    found = []
    for path in package.rglob("*.py"):
        if path.name == "entries.py" and path.parent.name == "ops":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
                if "env" in keys and len(keys & skeleton) >= 2:
                    found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert found == []
