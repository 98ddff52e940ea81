"""What the change service records and returns, field by field (`changes/steps.py`).

`test_changes_service.py` walks the runbook and checks behaviour: which
actions land, what the controls become. These tests pin the rest, because an
approver reads it: the exact fields of each entry (a refusal, an approval, a
recorded verification, an automatic rollback, a superseded verification), the
`Result` the CLI prints as JSON, the preview shown before a change, and the
check after a commit. Each assertion here exists to fail when one field is
dropped, renamed or filled from the wrong place.
"""

from __future__ import annotations

import fcntl
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from helpers_runbook import APPROVED_ALLOWLIST, report, summary
from slotgen_ops.contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR
from slotgen_ops.errors import EXIT_OK, EXIT_VERIFICATION_FAILED, BadInput, IntegrityFailure, Refused
from slotgen_ops.files import hooks, locking
from slotgen_ops.changes.outcomes import Preview, Result
from slotgen_ops.changes.steps import approve, set_control, verify_environment
from slotgen_ops.changes.verifying import verification_summary
from slotgen_ops.policy.samples import decision_digest_for, load_sample_jobs
from slotgen_ops.policy.authority import resolve_actor
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.workspace import Workspace
from walked import accept_policy
from test_changes_service import (
    ENV,
    _hand_edit,
    crash_after_commit,
    wait_until_expired,
    actor,
    controls,
    do_approve,
    do_rollback,
    do_set,
    do_verify,
    entries,
    env_of,
    failing,
    files_of,
    head,
    passing,
    walk_to,
)

STEP5_DONE = 5   # walk_to(ws, 5): kill-switch still on, step 5 (verify) recorded
KILL_OFF = 6     # walk_to(ws, 6): the AI path is on at 1 %


@pytest.fixture(autouse=True)
def _no_ambient_operator(monkeypatch):
    monkeypatch.delenv("SLOTGEN_OPERATOR", raising=False)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(root, resolve_actor(None, "owner"))
    return Workspace(root)


def fields(entry: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: entry[name] for name in names}


RECORDED = ("action", "operator", "control", "old", "new", "decisionRecord", "reason", "step", "approvalId",
            "details", "verification")


class Recording:
    """A verifier (test double) that records the environment name and controls it was shown."""

    def __init__(self, result: dict[str, Any] | None = None, during=None) -> None:
        self.result = result if result is not None else report(True)
        self.during = during
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, env, values):
        self.seen.append((env.name, dict(values)))
        if self.during is not None:
            self.during()
        return self.result


# -- refusals ---------------------------------------------------------------------------------------


def test_a_refused_set_records_the_request_as_given(ws):
    walk_to(ws, 3)
    assert do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").ok
    with pytest.raises(Refused) as info:
        do_set(ws, f"{ROLLOUT_VAR}=1", dr="DR-4", approval="apv-0000000000")
    exc = info.value
    reason = "approval 'apv-0000000000' is unknown, already used or expired"
    assert exc.next_step.startswith("step 4 (rollout-canary): slotgen approve --env staging")
    assert exc.message == f"{reason}; next allowed step: {exc.next_step}"
    entry = head(ws)
    assert exc.audit_seq == entry["seq"]
    assert fields(entry, *RECORDED) == {
        "action": "refused", "operator": "owner", "control": ROLLOUT_VAR, "old": None, "new": "1",
        "decisionRecord": "DR-4", "reason": reason, "step": None, "approvalId": "apv-0000000000",
        "details": {"command": "set", "items": [f"{ROLLOUT_VAR}=1"], "refusal": reason}, "verification": None}


def test_a_refused_approval_records_the_command_and_decision_record(ws):
    with pytest.raises(Refused) as info:
        do_approve(ws, f"{KILL_VAR}=true", dr="DR-8")
    reason = f"{KILL_VAR}=true needs no approval (engaging the kill-switch: 'slotgen rollback')"
    assert info.value.message.startswith(reason + "; next allowed step: ")
    assert fields(head(ws), "action", "operator", "control", "new", "decisionRecord", "reason", "approvalId",
                  "details") == {
        "action": "refused", "operator": "approver", "control": KILL_VAR, "new": "true", "decisionRecord": "DR-8",
        "reason": reason, "approvalId": None,
        "details": {"command": "approve", "items": [f"{KILL_VAR}=true"], "refusal": reason}}
    with pytest.raises(Refused) as info:
        do_approve(ws, f"{FEATURE_VAR}=true")
    assert info.value.message.startswith(f"only rollout increases and re-enabling after a rollback need approvals; "
                                         f"{FEATURE_VAR} changes need none; next allowed step: ")


@pytest.mark.parametrize(("call", "example"), [
    (lambda ws: do_set(ws, None, items=[]), "set needs one KEY=VALUE, e.g. FEATURE_SLOTGEN_AI=true"),
    (lambda ws: do_approve(ws, None, items=[]), "approve needs one KEY=VALUE, e.g. SLOTGEN_AI_ROLLOUT_PERCENT=1"),
])
def test_no_item_is_bad_input_naming_the_command(ws, call, example):
    before = files_of(ws)
    with pytest.raises(BadInput) as info:
        call(ws)
    assert info.value.message == example
    assert files_of(ws) == before


