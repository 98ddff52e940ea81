"""A stateful model of the runbook over the DOMAIN layer (no files).

state.apply + runbook.judge + authority.{require_role, check_decision_record,
check_approval, approval_record}, driven the way changes.py drives them: a
change is judged, its roles, decision record and approval are checked, then it
is verified *before* it is committed: a passing change is recorded as one
entry carrying its verification; a failing one records the verification and a
rollback, and the change is never applied; a refusal is recorded and changes
nothing. Steps down (SPEC section 6) and re-entry after a rollback (which
needs an approval for SLOTGEN_AI_KILL=false) are part of the model. The audit log is a list of
entries carrying seq, prevHash, hash and the state after them; time is a
simulated clock that only moves forward.

After every step the safety invariants of SPEC section 2 and 3 must hold.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from helpers_runbook import APPROVED_ALLOWLIST, T0, UNAPPROVED_ALLOWLIST, MemoryLog, base_fields, shipped_runbook, summary
from slotgen_ops.contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR, kill_switch_engaged
from slotgen_ops.errors import BadInput, Refused
from slotgen_ops.policy.authority import (
    APPROVER_ROLE,
    CHANGE_ROLES,
    approval_record,
    check_approval,
    check_decision_record,
    require_role,
    resolve_actor,
)
from slotgen_ops.clock import parse_utc
from slotgen_ops.runbook.judge import REDUCE, judge, needs_approval, next_step, normalise_value
from slotgen_ops.audit.review import GENESIS_HASH
from slotgen_ops.audit.canonical import entry_hash
from slotgen_ops.runbook.state import APPROVE, INIT, REFUSED, ROLLBACK, SAFE_CONTROLS, SET, VERIFY, apply, replay
from slotgen_ops.policy.config import DEFAULT_DR_PATTERN, Roster

RUNBOOK = shipped_runbook()
LADDER = RUNBOOK.ladder

ROSTER = Roster.from_doc({"operators": [
    {"id": "owner", "name": "Owner", "roles": ["engineering-owner"]},
    {"id": "oncall", "name": "On-call", "roles": ["on-call"]},
    {"id": "approver", "name": "Approver", "roles": ["approver"]},
    {"id": "boss", "name": "Owner and approver", "roles": ["engineering-owner", "approver"]},
]})
OPERATORS = st.sampled_from(["owner", "oncall", "approver", "boss", "mallory"])
DECISION_RECORDS = st.sampled_from(["DR-7", "DR-7", "DR-8", None, "DR-0"])  # None: missing; DR-0: malformed
CHANGES = st.sampled_from([
    (KILL_VAR, "true"), (KILL_VAR, "false"), (KILL_VAR, " FALSE "), (KILL_VAR, "yes"), (KILL_VAR, "1"),
    (FEATURE_VAR, "true"), (FEATURE_VAR, "false"),
    (ROLLOUT_VAR, "0"), (ROLLOUT_VAR, "1"), (ROLLOUT_VAR, "5"), (ROLLOUT_VAR, "100"), (ROLLOUT_VAR, "3"),
    (ROLLOUT_VAR, "abc"),
    (ALLOWLIST_VAR, APPROVED_ALLOWLIST), (ALLOWLIST_VAR, UNAPPROVED_ALLOWLIST), (ALLOWLIST_VAR, ""),
])
PASSES = st.sampled_from([True, True, True, False])
ADVANCE = st.sampled_from([timedelta(seconds=1), timedelta(minutes=5), timedelta(minutes=29),
                           timedelta(minutes=31), timedelta(hours=2), timedelta(hours=25)])

# What the runs reached, to check the model explores the interesting states.
REACHED: dict[str, Counter] = {"staging": Counter(), "production": Counter()}


class RunbookModel(RuleBasedStateMachine):
    ENV = "staging"

    def __init__(self) -> None:
        super().__init__()
        self.log = MemoryLog(self.ENV)
        self.clock = T0
        self.issued: list[str] = []
        self.shadow: dict[str, str | None] = dict(SAFE_CONTROLS)  # the controls as the model applied them
        self.applied_sets = 0
        self.applied_rollbacks = 0

    # -- plumbing ----------------------------------------------------------------------

    def tick(self):
        self.clock += timedelta(milliseconds=1)
        return self.clock

    @property
    def state(self) -> dict[str, Any]:
        return self.log.state

    def record(self, operator: str | None, **fields: Any) -> dict[str, Any]:
        actor = resolve_actor(ROSTER, operator, identity="declared")
        return self.log.append(base_fields(self.ENV, self.tick(), operator=actor.claimed, roles=actor.roles,
                                           **fields))

    def refuse(self, operator: str | None, exc: Refused, control=None, value=None, dr=None, approval=None) -> None:
        before = dict(self.state["controls"])
        entry = self.record(operator, action=REFUSED, control=control, new=value, decisionRecord=dr,
                            reason=exc.message, approvalId=approval, details={"refusal": exc.message})
        assert entry["state"]["controls"] == before
        REACHED[self.ENV]["refused"] += 1

    def do_rollback_entry(self, operator: str, reason: str, dr: str | None, trigger: str) -> None:
        old = self.state["controls"][KILL_VAR]
        self.record(operator, action=ROLLBACK, control=KILL_VAR, old=old, new="true", decisionRecord=dr,
                    reason=reason, details={"trigger": trigger})
        self.shadow[KILL_VAR] = "true"
        self.applied_rollbacks += 1

    # -- actions, as changes.py takes them ---------------------------------------------------

    def attempt_set(self, operator: str, control: str, raw: str, dr: str | None, approval: str | None,
                    passed: bool) -> None:
        try:
            value = normalise_value(control, raw)
        except BadInput:
            return  # bad input: not recorded
        now = self.clock
        state = self.state
        try:
            actor = resolve_actor(ROSTER, operator, identity="declared")
            require_role(actor, CHANGE_ROLES, "change runbook controls")
            ref = check_decision_record(dr, DEFAULT_DR_PATTERN)
            verdict = judge(state, RUNBOOK, self.ENV, control, value, now)
            if not verdict.allowed:
                raise Refused(f"{verdict.kind}: {verdict.refusal}")
            step = verdict.step
            if control == ALLOWLIST_VAR and step.id != REDUCE and value != APPROVED_ALLOWLIST:
                raise Refused(f"{value!r} is not an approved allowlist")
            if needs_approval(step, state):
                check_approval(state["approvals"], approval, self.ENV, control, value, ref, operator, now,
                               old=state["controls"][control])
        except BadInput:
            return  # a malformed decision record: not recorded
        except Refused as exc:
            self.refuse(operator, exc, control, value, dr, approval)
            return
        nxt = next_step(state, RUNBOOK)
        if step.id == REDUCE:
            REACHED[self.ENV]["reduce-exposure"] += 1
        else:  # Allowed: it is exactly the next step, with its value.
            assert step.id == nxt.id and step.control == control
            if nxt.value is not None:
                assert value == nxt.value
        old = state["controls"][control]
        if not passed:  # verified before the commit: the change is never applied
            self.record(operator, action=VERIFY, verification=summary(False), decisionRecord=ref,
                        details={"trigger": "before-change", "proposed": {"control": control, "old": old,
                                                                          "new": value}})
            self.do_rollback_entry(operator, reason="automatic: verification failed", dr=ref,
                                   trigger="verification-failed")
            assert [e["action"] for e in self.log.entries[-2:]] == [VERIFY, ROLLBACK]
            REACHED[self.ENV]["auto-rollback"] += 1
            return
        reentry = step.id == "kill-switch-off" and state.get("rolledBack")
        self.record(operator, action=SET, control=control, old=old, new=value, decisionRecord=ref,
                    step=step.id, approvalId=approval if needs_approval(step, state) else None,
                    verification=summary(True))
        self.shadow[control] = value
        self.applied_sets += 1
        REACHED[self.ENV][step.id] += 1
        if reentry:
            REACHED[self.ENV]["re-entry"] += 1

    def attempt_approve(self, operator: str, value: str, dr: str | None, control: str = ROLLOUT_VAR) -> str | None:
        try:
            actor = resolve_actor(ROSTER, operator, identity="declared")
            require_role(actor, (APPROVER_ROLE,), "approve changes")
            ref = check_decision_record(dr, DEFAULT_DR_PATTERN)
            if control == ROLLOUT_VAR and int(value) not in LADDER:
                raise Refused(f"{ROLLOUT_VAR}={value} is not a rung of the ladder")
        except BadInput:
            return None
        except Refused as exc:
            self.refuse(operator, exc, control, value, dr)
            return None
        approval_id = f"apv-{len(self.issued):010x}"
        record = approval_record(self.ENV, control, value, ref, operator, RUNBOOK.approvals.ttlHours, self.clock,
                                 old=self.state["controls"][control])
        self.record(operator, action=APPROVE, control=control, old=self.state["controls"][control],
                    new=value, decisionRecord=ref, approvalId=approval_id, details={"approval": record})
        self.issued.append(approval_id)
        return approval_id

    def attempt_verify(self, operator: str, dr: str | None, passed: bool) -> None:
        try:
            actor = resolve_actor(ROSTER, operator, identity="declared")
            require_role(actor, CHANGE_ROLES, "record a verification")
            ref = check_decision_record(dr, DEFAULT_DR_PATTERN)
        except BadInput:
            return
        except Refused as exc:
            self.refuse(operator, exc, dr=dr)
            return
        at_step = next_step(self.state, RUNBOOK).id == "verify"
        entry = self.record(operator, action=VERIFY, verification=summary(passed), decisionRecord=ref,
                            step="verify" if at_step else None, details={"trigger": "operator"})
        if at_step and passed:
            REACHED[self.ENV]["verify"] += 1
        if not passed:
            self.do_rollback_entry(operator, reason="automatic: verification failed", dr=ref,
                                   trigger="verification-failed")
            assert self.log.entries[-2] is entry
            REACHED[self.ENV]["auto-rollback"] += 1

    # -- rules ----------------------------------------------------------------------------------

    @initialize()
    def init(self) -> None:
        self.log.append(base_fields(self.ENV, self.tick(), operator="owner", roles=["engineering-owner"],
                                    action=INIT, new=dict(SAFE_CONTROLS)))

    @rule(operator=OPERATORS, change=CHANGES, dr=DECISION_RECORDS, pick=st.integers(-2, 30), passed=PASSES)
    def random_change(self, operator, change, dr, pick, passed):
        if pick == -2:
            approval = None
        elif pick == -1 or not self.issued:
            approval = "apv-ffffffffff"  # never issued
        else:
            approval = self.issued[pick % len(self.issued)]  # possibly used, expired or for another change
        control, raw = change
        self.attempt_set(operator, control, raw, dr, approval, passed)

    @rule(operator=OPERATORS, value=st.sampled_from(["0", "1", "5", "100"]), dr=DECISION_RECORDS)
    def random_approval(self, operator, value, dr):
        self.attempt_approve(operator, value, dr)

    @rule(operator=OPERATORS, dr=DECISION_RECORDS, passed=PASSES)
    def random_verify(self, operator, dr, passed):
        self.attempt_verify(operator, dr, passed)

    @rule(operator=OPERATORS, dr=st.sampled_from([None, "DR-9", "DR-0"]), verify=st.sampled_from([None, True, False]))
    def explicit_rollback(self, operator, dr, verify):
        try:
            require_role(resolve_actor(ROSTER, operator, identity="declared"), CHANGE_ROLES, "roll back")
            ref = check_decision_record(dr, DEFAULT_DR_PATTERN, required=False)
        except BadInput:
            return
        except Refused as exc:
            self.refuse(operator, exc, KILL_VAR, "true", dr)
            return
        was_live = not kill_switch_engaged(self.state["controls"][KILL_VAR])
        self.do_rollback_entry(operator, reason="operator rollback", dr=ref, trigger="operator")
        assert kill_switch_engaged(self.state["controls"][KILL_VAR])
        if was_live:
            REACHED[self.ENV]["rollback-from-live"] += 1
        if verify is not None:  # the verification after a rollback reports; it rolls nothing back
            self.record(operator, action=VERIFY, verification=summary(verify), details={"trigger": "after-rollback"})

    @rule(operator=OPERATORS, value=st.sampled_from(["1", "5"]), passed=PASSES)
    def rollout_with_a_fresh_approval(self, operator, value, passed):
        """A valid approval for a rung, used at once: only the runbook itself stands in the way."""
        approval = self.attempt_approve("approver", value, "DR-8")
        self.attempt_set(operator, ROLLOUT_VAR, value, "DR-8", approval, passed)

    @rule(operator=st.sampled_from(["owner", "oncall"]), which=st.sampled_from([ROLLOUT_VAR, FEATURE_VAR, ALLOWLIST_VAR]),
          passed=PASSES)
    def step_down(self, operator, which, passed):
        """Reduce exposure (SPEC section 6): one rung down, or with the kill-switch engaged the flag or allowlist off."""
        current = self.state["controls"]
        if which == ROLLOUT_VAR:
            lower = [r for r in LADDER if r < int(current[ROLLOUT_VAR])]
            value = str(lower[-1]) if lower else "0"
        else:
            value = "false" if which == FEATURE_VAR else ""
        self.attempt_set(operator, which, value, "DR-9", None, passed)

    @rule(delta=ADVANCE)
    def advance_clock(self, delta):
        self.clock += delta

    def _follow(self, passed: bool, operator: str) -> None:
        nxt = next_step(self.state, RUNBOOK)
        if nxt.step is None:
            REACHED[self.ENV]["live-top"] += 1
            return
        if nxt.id == "verify":
            self.attempt_verify(operator, "DR-7", passed)
            return
        value = APPROVED_ALLOWLIST if nxt.step.control == ALLOWLIST_VAR else nxt.value
        approval = None
        if needs_approval(nxt.step, self.state):
            approval = self.attempt_approve("approver", value, "DR-7", control=nxt.step.control)
        self.attempt_set(operator, nxt.step.control, value, "DR-7", approval, passed)

    @rule(passed=PASSES, operator=st.sampled_from(["owner", "oncall", "boss"]))
    def follow_runbook(self, passed, operator):
        self._follow(passed, operator)

    @rule(passed=PASSES, operator=st.sampled_from(["owner", "oncall"]))
    def follow_runbook_again(self, passed, operator):
        self._follow(passed, operator)

    # -- invariants -------------------------------------------------------------------------
    #
    # Per-entry checks run once per new entry (incrementally, so a run stays fast); the
    # whole-log checks (full replay, verify_lines over the canonical lines) run at teardown.

    @invariant()
    def exposure_within_the_rung(self) -> None:
        controls = self.state["controls"]
        rollout = int(controls[ROLLOUT_VAR])
        assert controls[ROLLOUT_VAR] == str(rollout)
        assert rollout == 0 or rollout in LADDER
        live = not kill_switch_engaged(controls[KILL_VAR])
        if live:
            assert rollout != 0, "rollout 0 with the kill-switch off admits everyone"
            assert controls[FEATURE_VAR] == "true"
            assert controls[ALLOWLIST_VAR] == APPROVED_ALLOWLIST
            REACHED[self.ENV][f"live-{rollout}"] += 1
            # The kill-switch is off because of a runbook step, not anything else.
            last = max(i for i, e in enumerate(self.log.entries)
                       if e["action"] in (SET, ROLLBACK) and e["control"] == KILL_VAR)
            assert self.log.entries[last]["action"] == SET and self.log.entries[last]["step"] == "kill-switch-off"

    @invariant()
    def every_applied_change_is_recorded(self) -> None:
        assert self.state["controls"] == self.shadow

    @invariant()
    def new_entries_keep_every_rule(self) -> None:
        if not hasattr(self, "_scan"):
            self._scan = {"pos": 0, "prev_hash": GENESIS_HASH, "replayed": None, "last_change_ts": None,
                          "verified": False, "issued": {}, "used": set(), "sets": 0, "rollbacks": 0,
                          "rolled_back": False}
        scan = self._scan
        soak = timedelta(minutes=RUNBOOK.soak_minutes(self.ENV))
        entries = self.log.entries
        for pos in range(scan["pos"], len(entries)):
            entry = entries[pos]
            action = entry["action"]
            # The hash chain, and time strictly forward.
            assert entry["seq"] == pos + 1 and entry["prevHash"] == scan["prev_hash"]
            assert entry_hash(entry) == entry["hash"]
            if pos:
                assert entries[pos - 1]["ts"] < entry["ts"]
            if action == SET:  # every applied change was verified before it was committed
                assert entry["verification"]["passed"] is True and entry["state"]["verificationPassing"] is True
            # The recorded state is what the action yields from the previous one (replay).
            bare = {k: v for k, v in entry.items() if k not in ("state", "hash")}
            scan["replayed"] = apply(scan["replayed"], bare)
            assert entry["state"] == scan["replayed"]
            if action == REFUSED:
                assert entry["state"]["controls"] == entries[pos - 1]["state"]["controls"]
            if action == APPROVE:
                assert APPROVER_ROLE in entry["roles"]
                scan["issued"][entry["approvalId"]] = entry["details"]["approval"]
            if action == SET:
                scan["sets"] += 1
                assert entry["step"] is not None and entry["decisionRecord"] is not None
                assert set(entry["roles"]) & set(CHANGE_ROLES)
                if entry["control"] == KILL_VAR and entry["new"] == "false":
                    assert scan["verified"], f"kill-switch off at seq {entry['seq']} without a passing step 5"
                    if scan["rolled_back"]:
                        assert entry["approvalId"], "kill-switch off again after a rollback without an approval"
                if entry["control"] == ROLLOUT_VAR:
                    old, new = int(entry["old"]), int(entry["new"])
                    if new > old:
                        assert new == min(r for r in LADDER if r > old), "one rung at a time"
                        assert entry["approvalId"], "a rollout increase without an approval"
                    else:
                        assert entry["step"] == REDUCE and new == max(r for r in LADDER if r < old), "one rung down"
                if entry["step"] == REDUCE and entry["control"] != ROLLOUT_VAR:
                    assert entries[pos - 1]["state"]["controls"][KILL_VAR] == "true", "turned off while live"
                if entry["step"] == "rollout-progression":
                    # judged at `now`, recorded 1 ms later
                    assert parse_utc(entry["ts"]) - timedelta(milliseconds=1) >= scan["last_change_ts"] + soak
                aid = entry["approvalId"]
                if aid:
                    assert aid not in scan["used"], f"approval {aid} used twice"
                    scan["used"].add(aid)
                    record = scan["issued"][aid]
                    assert record["old"] == entry["old"], "an approval used from another old value"
                    assert (record["env"], record["control"], record["value"], record["decisionRecord"]) == (
                        self.ENV, entry["control"], entry["new"], entry["decisionRecord"])
                    assert record["approver"] != entry["operator"], "an approver used their own approval"
                    assert record["expiresAt"] > entries[pos - 1]["ts"], "an expired approval was used"
            if action == ROLLBACK:
                scan["rolled_back"] = True
                scan["rollbacks"] += 1
                assert entry["state"]["controls"][KILL_VAR] == "true"
            # Running facts for the next entries.
            if action == SET and entry["control"] == KILL_VAR and entry["new"] == "false":
                scan["rolled_back"] = False
            if action in (INIT, SET, ROLLBACK):
                scan["last_change_ts"] = parse_utc(entry["ts"])
                scan["verified"] = False
            if action == VERIFY and entry["step"] == "verify" and entry["verification"]["passed"]:
                scan["verified"] = True
            scan["prev_hash"] = entry["hash"]
        scan["pos"] = len(entries)
        assert scan["sets"] == self.applied_sets and scan["rollbacks"] == self.applied_rollbacks
        assert not scan["used"] & set(self.state["approvals"]), "a used approval is still usable"
        for record in self.state["approvals"].values():
            assert record["expiresAt"] > entries[-1]["ts"]

    def teardown(self) -> None:
        if not self.log.entries:
            return
        self.new_entries_keep_every_rule()
        bare = [{k: v for k, v in e.items() if k not in ("state", "hash")} for e in self.log.entries]
        assert replay(bare) == self.state
        assert self.log.chain_ok()


class ProductionModel(RunbookModel):
    ENV = "production"


SETTINGS = settings(max_examples=75, stateful_step_count=35, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

TestStagingRunbook = RunbookModel.TestCase
TestStagingRunbook.settings = SETTINGS
TestProductionRunbook = ProductionModel.TestCase
TestProductionRunbook.settings = SETTINGS


@pytest.mark.parametrize(("model", "env"), [(RunbookModel, "staging"), (ProductionModel, "production")])
def test_the_model_reaches_the_interesting_states(model, env):
    """The exploration is not vacuous: the walk reaches Beta live at the top and rolls back."""
    REACHED[env].clear()
    run_state_machine_as_test(model, settings=settings(SETTINGS, max_examples=80, derandomize=True))
    reached = REACHED[env]
    for key in ("kill-switch-off", "rollout-progression", "live-top", "auto-rollback", "rollback-from-live",
                "refused", "verify", "reduce-exposure", "re-entry"):
        assert reached[key] > 0, (key, dict(reached))