@pytest.mark.parametrize("command", ["set", "approve"])
def test_not_confirmed_is_refused_and_recorded(ws, command):
    walk_to(ws, 3)
    item = f"{ROLLOUT_VAR}=1"
    if command == "set":  # a rollout increase needs an approval to get as far as the confirmation
        apv = do_approve(ws, item, dr="DR-4").approval_id
        call = lambda: set_control(env_of(ws), [item], actor=actor(ws, "oncall"), decision_record="DR-4",  # noqa: E731
                                   approval_id=apv, expect=None, dry_run=False, confirm=lambda p: False,
                                   verifier=passing)
        what = "a change"
    else:
        call = lambda: approve(env_of(ws), [item], actor=actor(ws, "approver"), decision_record="DR-4",  # noqa: E731
                               dry_run=False, confirm=lambda p: False)
        what = "an approval"
    with pytest.raises(Refused) as info:
        call()
    reason = f"not confirmed: with no terminal {what} needs --yes"
    assert info.value.message.startswith(reason + "; next allowed step: ")
    entry = head(ws)
    assert info.value.audit_seq == entry["seq"]
    assert fields(entry, "action", "control", "new", "decisionRecord", "reason", "details") == {
        "action": "refused", "control": ROLLOUT_VAR, "new": "1", "decisionRecord": "DR-4", "reason": reason,
        "details": {"command": command, "items": [item], "refusal": reason}}
    assert controls(ws)[ROLLOUT_VAR] == "0"


def test_a_refusal_waiting_for_the_lock_says_what_it_waits_to_do(ws):
    """The notice an operator sees while another writer holds the lock names the refusal being recorded."""
    notices: list[str] = []
    held: list[int] = []

    def take_the_lock(preview) -> bool:  # another writer gets the lock just as the operator declines
        fd = os.open(ws.environments_dir, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
        return False

    def notice(message: str) -> None:
        notices.append(message)
        while held:
            os.close(held.pop())  # the other writer finishes

    locking.set_wait_notice(notice)
    try:
        with pytest.raises(Refused):
            set_control(env_of(ws), [f"{KILL_VAR}=true"], actor=actor(ws, "owner"), decision_record="DR-1",
                        approval_id=None, expect=None, dry_run=False, confirm=take_the_lock, verifier=passing)
    finally:
        locking.set_wait_notice(None)
        while held:
            os.close(held.pop())
    assert any("(recording a refusal): held by" in n for n in notices), notices
    assert head(ws)["action"] == "refused"


# -- approvals --------------------------------------------------------------------------------------


def test_an_approval_records_what_it_is_bound_to(ws):
    walk_to(ws, 3)
    approver = actor(ws, "approver")
    before = datetime.now(timezone.utc)
    result = do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4")
    after = datetime.now(timezone.utc)
    entry = head(ws)
    record = entry["details"]["approval"]
    expires = datetime.fromisoformat(record["expiresAt"].replace("Z", "+00:00"))
    assert before + timedelta(hours=24) <= expires <= after + timedelta(hours=24)
    assert record == {"approver": "approver", "approverKey": approver.fingerprint, "control": ROLLOUT_VAR,
                      "decisionRecord": "DR-4", "env": ENV, "expiresAt": record["expiresAt"], "old": "0",
                      "value": "1"}
    assert approver.fingerprint and approver.fingerprint.startswith("SHA256:")
    assert fields(entry, "action", "operator", "control", "old", "new", "decisionRecord", "approvalId") == {
        "action": "approve", "operator": "approver", "control": ROLLOUT_VAR, "old": "0", "new": "1",
        "decisionRecord": "DR-4", "approvalId": result.approval_id}
    assert result == Result(ok=True, step=None, change={"control": ROLLOUT_VAR, "old": "0", "new": "1"},
                            audit_seq=entry["seq"], approval_id=result.approval_id, warnings=[],
                            message=f"approval {result.approval_id} recorded; expires {record['expiresAt']}",
                            extra={"expiresAt": record["expiresAt"]})
    assert result.approval_id.startswith("apv-")


def test_a_dry_run_approval_says_what_it_would_record(ws):
    walk_to(ws, 3)
    result = do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4", dry_run=True)
    expires = result.message.split("expiring ")[1].split(";")[0]
    assert result == Result(ok=True, step=None, change={"control": ROLLOUT_VAR, "old": "0", "new": "1"},
                            dry_run=True, warnings=[],
                            message=f"dry-run: would record an approval for {ROLLOUT_VAR}=1 under DR-4, "
                                    f"expiring {expires}; nothing written")
    datetime.fromisoformat(expires.replace("Z", "+00:00"))


def _exposure(ws, before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    env = env_of(ws)
    jobs = load_sample_jobs(env.workspace.runbook.sample_jobs_path)

    def on_openai(values):
        from slotgen_ops.contract import PATH_OPENAI, Controls, decide
        from slotgen_ops.runtime.allowlist_file import load_allowlist

        parsed = Controls.from_mapping(values)
        allowlist = load_allowlist(parsed.allowlist_path, env.workspace.root)
        return sum(1 for job in jobs if decide(job, parsed, allowlist).path == PATH_OPENAI)

    return {"samples": len(jobs), "before": on_openai(before), "after": on_openai(after)}


def test_the_preview_of_an_approval_shows_the_exposure_it_would_allow(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the allowlist is found from the workspace, wherever the operator stands
    walk_to(ws, 7)
    assert do_rollback(ws).ok  # live at 5 %, then rolled back: turning the kill-switch off needs an approval
    now = controls(ws)
    shown: list[Preview] = []
    result = approve(env_of(ws), [f"{KILL_VAR}=false"], actor=actor(ws, "approver"), decision_record="DR-9",
                     dry_run=False, confirm=lambda p: shown.append(p) or True)
    assert result.ok
    expected = _exposure(ws, now, {**now, KILL_VAR: "false"})
    assert expected["before"] == 0 < expected["after"]
    assert shown == [Preview(ENV, None, KILL_VAR, "true", "false", exposure=expected, approval=True, ttl_hours=24)]


def test_the_preview_of_a_step_shows_the_exposure_it_would_reach(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    walk_to(ws, STEP5_DONE)
    now = controls(ws)
    shown: list[Preview] = []
    result = set_control(env_of(ws), [f"{KILL_VAR}=false"], actor=actor(ws, "owner"), decision_record="DR-6",
                         approval_id=None, expect=None, dry_run=False, confirm=lambda p: shown.append(p) or True,
                         verifier=passing)
    assert result.ok
    expected = _exposure(ws, now, {**now, KILL_VAR: "false"})
    assert expected["before"] == 0 < expected["after"]
    assert shown == [Preview(ENV, "kill-switch-off", KILL_VAR, "true", "false", exposure=expected)]


# -- recorded and unrecorded verify -----------------------------------------------------------------


@pytest.mark.parametrize("passed", [True, False])
def test_an_unrecorded_verify_reports_only(ws, passed):
    walk_to(ws, 2)
    verifier = Recording(report(passed))
    before = files_of(ws)
    result = verify_environment(env_of(ws), actor=actor(ws, None), decision_record=None, verifier=verifier)
    assert result == Result(ok=passed, exit_code=EXIT_OK if passed else EXIT_VERIFICATION_FAILED,
                            verification=report(passed),
                            message="not recorded (no --operator / --decision-record); nothing rolled back")
    assert verifier.seen == [(ENV, controls(ws))]
    assert files_of(ws) == before


def test_a_verify_with_an_operator_only_is_recorded_as_a_refusal(ws):
    with pytest.raises(Refused) as info:
        do_verify(ws, operator="owner", dr=None)
    entry = head(ws)
    assert info.value.audit_seq == entry["seq"]
    assert fields(entry, "action", "operator", "decisionRecord", "approvalId") == {
        "action": "refused", "operator": "owner", "decisionRecord": None, "approvalId": None}
    assert entry["details"] == {"command": "verify", "items": None, "refusal": entry["reason"]}
    assert "decision record" in entry["reason"]


def test_a_verify_with_a_decision_record_only_is_recorded_as_a_refusal(ws):
    with pytest.raises(Refused):
        do_verify(ws, operator=None, dr="DR-5")
    entry = head(ws)
    assert fields(entry, "action", "operator", "decisionRecord") == {
        "action": "refused", "operator": None, "decisionRecord": "DR-5"}
    assert entry["details"]["command"] == "verify"


def test_a_recorded_verify_at_step_5_completes_it(ws):
    walk_to(ws, 4)
    verifier = Recording()
    result = do_verify(ws, operator="owner", dr="DR-5", verifier=verifier)
    entry = head(ws)
    assert verifier.seen == [(ENV, controls(ws))]
    assert fields(entry, *RECORDED) == {
        "action": "verify", "operator": "owner", "control": None, "old": None, "new": None,
        "decisionRecord": "DR-5", "reason": None, "step": "verify", "approvalId": None,
        "details": {"trigger": "operator"}, "verification": summary(True)}
    assert result == Result(ok=True, step="verify", verification=report(True), audit_seq=entry["seq"], warnings=[],
                            message="every check passed; step 5 (verify) is done")


def test_a_recorded_verify_elsewhere_completes_no_step(ws):
    walk_to(ws, 2)
    result = do_verify(ws, operator="owner", dr="DR-5")
    assert result.message == "every check passed" and result.step is None and head(ws)["step"] is None


def test_a_failed_recorded_verify_rolls_back_with_its_record(ws):
    walk_to(ws, KILL_OFF)
    seq = head(ws)["seq"]
    start = time.perf_counter()
    result = do_verify(ws, operator="owner", dr="DR-7", verifier=failing)
    elapsed_ms = (time.perf_counter() - start) * 1000
    verify_entry, rollback_entry = entries(ws)[seq:]
    assert fields(verify_entry, "action", "decisionRecord", "step", "details", "verification") == {
        "action": "verify", "decisionRecord": "DR-7", "step": None, "details": {"trigger": "operator"},
        "verification": summary(False)}
    reason = "automatic: verification failed (path-behavior)"
    assert fields(rollback_entry, *RECORDED) == {
        "action": "rollback", "operator": "owner", "control": KILL_VAR, "old": "false", "new": "true",
        "decisionRecord": "DR-7", "reason": reason, "step": None, "approvalId": None,
        "details": {"trigger": "verification-failed"}, "verification": None}
    assert result.ok is False and result.exit_code == EXIT_VERIFICATION_FAILED
    assert result.audit_seq == rollback_entry["seq"]
    assert result.message == "verification failed (path-behavior): the kill-switch was engaged"
    engaged_ms = result.rollback.pop("engagedMs")
    assert result.rollback == {"auditSeq": rollback_entry["seq"], "engaged": True, "old": "false", "new": "true",
                               "reason": reason}
    assert type(engaged_ms) is float and 0 < engaged_ms < elapsed_ms and engaged_ms == round(engaged_ms, 3)
    assert controls(ws)[KILL_VAR] == "true"


def test_an_automatic_rollback_gives_every_failed_check_and_the_cause(ws):
    walk_to(ws, KILL_OFF)
    found = {**report(False, failed=("telemetry-schema", "latency")), "cause": "p95 1200 ms over 800 ms"}
    result = do_verify(ws, operator="owner", dr="DR-7", verifier=Recording(found))
    reason = "automatic: verification failed (telemetry-schema, latency); cause: p95 1200 ms over 800 ms"
    assert head(ws)["reason"] == reason == result.rollback["reason"]
    assert result.message == "verification failed (telemetry-schema, latency): the kill-switch was engaged"


def test_a_failed_step_names_the_step_in_the_rollback_reason(ws):
    walk_to(ws, 1)
    result = do_set(ws, f"{FEATURE_VAR}=true", verifier=failing)
    assert result.rollback["reason"] == "automatic: verification failed before step 2 (feature-flag-on) (path-behavior)"


def test_a_verify_closes_what_a_hand_engaged_kill_switch_left_open(ws):
    walk_to(ws, KILL_OFF)
    _hand_edit(ws, f"{KILL_VAR}=false", f"{KILL_VAR}=true")  # engaged by hand, outside the log
    seq = head(ws)["seq"]
    result = do_verify(ws, operator="owner", dr="DR-7")
    closed, verified = entries(ws)[seq:]
    assert closed["action"] == "rollback" and closed["operator"] == "owner"
    assert verified["action"] == "verify" and verified["state"]["controls"][KILL_VAR] == "true"
    assert len(result.warnings) == 1 and f"recorded as rollback seq {closed['seq']}" in result.warnings[0]


def test_a_dry_run_approval_only_says_it_would_close_what_was_left_open(ws):
    walk_to(ws, 7)
    _hand_edit(ws, f"{KILL_VAR}=false", f"{KILL_VAR}=true")  # engaged by hand, outside the log
    before = files_of(ws)
    result = approve(env_of(ws), [f"{KILL_VAR}=false"], actor=actor(ws, "approver"), decision_record="DR-9",
                     dry_run=True, confirm=lambda p: True)
    assert result.dry_run and result.warnings == [
        "the environment has an interrupted change or an unrecorded rollback; the next change records it and "
        "engages the kill-switch"]
    assert files_of(ws) == before
    recorded = approve(env_of(ws), [f"{KILL_VAR}=false"], actor=actor(ws, "approver"), decision_record="DR-9",
                       dry_run=False, confirm=lambda p: True)
    assert len(recorded.warnings) == 1 and "recorded as rollback seq" in recorded.warnings[0]
    assert [e["action"] for e in entries(ws)[-2:]] == ["rollback", "approve"]
    assert entries(ws)[-2]["operator"] == "approver"


# -- superseded: a rollback lands while the sample jobs run -----------------------------------------


@pytest.mark.parametrize(("operator", "named"), [("oncall", "oncall"), (None, "unidentified")])
def test_a_verify_overtaken_by_a_rollback_is_recorded_as_superseded(ws, operator, named):
    walk_to(ws, KILL_OFF)
    judged = head(ws)["seq"]
    verifier = Recording(during=lambda: do_rollback(ws, operator=operator, reason="incident"))
    with pytest.raises(Refused) as info:
        do_verify(ws, operator="owner", dr="DR-7", verifier=verifier)
    rolled, superseded = entries(ws)[judged:]
    assert rolled["action"] == "rollback"
    assert info.value.message == (f"superseded: while this verification was being verified the environment changed "
                                  f"(seq {rolled['seq']}: rollback by {named}); nothing applied, recorded as seq "
                                  f"{superseded['seq']}")
    assert info.value.audit_seq == superseded["seq"]
    assert fields(superseded, *RECORDED) == {
        "action": "verify", "operator": "owner", "control": None, "old": None, "new": None,
        "decisionRecord": "DR-7", "reason": None, "step": None, "approvalId": None,
        "details": {"trigger": "operator", "superseded": True, "proposed": None, "judgedAtSeq": judged},
        "verification": summary(True)}
    assert superseded["state"]["controls"] == rolled["state"]["controls"] == controls(ws)
    assert controls(ws)[KILL_VAR] == "true"


def test_a_step_overtaken_by_a_rollback_applies_nothing(ws):
    walk_to(ws, STEP5_DONE)
    judged = head(ws)["seq"]
    verifier = Recording(during=lambda: do_rollback(ws, operator="oncall", reason="incident"))
    with pytest.raises(Refused) as info:
        do_set(ws, f"{KILL_VAR}=false", operator="owner", dr="DR-6", verifier=verifier)
    rolled, superseded = entries(ws)[judged:]
    assert info.value.message.startswith("superseded: while step kill-switch-off was being verified the "
                                         f"environment changed (seq {rolled['seq']}: rollback by oncall)")
    assert superseded["details"] == {"trigger": "before-change", "superseded": True, "judgedAtSeq": judged,
                                     "proposed": {"control": KILL_VAR, "old": "true", "new": "false"}}
    assert fields(superseded, "action", "operator", "decisionRecord", "verification") == {
        "action": "verify", "operator": "owner", "decisionRecord": "DR-6", "verification": summary(True)}
    assert verifier.seen == [(ENV, {**rolled["state"]["controls"], KILL_VAR: "false"})]
    assert controls(ws)[KILL_VAR] == "true"


def test_an_approval_recorded_during_a_verification_supersedes_nothing(ws):
    walk_to(ws, STEP5_DONE)
    verifier = Recording(during=lambda: do_approve(ws, f"{ROLLOUT_VAR}=5", dr="DR-7"))
    result = do_set(ws, f"{KILL_VAR}=false", operator="owner", dr="DR-6", verifier=verifier)
    assert result.ok and controls(ws)[KILL_VAR] == "false"
    assert [e["action"] for e in entries(ws)[-2:]] == ["approve", "set"]


# -- the check after the commit ---------------------------------------------------------------------


def _digest_of(env, values):
    return decision_digest_for(env, values)


def test_a_step_whose_applied_decisions_match_the_verified_ones_stands(ws):
    walk_to(ws, STEP5_DONE)
    verifier = lambda env, values: {**report(True), "decisionDigest": _digest_of(env, values)}  # noqa: E731
    result = do_set(ws, f"{KILL_VAR}=false", operator="owner", dr="DR-6", verifier=verifier)
    assert result.ok and result.message == f"step 6 (kill-switch-off): {KILL_VAR}=false verified, recorded and applied"
    assert controls(ws)[KILL_VAR] == "false"


def test_a_step_whose_applied_decisions_differ_is_rolled_back(ws):
    walk_to(ws, STEP5_DONE)
    verifier = lambda env, values: {**report(True), "decisionDigest": "0" * 64}  # noqa: E731
    seq = head(ws)["seq"]
    result = do_set(ws, f"{KILL_VAR}=false", operator="owner", dr="DR-6", verifier=verifier)
    applied, rolled = entries(ws)[seq:]
    assert applied["action"] == "set" and applied["verification"] == summary(True)
    assert result.ok is False and result.exit_code == EXIT_VERIFICATION_FAILED
    assert rolled["reason"] == (
        "automatic: verification failed after step 6 (kill-switch-off): the sample jobs' decisions under the "
        "applied controls differ from those verified (was the allowlist or a sample file changed during the "
        "verification?) (post-commit)")
    assert rolled["old"] == "false" and rolled["decisionRecord"] == "DR-6" and controls(ws)[KILL_VAR] == "true"


# -- the result as JSON ------------------------------------------------------------------------------


def test_a_result_as_json_has_its_fixed_fields_and_only_the_optional_ones_set():
    assert Result(ok=True).to_json() == {"ok": True, "step": None, "change": None, "verification": None,
                                         "auditSeq": None, "dryRun": False, "message": ""}
    full = Result(ok=False, exit_code=1, step="verify", change={"control": KILL_VAR}, verification={"passed": False},
                  audit_seq=9, approval_id="apv-1", dry_run=True, message="m", rollback={"auditSeq": 9},
                  extra={"expiresAt": "t"}, warnings=["w"])
    assert full.to_json() == {"ok": False, "step": "verify", "change": {"control": KILL_VAR},
                              "verification": {"passed": False}, "auditSeq": 9, "dryRun": True, "message": "m",
                              "approvalId": "apv-1", "rollback": {"auditSeq": 9}, "warnings": ["w"],
                              "expiresAt": "t"}


def test_the_allowlist_step_is_recorded_with_the_approved_file(ws):
    walk_to(ws, 2)
    result = do_set(ws, f"{ALLOWLIST_VAR}={APPROVED_ALLOWLIST}", operator="owner", dr="DR-3")
    entry = head(ws)
    assert fields(entry, "action", "control", "old", "new", "step", "decisionRecord", "approvalId") == {
        "action": "set", "control": ALLOWLIST_VAR, "old": None, "new": APPROVED_ALLOWLIST,
        "step": "allowlist-enable", "decisionRecord": "DR-3", "approvalId": None}
    assert result.change == {"control": ALLOWLIST_VAR, "old": None, "new": APPROVED_ALLOWLIST}


# -- what is checked again under the lock, and where verification sits ------------------------------------------


def test_an_approval_that_expires_during_the_verification_is_refused_under_the_lock(ws):
    path = ws.root / "runbooks" / "beta-enable.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("ttlHours: 24", "ttlHours: 0.0003"), encoding="utf-8")
    accept_policy(ws.root, verifier=passing)  # approvals now last about 1 s
    walk_to(ws, 3)
    apv = do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").approval_id
    verifier = Recording(during=lambda: wait_until_expired(ws, apv))  # valid when judged, expired at the commit
    seq = head(ws)["seq"]
    with pytest.raises(Refused) as info:
        do_set(ws, f"{ROLLOUT_VAR}=1", operator="oncall", dr="DR-4", approval=apv, verifier=verifier)
    assert len(verifier.seen) == 1
    [refused] = entries(ws)[seq:]
    assert info.value.audit_seq == refused["seq"]
    assert refused["action"] == "refused" and refused["approvalId"] == apv and "expired" in refused["reason"]
    assert info.value.message.startswith(refused["reason"] + "; next allowed step: ")
    assert controls(ws)[ROLLOUT_VAR] == "0"


def test_the_verification_runs_between_its_hook_points_before_the_lock(ws):
    walk_to(ws, 1)
    seen: list[str] = []
    hooks.install(seen.append)
    try:
        result = do_set(ws, f"{FEATURE_VAR}=true", operator="oncall",
                        verifier=lambda env, values: seen.append("verifier") or report(True))
    finally:
        hooks.install(None)
    assert result.ok
    assert seen[:4] == ["before-verify", "verifier", "after-verify", "writer-locked"]


@pytest.mark.parametrize("command", ["approve", "verify", "verify-during"])
def test_a_policy_file_edited_unaccepted_names_the_environment(ws, command):
    walk_to(ws, 3)
    path = ws.root / "runbooks" / "beta-enable.yaml"

    def edit() -> None:
        path.write_text(path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")

    if command != "verify-during":
        edit()
    with pytest.raises(IntegrityFailure) as info:
        if command == "approve":
            do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4")
        else:
            do_verify(ws, operator="owner", dr="DR-5", verifier=Recording(during=edit if command != "verify" else None))
    assert f"policy files differ from what was accepted for {ENV}: " in info.value.message
    assert f"'slotgen config status --env {ENV}'" in info.value.message


def test_the_preview_of_a_rollout_approval_shows_the_next_rung(ws):
    walk_to(ws, KILL_OFF)
    now = controls(ws)
    shown: list[Preview] = []
    assert approve(env_of(ws), [f"{ROLLOUT_VAR}=5"], actor=actor(ws, "approver"), decision_record="DR-7",
                   dry_run=False, confirm=lambda p: shown.append(p) or True).ok
    expected = _exposure(ws, now, {**now, ROLLOUT_VAR: "5"})
    assert 0 < expected["before"] < expected["after"]
    assert shown[0].exposure == expected


def test_what_the_log_keeps_of_a_verification():
    assert verification_summary({}) == {"passed": False, "checks": {}, "failed": [], "samples": 0, "openaiCalls": 0,
                                        "p95Ms": 0}
    kept = verification_summary({"passed": 1, "checks": [{"name": "a", "passed": 1}, {"name": "b", "passed": 0}],
                                 "samples": 7, "openaiCalls": 3, "p95Ms": 12.7, "cause": "dropped"})
    assert kept == {"passed": True, "checks": {"a": True, "b": False}, "failed": ["b"], "samples": 7,
                    "openaiCalls": 3, "p95Ms": 12}


def test_a_verifier_that_raises_counts_as_failed_and_rolls_back(ws):
    walk_to(ws, KILL_OFF)

    def raises(env, values):
        raise RuntimeError("endpoint config exploded")

    seq = head(ws)["seq"]
    result = do_verify(ws, operator="owner", dr="DR-7", verifier=raises)
    detail = "verification could not run: endpoint config exploded"
    assert result.verification == {"passed": False, "cause": detail, "causeKind": "runtime",
                                   "checks": [{"name": "verification", "passed": False, "detail": detail}],
                                   "samples": 0, "openaiCalls": 0, "p95Ms": 0}
    assert result.ok is False and result.exit_code == EXIT_VERIFICATION_FAILED
    verified, rolled = entries(ws)[seq:]
    assert verified["verification"] == {"passed": False, "checks": {"verification": False}, "failed": ["verification"],
                                        "samples": 0, "openaiCalls": 0, "p95Ms": 0}
    assert rolled["reason"] == f"automatic: verification failed (verification); cause: {detail}"
    assert controls(ws)[KILL_VAR] == "true"


def test_an_approval_cannot_be_applied_by_the_key_that_signed_it_under_another_id(ws):
    keys = ws.root / "demo-keys"
    owner_key = (keys / "owner.pub").read_text().strip()
    for who in ("boss", "deputy"):  # two ids, one person's key
        for suffix in ("", ".pub"):
            (keys / f"{who}{suffix}").write_bytes((keys / f"owner{suffix}").read_bytes())
        (keys / who).chmod(0o600)
    (ws.root / "operators.yaml").write_text(f"""\
operators:
  - id: boss
    name: Owner
    roles: [engineering-owner]
    keys: ["{owner_key}"]
  - id: deputy
    name: Deputy approver
    roles: [approver]
    keys: ["{owner_key}"]
""", encoding="utf-8")
    accept_policy(ws.root, verifier=passing)
    for item in (f"{KILL_VAR}=true", f"{FEATURE_VAR}=true", f"{ALLOWLIST_VAR}={APPROVED_ALLOWLIST}"):
        assert do_set(ws, item, operator="boss").ok
    apv = do_approve(ws, f"{ROLLOUT_VAR}=1", operator="deputy", dr="DR-4").approval_id
    with pytest.raises(Refused) as info:
        do_set(ws, f"{ROLLOUT_VAR}=1", operator="boss", dr="DR-4", approval=apv)
    fingerprint = actor(ws, "boss").fingerprint
    assert info.value.message.startswith(f"approval {apv} was signed by the key {fingerprint}, the one applying it")
    assert controls(ws)[ROLLOUT_VAR] == "0"


# -- set: what a step returns and records around the commit --------------------------------------------------


def test_a_step_returns_its_verification_and_no_warnings(ws):
    walk_to(ws, 1)
    result = do_set(ws, f"{FEATURE_VAR}=true", operator="oncall", approval="apv-0000000000")  # needs none: not kept
    entry = head(ws)
    assert result == Result(ok=True, step="feature-flag-on", change={"control": FEATURE_VAR, "old": "false",
                                                                       "new": "true"},
                            verification=report(True), audit_seq=entry["seq"], warnings=[],
                            message=f"step 2 (feature-flag-on): {FEATURE_VAR}=true verified, recorded and applied")
    assert entry["approvalId"] is None and entry["step"] == "feature-flag-on"


def test_a_dry_run_step_says_what_it_would_set(ws):
    result = do_set(ws, f"{KILL_VAR}=true", dry_run=True)
    assert result == Result(ok=True, step="kill-switch-on", change={"control": KILL_VAR, "old": "true", "new": "true"},
                            dry_run=True, warnings=[],
                            message=f"dry-run: step 1 (kill-switch-on) would set {KILL_VAR}=true; nothing written")


@pytest.mark.parametrize("passes", [True, False])
def test_a_step_down_is_labelled_as_one(ws, passes):
    walk_to(ws, 7)
    result = do_set(ws, f"{ROLLOUT_VAR}=1", operator="oncall", dr="DR-8", verifier=passing if passes else failing)
    if passes:
        assert result.ok and result.step == "reduce-exposure"
        assert result.message == f"a step down (reduce-exposure): {ROLLOUT_VAR}=1 verified, recorded and applied"
    else:
        assert result.rollback["reason"] == ("automatic: verification failed before a step down (reduce-exposure) "
                                             "(path-behavior)")


def test_a_failed_step_records_its_decision_record_on_both_entries(ws):
    walk_to(ws, 1)
    seq = head(ws)["seq"]
    do_set(ws, f"{FEATURE_VAR}=true", operator="oncall", dr="DR-22", verifier=failing)
    verified, rolled = entries(ws)[seq:]
    assert (verified["decisionRecord"], rolled["decisionRecord"]) == ("DR-22", "DR-22")
    assert verified["details"] == {"trigger": "before-change",
                                   "proposed": {"control": FEATURE_VAR, "old": "false", "new": "true"}}


def test_a_compare_and_set_mismatch_says_why(ws):
    with pytest.raises(Refused) as info:
        do_set(ws, f"{KILL_VAR}=true", expect="false")
    assert info.value.message.startswith(f"compare-and-set: {KILL_VAR} is 'true', not the expected 'false'; someone "
                                         "changed it since you looked; next allowed step: ")


def test_a_step_closes_what_was_left_open_and_says_so(ws):
    walk_to(ws, KILL_OFF)
    _hand_edit(ws, f"{KILL_VAR}=false", f"{KILL_VAR}=true")  # engaged by hand, outside the log
    before = files_of(ws)
    with pytest.raises(Refused):  # a dry-run, even refused, closes nothing
        do_set(ws, f"{KILL_VAR}=true", operator="oncall", dr="DR-8", dry_run=True)
    assert files_of(ws) == before
    seq = head(ws)["seq"]
    with pytest.raises(Refused):  # now rolled back: turning it on again is not a step
        do_set(ws, f"{ROLLOUT_VAR}=5", operator="oncall", dr="DR-8")
    closed = entries(ws)[seq]
    assert closed["action"] == "rollback" and closed["operator"] == "oncall"


@pytest.mark.parametrize("when", ["before", "during"])
def test_a_step_under_an_unaccepted_policy_edit_names_the_environment(ws, when):
    walk_to(ws, 1)
    path = ws.root / "runbooks" / "beta-enable.yaml"

    def edit() -> None:
        path.write_text(path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")

    if when == "before":
        edit()
    with pytest.raises(IntegrityFailure) as info:
        do_set(ws, f"{FEATURE_VAR}=true", operator="oncall", verifier=Recording(during=edit if when == "during"
                                                                                 else None))
    assert f"policy files differ from what was accepted for {ENV}: " in info.value.message
    assert controls(ws)[FEATURE_VAR] == "false"


def test_status_closes_what_was_left_open_or_says_who_holds_the_lock(ws):
    """`status` settles an environment too, but waits at most its own time for the lock (never blocks)."""
    from lock_holder import lock_held
    from slotgen_ops.oversight.report import status_report

    walk_to(ws, KILL_OFF)
    _hand_edit(ws, f"{KILL_VAR}=false", f"{KILL_VAR}=true")  # engaged by hand, outside the log
    seq = head(ws)["seq"]
    with lock_held(ws.environments_dir):
        doc, valid = status_report(env_of(ws))
    assert valid is True and head(ws)["seq"] == seq
    assert any(w.startswith("could not close what was found now: the lock is held by pid ") for w in doc["warnings"])
    doc, valid = status_report(env_of(ws))
    closed = head(ws)
    assert closed["seq"] == seq + 1 and closed["action"] == "rollback"
    assert any(w.endswith(f"recorded as rollback seq {closed['seq']}, kill-switch engaged") for w in doc["warnings"])


def test_the_next_step_after_a_crash_closes_it_and_says_so(ws):
    walk_to(ws, 1)
    crash_after_commit(ws, f"{FEATURE_VAR}=true", "oncall")  # step 2 recorded, its controls never written
    seq = head(ws)["seq"]
    before = files_of(ws)
    dry = do_set(ws, f"{ALLOWLIST_VAR}={APPROVED_ALLOWLIST}", operator="owner", dr="DR-3", dry_run=True)
    assert dry.warnings == ["the environment has an interrupted change or an unrecorded rollback; the next change "
                            "records it and engages the kill-switch"]
    assert files_of(ws) == before
    result = do_set(ws, f"{ALLOWLIST_VAR}={APPROVED_ALLOWLIST}", operator="owner", dr="DR-3")
    closed = entries(ws)[seq]
    assert closed["action"] == "rollback" and closed["details"] == {"trigger": "recover", "pendingSeq": seq}
    assert result.ok and result.warnings == [
        f"the change recorded at seq {seq} (set {FEATURE_VAR}) was interrupted before its controls were written: "
        f"recorded as rollback seq {closed['seq']}, kill-switch engaged"]


def test_closing_what_was_left_open_waits_for_the_lock_saying_why(ws):
    walk_to(ws, KILL_OFF)
    _hand_edit(ws, f"{KILL_VAR}=false", f"{KILL_VAR}=true")  # engaged by hand, outside the log
    notices: list[str] = []
    held = [os.open(ws.environments_dir, os.O_RDONLY | os.O_DIRECTORY)]
    fcntl.flock(held[0], fcntl.LOCK_EX)  # another writer is inside its critical section

    def notice(message: str) -> None:
        notices.append(message)
        if "(reading)" not in message and "reading without the lock" not in message:
            while held:
                os.close(held.pop())  # the other writer finishes

    locking.set_wait_notice(notice)
    try:
        result = do_verify(ws, operator="owner", dr="DR-7")
    finally:
        locking.set_wait_notice(None)
        while held:
            os.close(held.pop())
    assert any("(recovery): held by" in n for n in notices), notices
    assert result.ok and len(result.warnings) == 1


def test_the_preview_of_a_rung_shows_the_exposure_it_would_reach(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    walk_to(ws, KILL_OFF)
    now = controls(ws)
    apv = do_approve(ws, f"{ROLLOUT_VAR}=5", dr="DR-7").approval_id
    shown: list[Preview] = []
    assert set_control(env_of(ws), [f"{ROLLOUT_VAR}=5"], actor=actor(ws, "oncall"), decision_record="DR-7",
                       approval_id=apv, expect=None, dry_run=False, confirm=lambda p: shown.append(p) or True,
                       verifier=passing).ok
    expected = _exposure(ws, now, {**now, ROLLOUT_VAR: "5"})
    assert 0 < expected["before"] < expected["after"]
    assert shown == [Preview(ENV, "rollout-progression", ROLLOUT_VAR, "1", "5", exposure=expected)]


def test_each_item_is_read_as_one_control_and_its_value(ws):
    from slotgen_ops.contract import CONTROL_VARS

    with pytest.raises(BadInput) as info:
        do_set(ws, None, items=[FEATURE_VAR])
    assert info.value.message == f"'{FEATURE_VAR}': expected KEY=VALUE, e.g. FEATURE_SLOTGEN_AI=true"
    with pytest.raises(BadInput) as info:
        do_set(ws, None, items=["SLOTGEN_AI_TURBO=1"])
    assert info.value.message == f"'SLOTGEN_AI_TURBO' is not a control (one of {', '.join(CONTROL_VARS)})"
    with pytest.raises(BadInput) as info:  # the key is what comes before the first '=', the rest is the value
        do_set(ws, None, items=[f"{ALLOWLIST_VAR}=allowlists/a=b.json"])
    assert info.value.message.startswith(f"{ALLOWLIST_VAR}='allowlists/a=b.json': only letters, digits")
