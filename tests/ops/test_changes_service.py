"""The change service (set, approve, recorded verify, rollback) with real files.

A workspace from init_workspace in tmp_path; operators from the shipped
operators.yaml unless a test writes its own. The verifier is injected: a plain
function returning passed True/False. It is a test double for the verification
only (the real verification is tested elsewhere); everything else is real.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import sys

from helpers_runbook import APPROVED_ALLOWLIST, report
from slotgen_ops.contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR
from slotgen_ops.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_REFUSED, EXIT_VERIFICATION_FAILED, BadInput, IntegrityFailure, Refused
from slotgen_ops.audit.log import AuditLog
from slotgen_ops.policy.authority import resolve_actor
from slotgen_ops.changes.outcomes import Result
from slotgen_ops.changes.steps import approve, set_control, verify_environment
from slotgen_ops.changes.rollback import rollback
from slotgen_ops.changes.environment import parse_controls
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.oversight.report import audit_verify
from slotgen_ops.runbook.judge import next_step
from slotgen_ops.runbook.state import SAFE_CONTROLS, apply, replay
from slotgen_ops.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from walked import accept_policy, demo_actor  # noqa: E402

ENV = "staging"
SAFE = dict(SAFE_CONTROLS)


# -- test doubles and fixtures ---------------------------------------------------------


class FakeVerifier:
    """verifier(env, controls) -> report; records the controls it was shown."""

    def __init__(self, passed: bool = True) -> None:
        self.passed = passed
        self.calls: list[dict[str, Any]] = []

    def __call__(self, env, controls):
        self.calls.append(dict(controls))
        return report(self.passed)


def passing(env, controls):
    return report(True)


def failing(env, controls):
    return report(False)


def yes(preview) -> bool:
    return True


@pytest.fixture(autouse=True)
def _no_ambient_operator(monkeypatch):
    monkeypatch.delenv("SLOTGEN_OPERATOR", raising=False)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(root, resolve_actor(None, "owner"))
    return Workspace(root)


def env_of(ws: Workspace, name: str = ENV):
    return Workspace(ws.root).environment(name)  # fresh: re-reads the config files


def actor(ws: Workspace, operator: str | None):
    return demo_actor(Workspace(ws.root), operator)


def controls(ws: Workspace, name: str = ENV) -> dict[str, str | None]:
    return parse_controls(ws.environments_dir / f"{name}.env").values


def entries(ws: Workspace, name: str = ENV) -> list[dict[str, Any]]:
    return list(AuditLog(ws.environments_dir / f"{name}.audit.jsonl").entries())


def wait_until_expired(ws: Workspace, approval_id: str) -> None:
    """Wait on the thing itself: until the clock has passed the approval's recorded expiry."""
    from datetime import datetime, timezone

    expires = datetime.fromisoformat(head(ws)["state"]["approvals"][approval_id]["expiresAt"].replace("Z", "+00:00"))
    deadline = time.monotonic() + 30
    while datetime.now(timezone.utc) <= expires:
        assert time.monotonic() < deadline, f"approval {approval_id} never expired ({expires})"
        time.sleep(0.02)


def head(ws: Workspace, name: str = ENV) -> dict[str, Any]:
    return entries(ws, name)[-1]


def do_set(ws, item, operator="owner", dr="DR-1", approval=None, expect=None, dry_run=False, verifier=passing,
           items=None) -> Result:
    return set_control(env_of(ws), items if items is not None else [item], actor=actor(ws, operator),
                       decision_record=dr, approval_id=approval, expect=expect, dry_run=dry_run, confirm=yes,
                       verifier=verifier)


def do_approve(ws, item, operator="approver", dr="DR-1", dry_run=False, items=None) -> Result:
    return approve(env_of(ws), items if items is not None else [item], actor=actor(ws, operator),
                   decision_record=dr, dry_run=dry_run, confirm=yes)


def do_verify(ws, operator="oncall", dr="DR-1", verifier=passing) -> Result:
    return verify_environment(env_of(ws), actor=actor(ws, operator), decision_record=dr, verifier=verifier)


def do_rollback(ws, operator="oncall", reason="test rollback", dr=None, dry_run=False, verifier=None) -> Result:
    return rollback(env_of(ws), actor=actor(ws, operator), reason=reason, decision_record=dr, dry_run=dry_run,
                    verifier=verifier)


def files_of(ws: Workspace) -> dict[str, tuple[bytes, int]]:
    out = {}
    for path in sorted(ws.environments_dir.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(ws.root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def walk_to(ws: Workspace, upto: int) -> None:
    """Take steps 1..upto (7 = Beta live at 5) with the shipped operators."""
    plan = [
        lambda: do_set(ws, f"{KILL_VAR}=true", operator="owner"),
        lambda: do_set(ws, f"{FEATURE_VAR}=true", operator="oncall"),
        lambda: do_set(ws, f"{ALLOWLIST_VAR}={APPROVED_ALLOWLIST}", operator="owner"),
        lambda: do_set(ws, f"{ROLLOUT_VAR}=1", operator="oncall", dr="DR-4",
                       approval=do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").approval_id),
        lambda: do_verify(ws, operator="owner", dr="DR-5"),
        lambda: do_set(ws, f"{KILL_VAR}=false", operator="owner", dr="DR-6"),
        lambda: do_set(ws, f"{ROLLOUT_VAR}=5", operator="oncall", dr="DR-7",
                       approval=do_approve(ws, f"{ROLLOUT_VAR}=5", dr="DR-7").approval_id),
    ]
    for action in plan[:upto]:
        result = action()
        assert result.ok and result.exit_code == EXIT_OK, result


def assert_refused_and_recorded(ws, call, *, message: str | None = None) -> Refused:
    before_controls = controls(ws)
    before_count = len(entries(ws))
    with pytest.raises(Refused) as info:
        call()
    exc = info.value
    assert exc.exit_code == EXIT_REFUSED
    if message is not None:
        assert message in exc.message
    assert "next allowed step" in exc.message
    after = entries(ws)
    assert len(after) == before_count + 1
    assert after[-1]["action"] == "refused"
    assert after[-1]["state"]["controls"] == after[-2]["state"]["controls"]
    assert after[-1]["state"] == apply(after[-2]["state"], after[-1])  # a refusal changes nothing else
    assert getattr(exc, "audit_seq", None) == after[-1]["seq"]
    assert controls(ws) == before_controls
    return exc


# -- the walk ---------------------------------------------------------------------------------


def test_walk_staging_from_init_to_live_at_5(ws):
    env = env_of(ws)
    runbook = env.workspace.runbook
    assert controls(ws) == SAFE
    assert len(entries(ws)) == 1 and head(ws)["action"] == "init"
    verifier = FakeVerifier(True)
    expected = dict(SAFE)

    def check(result: Result, step: str | None, control: str | None, old, new) -> None:
        assert result.ok and result.exit_code == EXIT_OK and not result.dry_run
        assert result.step == step
        log = entries(ws)
        assert result.audit_seq == log[-1]["seq"] == len(log)
        if control is not None:
            assert result.change == {"control": control, "old": old, "new": new}
            expected[control] = new
            # Verified before the commit: one entry carries the change and its passing verification.
            change_entry = log[-1]
            assert change_entry["action"] == "set" and change_entry["step"] == step
            assert (change_entry["control"], change_entry["old"], change_entry["new"]) == (control, old, new)
            assert change_entry["verification"]["passed"] is True
            assert change_entry["state"]["verificationPassing"] is True
            assert verifier.calls[-1] == expected  # the would-be controls, verified before they were applied
        assert controls(ws) == expected
        assert head(ws)["state"]["controls"] == expected

    r = do_set(ws, f"{KILL_VAR}=true", operator="owner", verifier=verifier)
    check(r, "kill-switch-on", KILL_VAR, "true", "true")
    r = do_set(ws, f"{FEATURE_VAR}=TRUE", operator="oncall", dr="DR-2", verifier=verifier)
    check(r, "feature-flag-on", FEATURE_VAR, "false", "true")
    r = do_set(ws, f"{ALLOWLIST_VAR}={APPROVED_ALLOWLIST}", operator="owner", dr="DR-3", verifier=verifier)
    check(r, "allowlist-enable", ALLOWLIST_VAR, None, APPROVED_ALLOWLIST)

    a = do_approve(ws, f"{ROLLOUT_VAR}=1", operator="approver", dr="DR-4")
    assert a.ok and a.approval_id and a.approval_id.startswith("apv-") and a.step is None
    assert a.audit_seq == head(ws)["seq"] and head(ws)["action"] == "approve"
    assert head(ws)["approvalId"] == a.approval_id
    assert a.approval_id in head(ws)["state"]["approvals"]
    assert controls(ws) == expected  # an approval changes no control
    r = do_set(ws, f"{ROLLOUT_VAR}=1", operator="oncall", dr="DR-4", approval=a.approval_id, verifier=verifier)
    check(r, "rollout-canary", ROLLOUT_VAR, "0", "1")
    assert entries(ws)[-1]["approvalId"] == a.approval_id
    assert a.approval_id not in head(ws)["state"]["approvals"]  # used up

    r = do_verify(ws, operator="owner", dr="DR-5", verifier=verifier)
    check(r, "verify", None, None, None)
    assert head(ws)["action"] == "verify" and head(ws)["step"] == "verify"
    assert head(ws)["state"]["stepVerified"] is True

    r = do_set(ws, f"{KILL_VAR}=false", operator="owner", dr="DR-6", verifier=verifier)
    check(r, "kill-switch-off", KILL_VAR, "true", "false")

    a5 = do_approve(ws, f"{ROLLOUT_VAR}=5", operator="approver", dr="DR-7")
    r = do_set(ws, f"{ROLLOUT_VAR}=5", operator="oncall", dr="DR-7", approval=a5.approval_id, verifier=verifier)
    check(r, "rollout-progression", ROLLOUT_VAR, "1", "5")

    assert controls(ws) == {KILL_VAR: "false", FEATURE_VAR: "true", ROLLOUT_VAR: "5",
                            ALLOWLIST_VAR: APPROVED_ALLOWLIST}
    assert next_step(head(ws)["state"], runbook).step is None

    log = entries(ws)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert [e["action"] for e in log] == ["init", "set", "set", "set", "approve", "set", "verify", "set",
                                          "approve", "set"]
    assert all(e["operator"] in ("owner", "oncall", "approver") for e in log)
    # The state rebuilds from the log alone, the chain and the anchor hold.
    assert replay(AuditLog(env.log.path).entries()) == log[-1]["state"]
    verdict = audit_verify(env_of(ws))
    assert verdict["valid"] is True and verdict["firstBad"] is None and verdict["entries"] == len(log)
    # The other environment was not touched.
    assert controls(ws, "production") == SAFE and len(entries(ws, "production")) == 1


def test_beta_live_refuses_everything_but_rollback(ws):
    walk_to(ws, 7)
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=100"), message="done")
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=0"), message="rollout-zero-live")
    assert do_rollback(ws).ok
    assert controls(ws)[KILL_VAR] == "true"


# -- refusals by the runbook -------------------------------------------------------------------


def test_skipped_step_refused_and_recorded(ws):
    exc = assert_refused_and_recorded(ws, lambda: do_set(ws, f"{FEATURE_VAR}=true"), message="skipped")
    assert exc.next_step and "kill-switch-on" in exc.next_step


def test_ladder_jump_refused(ws):
    walk_to(ws, 3)
    ok = do_approve(ws, f"{ROLLOUT_VAR}=5", dr="DR-9")
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=5", dr="DR-9", approval=ok.approval_id),
                                message="ladder-jump")


def test_kill_switch_off_before_verify_refused(ws):
    walk_to(ws, 4)
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{KILL_VAR}=false"), message="skipped")


# -- who may act -------------------------------------------------------------------------------


def test_unknown_operator_refused_and_recorded(ws):
    exc = assert_refused_and_recorded(ws, lambda: do_set(ws, f"{KILL_VAR}=true", operator="mallory"),
                                      message="unknown operator 'mallory'")
    entry = head(ws)
    assert entry["operator"] == "mallory" and entry["roles"] == [] and entry["actor"]["known"] is False
    assert exc.exit_code == EXIT_REFUSED


def test_no_operator_refused_and_recorded(ws):
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{KILL_VAR}=true", operator=None),
                                message="no operator given")


def test_operator_from_environment_variable(ws, monkeypatch):
    monkeypatch.setenv("SLOTGEN_OPERATOR", "oncall")
    result = do_set(ws, f"{KILL_VAR}=true", operator=None)
    assert result.ok and entries(ws)[-1]["operator"] == "oncall"


def test_missing_role_refused_and_recorded(ws):
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{KILL_VAR}=true", operator="approver"),
                                message="may not change runbook controls")
    walk_to(ws, 3)
    assert_refused_and_recorded(ws, lambda: do_approve(ws, f"{ROLLOUT_VAR}=1", operator="owner"),
                                message="may not approve")
    assert_refused_and_recorded(ws, lambda: do_verify(ws, operator="approver"),
                                message="may not record a verification")


@pytest.mark.parametrize("dr", [None, "", "   "])
def test_missing_decision_record_refused_and_recorded(ws, dr):
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{KILL_VAR}=true", dr=dr),
                                message="missing decision record")


@pytest.mark.parametrize("dr", ["DR-0", "DR-", "dr-12", "ticket 5", "http://example.com/dr", "DR-12 x"])
def test_malformed_decision_record_is_bad_input_not_recorded(ws, dr):
    before = files_of(ws)
    with pytest.raises(BadInput):
        do_set(ws, f"{KILL_VAR}=true", dr=dr)
    with pytest.raises(BadInput):
        do_approve(ws, f"{ROLLOUT_VAR}=1", dr=dr)
    assert files_of(ws) == before


@pytest.mark.parametrize("dr", ["DR-123", "https://decisions.example.com/beta/42"])
def test_well_formed_decision_records(ws, dr):
    assert do_set(ws, f"{KILL_VAR}=true", dr=dr).ok
    assert entries(ws)[-1]["decisionRecord"] == dr


def test_combined_change_refused_and_recorded(ws):
    items = [f"{KILL_VAR}=true", f"{FEATURE_VAR}=true"]
    assert_refused_and_recorded(ws, lambda: do_set(ws, None, items=items), message="combined")
    assert head(ws)["details"]["items"] == items
    assert_refused_and_recorded(ws, lambda: do_approve(ws, None, items=[f"{ROLLOUT_VAR}=1", f"{ROLLOUT_VAR}=5"]),
                                message="combined")


@pytest.mark.parametrize("item", [f"{KILL_VAR}=yes", f"{ROLLOUT_VAR}=abc", f"{ROLLOUT_VAR}= 5", "OPENAI_API_KEY=x",
                                  "no-equals-sign"])
def test_bad_values_are_bad_input_not_recorded(ws, item):
    before = files_of(ws)
    with pytest.raises(BadInput):
        do_set(ws, item)
    assert files_of(ws) == before


# -- the allowlist step -----------------------------------------------------------------------


def _allowlist_variant(ws: Workspace, name: str, **changes: Any) -> str:
    import json

    doc = json.loads((ws.root / APPROVED_ALLOWLIST).read_text(encoding="utf-8"))
    doc.update(changes)
    (ws.root / "allowlists" / name).write_text(json.dumps(doc), encoding="utf-8")
    accept_policy(ws.root, verifier=passing)  # a new allowlist file is a pinned policy change
    return f"allowlists/{name}"


@pytest.mark.parametrize("value", ["/etc/passwd", "../allowlists/x.json", "runbooks/beta-enable.yaml",
                                   "allowlists/../slotgen.yaml", "allowlists/.hidden.json"])
def test_allowlist_outside_the_approved_folder_refused(ws, value):
    walk_to(ws, 2)
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ALLOWLIST_VAR}={value}"),
                                message="not an approved allowlist")


def test_disabled_allowlist_refused(ws):
    walk_to(ws, 2)
    path = _allowlist_variant(ws, "disabled.json", enabled=False)
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ALLOWLIST_VAR}={path}"), message="disabled")


def test_allowlist_wider_than_the_minimal_cohort_refused(ws):
    walk_to(ws, 2)
    import json

    rule = json.loads((ws.root / APPROVED_ALLOWLIST).read_text(encoding="utf-8"))["rules"][0]
    wide = _allowlist_variant(ws, "wide.json", rules=[rule, {**rule, "id": "second", "subject": "physics"}])
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ALLOWLIST_VAR}={wide}"), message="minimal cohort")
    listed = _allowlist_variant(ws, "listed.json", rules=[{**rule, "level": ["gcse", "a-level"]}])
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ALLOWLIST_VAR}={listed}"), message="minimal cohort")


def test_another_approved_minimal_allowlist_is_accepted(ws):
    walk_to(ws, 2)
    other = _allowlist_variant(ws, "beta-v2.json", version="v2")
    assert do_set(ws, f"{ALLOWLIST_VAR}={other}").ok
    assert controls(ws)[ALLOWLIST_VAR] == other


def test_missing_allowlist_file_not_recorded(ws):
    walk_to(ws, 2)
    before = files_of(ws)
    with pytest.raises((BadInput, Refused)):
        do_set(ws, f"{ALLOWLIST_VAR}=allowlists/nope.json")
    assert controls(ws)[ALLOWLIST_VAR] is None
    if files_of(ws) != before:  # a refusal may be recorded; nothing else
        assert head(ws)["action"] == "refused"


# -- approvals -------------------------------------------------------------------------------


def test_rollout_increase_without_approval_refused(ws):
    walk_to(ws, 3)
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=1"), message="needs an approval")
    assert controls(ws)[ROLLOUT_VAR] == "0"


def test_unknown_approval_refused(ws):
    walk_to(ws, 3)
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=1", approval="apv-0000000000"),
                                message="unknown, already used or expired")


def test_approval_for_another_value_refused(ws):
    walk_to(ws, 3)
    other = do_approve(ws, f"{ROLLOUT_VAR}=5", dr="DR-4").approval_id
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=1", dr="DR-4", approval=other),
                                message="not for this change")


def test_approval_under_another_decision_record_refused(ws):
    walk_to(ws, 3)
    apv = do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").approval_id
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=1", dr="DR-99", approval=apv),
                                message="not for this change")
    # The refusal did not use it up: the right change still goes through.
    assert do_set(ws, f"{ROLLOUT_VAR}=1", dr="DR-4", approval=apv).ok


def test_approval_for_another_environment_refused(ws):
    walk_to(ws, 3)
    prod = approve(env_of(ws, "production"), [f"{ROLLOUT_VAR}=1"], actor=actor(ws, "approver"),
                   decision_record="DR-4", dry_run=False, confirm=yes).approval_id
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=1", dr="DR-4", approval=prod),
                                message="unknown, already used or expired")


def test_approval_is_single_use(ws):
    walk_to(ws, 3)
    apv = do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").approval_id
    assert do_set(ws, f"{ROLLOUT_VAR}=1", dr="DR-4", approval=apv).ok
    assert apv not in head(ws)["state"]["approvals"]
    walk_more = [lambda: do_verify(ws), lambda: do_set(ws, f"{KILL_VAR}=false")]
    for action in walk_more:
        assert action().ok
    # Live at 1: the progression is the step the judge allows, so the approval is what is checked.
    # Were the used approval still there, it would be refused as bound to another value; it is gone.
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=5", dr="DR-4", approval=apv),
                                message="unknown, already used or expired")
    assert [e["approvalId"] for e in entries(ws) if e["action"] == "set" and e["approvalId"]] == [apv]


def test_approval_only_for_ladder_rollouts(ws):
    assert_refused_and_recorded(ws, lambda: do_approve(ws, f"{FEATURE_VAR}=true"), message="need none")
    assert_refused_and_recorded(ws, lambda: do_approve(ws, f"{ROLLOUT_VAR}=50"), message="not a rung")
    assert_refused_and_recorded(ws, lambda: do_approve(ws, f"{ROLLOUT_VAR}=0"), message="not a rung")


def _write_operators(ws: Workspace, text: str) -> None:
    (ws.root / "operators.yaml").write_text(text, encoding="utf-8")


def test_approver_cannot_use_own_approval(ws):
    keys = ws.root / "demo-keys"
    for suffix in ("", ".pub"):  # boss acts with the owner's rehearsal key
        (keys / f"boss{suffix}").write_bytes((keys / f"owner{suffix}").read_bytes())
    (keys / "boss").chmod(0o600)
    _write_operators(ws, f"""\
operators:
  - id: boss
    name: Owner and approver
    roles: [engineering-owner, approver]
    keys: ["{(keys / 'owner.pub').read_text().strip()}"]
  - id: approver
    name: Approver
    roles: [approver]
    keys: ["{(keys / 'approver.pub').read_text().strip()}"]
""")
    accept_policy(ws.root, verifier=passing)
    walk = [f"{KILL_VAR}=true", f"{FEATURE_VAR}=true", f"{ALLOWLIST_VAR}={APPROVED_ALLOWLIST}"]
    for item in walk:
        assert do_set(ws, item, operator="boss").ok
    own = do_approve(ws, f"{ROLLOUT_VAR}=1", operator="boss", dr="DR-4").approval_id
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=1", operator="boss", dr="DR-4", approval=own),
                                message="cannot use their own approval")
    other = do_approve(ws, f"{ROLLOUT_VAR}=1", operator="approver", dr="DR-4").approval_id
    assert do_set(ws, f"{ROLLOUT_VAR}=1", operator="boss", dr="DR-4", approval=other).ok


def test_expired_approval_refused(ws):
    path = ws.root / "runbooks" / "beta-enable.yaml"
    text = path.read_text(encoding="utf-8")
    assert "ttlHours: 24" in text
    path.write_text(text.replace("ttlHours: 24", "ttlHours: 0.0003"), encoding="utf-8")  # about 1 s
    accept_policy(ws.root, verifier=passing)
    walk_to(ws, 3)
    apv = do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").approval_id
    wait_until_expired(ws, apv)
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=1", dr="DR-4", approval=apv),
                                message="expired")
    assert controls(ws)[ROLLOUT_VAR] == "0"
    # A fresh approval for the same change still works.
    fresh = do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").approval_id
    assert do_set(ws, f"{ROLLOUT_VAR}=1", dr="DR-4", approval=fresh).ok


def test_refusal_after_an_approval_expired_keeps_the_log_valid(ws):
    # Regression: a refusal recorded the snapshot's state verbatim (expired approval kept), so replay
    # disagreed with it and audit verify reported the untampered log as bad at the refusal's seq.
    path = ws.root / "runbooks" / "beta-enable.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("ttlHours: 24", "ttlHours: 0.0003"), encoding="utf-8")
    accept_policy(ws.root, verifier=passing)
    apv = do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").approval_id
    wait_until_expired(ws, apv)
    with pytest.raises(Refused):
        do_set(ws, f"{FEATURE_VAR}=true")  # any refusal (here: skipped) after the expiry
    assert apv not in head(ws)["state"]["approvals"]
    verdict = audit_verify(env_of(ws))
    assert verdict["valid"] is True, verdict


# -- dry-run ------------------------------------------------------------------------------------


def test_dry_run_set_writes_nothing(ws):
    before = files_of(ws)
    result = do_set(ws, f"{KILL_VAR}=true", dry_run=True)
    assert result.ok and result.dry_run and result.step == "kill-switch-on" and result.audit_seq is None
    assert result.change == {"control": KILL_VAR, "old": "true", "new": "true"}
    assert files_of(ws) == before


def test_dry_run_refused_set_writes_nothing(ws):
    before = files_of(ws)
    for call in (lambda: do_set(ws, f"{FEATURE_VAR}=true", dry_run=True),
                 lambda: do_set(ws, f"{KILL_VAR}=true", operator="mallory", dry_run=True),
                 lambda: do_set(ws, f"{KILL_VAR}=true", dr=None, dry_run=True),
                 lambda: do_set(ws, None, items=[f"{KILL_VAR}=true", f"{FEATURE_VAR}=true"], dry_run=True)):
        with pytest.raises(Refused):
            call()
    assert files_of(ws) == before


def test_dry_run_approve_writes_nothing(ws):
    walk_to(ws, 3)
    before = files_of(ws)
    result = do_approve(ws, f"{ROLLOUT_VAR}=1", dry_run=True)
    assert result.ok and result.dry_run and result.approval_id is None
    with pytest.raises(Refused):
        do_approve(ws, f"{ROLLOUT_VAR}=1", operator="owner", dry_run=True)
    assert files_of(ws) == before


def test_dry_run_rollback_writes_nothing(ws):
    walk_to(ws, 6)
    before = files_of(ws)
    result = do_rollback(ws, dry_run=True, verifier=passing)
    assert result.ok and result.dry_run and result.change == {"control": KILL_VAR, "old": "false", "new": "true"}
    assert files_of(ws) == before
    assert controls(ws)[KILL_VAR] == "false"


def test_dry_run_break_glass_rollback_writes_nothing(ws):
    _hand_edit(ws, f"{KILL_VAR}=true", f"{KILL_VAR}=false")
    before = files_of(ws)
    result = do_rollback(ws, dry_run=True)
    assert result.dry_run
    assert files_of(ws) == before


# -- verification after a change ------------------------------------------------------------------


@pytest.mark.parametrize(("upto", "item"), [
    (1, f"{FEATURE_VAR}=true"),
    (5, f"{KILL_VAR}=false"),
])
def test_failing_verification_rolls_back(ws, upto, item):
    walk_to(ws, upto)
    before_seq = head(ws)["seq"]
    result = do_set(ws, item, verifier=failing)
    assert not result.ok and result.exit_code == EXIT_VERIFICATION_FAILED
    assert result.rollback is not None and result.rollback["engaged"] is True
    assert controls(ws)[KILL_VAR] == "true"
    new = entries(ws)[before_seq:]
    # Verified before the commit: the failed verification is recorded with the change it was for,
    # the change is never applied, and the kill-switch is engaged on top.
    assert [e["action"] for e in new] == ["verify", "rollback"]
    control, _, value = item.partition("=")
    assert new[0]["verification"]["passed"] is False and new[0]["verification"]["failed"] == ["path-behavior"]
    assert new[0]["details"]["trigger"] == "before-change"
    assert new[0]["details"]["proposed"]["control"] == control and new[0]["details"]["proposed"]["new"] == value
    assert new[1]["details"] == {"trigger": "verification-failed"}
    assert new[1]["reason"].startswith("automatic: verification failed")
    assert result.audit_seq == new[1]["seq"] == head(ws)["seq"]
    before = entries(ws)[before_seq - 1]["state"]["controls"]
    assert controls(ws) == {**before, KILL_VAR: "true"}  # nothing else changed
    assert new[1]["state"]["stepVerified"] is False and new[1]["state"]["rolledBack"] is True
    assert audit_verify(env_of(ws))["valid"] is True


def test_failing_recorded_verify_rolls_back(ws):
    walk_to(ws, 6)
    result = do_verify(ws, verifier=failing)
    assert result.exit_code == EXIT_VERIFICATION_FAILED and not result.ok
    assert controls(ws)[KILL_VAR] == "true"
    assert [e["action"] for e in entries(ws)[-2:]] == ["verify", "rollback"]


def test_unrecorded_verify_writes_nothing(ws):
    before = files_of(ws)
    result = verify_environment(env_of(ws), actor=actor(ws, None), decision_record=None, verifier=failing)
    assert result.exit_code == EXIT_VERIFICATION_FAILED and result.audit_seq is None
    assert files_of(ws) == before


def test_explicit_verify_off_step_does_not_complete_step_5(ws):
    walk_to(ws, 2)
    result = do_verify(ws)
    assert result.ok and result.step is None
    assert head(ws)["step"] is None and head(ws)["state"]["stepVerified"] is False


# -- rollback -------------------------------------------------------------------------------------


def test_rollback_from_live(ws):
    walk_to(ws, 7)
    before_seq = head(ws)["seq"]
    result = do_rollback(ws, reason="error rate", dr="DR-77", verifier=passing)
    assert result.ok and result.exit_code == EXIT_OK
    assert result.change == {"control": KILL_VAR, "old": "false", "new": "true"}
    assert result.rollback["engaged"] is True and result.rollback["auditSeq"] == before_seq + 1
    assert controls(ws) == {KILL_VAR: "true", FEATURE_VAR: "true", ROLLOUT_VAR: "5",
                            ALLOWLIST_VAR: APPROVED_ALLOWLIST}
    new = entries(ws)[before_seq:]
    assert [e["action"] for e in new] == ["rollback", "verify"]
    assert new[0]["reason"] == "error rate" and new[0]["decisionRecord"] == "DR-77"
    assert new[0]["operator"] == "oncall"
    assert new[1]["details"]["trigger"] == "after-rollback"
    assert result.audit_seq == new[1]["seq"]
    state = head(ws)["state"]
    assert next_step(state, env_of(ws).workspace.runbook).id == "verify"
    assert audit_verify(env_of(ws))["valid"] is True


@pytest.mark.parametrize("upto", range(8))
def test_rollback_from_any_state(ws, upto):
    walk_to(ws, upto)
    before = controls(ws)
    result = do_rollback(ws)
    assert result.ok and result.audit_seq == head(ws)["seq"]
    assert head(ws)["action"] == "rollback"
    assert controls(ws) == {**before, KILL_VAR: "true"}
    assert head(ws)["state"]["killConfirmed"] is True
    assert replay(entries(ws)) == head(ws)["state"]


@pytest.mark.parametrize("reason", [None, "", "  "])
def test_rollback_without_a_reason_is_recorded_as_none_given(ws, reason):
    walk_to(ws, 6)
    result = do_rollback(ws, reason=reason)
    assert result.ok and controls(ws)[KILL_VAR] == "true"
    assert head(ws)["action"] == "rollback" and head(ws)["reason"] == "(none given)"
    assert any("no --reason" in w for w in result.warnings)


@pytest.mark.parametrize("operator", [None, "mallory", "approver", ""])
def test_rollback_is_never_refused_for_identity(ws, operator):
    walk_to(ws, 6)
    result = do_rollback(ws, operator=operator)
    assert result.ok and controls(ws)[KILL_VAR] == "true"
    entry = head(ws)
    assert entry["action"] == "rollback" and entry["actor"]["identity"] == "unidentified"
    assert entry["operator"] == (operator or None) and entry["roles"] == []
    assert entry["actor"]["os"]["uid"] == __import__("os").getuid()
    assert audit_verify(env_of(ws))["valid"] is True


def test_rollback_by_an_allowed_operator_is_signed(ws):
    walk_to(ws, 6)
    assert do_rollback(ws, operator="oncall").ok
    entry = head(ws)
    assert entry["actor"]["identity"] == "signed" and entry["roles"] == ["on-call"]
    assert entry["signature"]["fingerprint"] == entry["actor"]["key"]


def test_rollback_failing_verification_after_it_exits_1(ws):
    walk_to(ws, 6)
    result = do_rollback(ws, verifier=failing)
    assert result.exit_code == EXIT_VERIFICATION_FAILED
    assert controls(ws)[KILL_VAR] == "true"


def _hand_edit(ws: Workspace, old: str, new: str) -> None:
    path = ws.environments_dir / f"{ENV}.env"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def crash_after_commit(ws: Workspace, item: str, operator: str) -> None:
    """A change whose process dies between its commit point and its controls write."""
    from slotgen_ops.files import hooks

    def crash(point: str) -> None:
        if point == "after-audit-append":
            raise KeyboardInterrupt  # stands for the process dying here

    hooks.install(crash)
    try:
        with pytest.raises(KeyboardInterrupt):
            do_set(ws, item, operator=operator)
    finally:
        hooks.install(None)


def test_rollback_with_hand_edited_controls_is_break_glass(ws):
    walk_to(ws, 3)
    _hand_edit(ws, f"{KILL_VAR}=true", f"{KILL_VAR}=false")  # someone switched the AI path on by hand
    _hand_edit(ws, f"{ROLLOUT_VAR}=0", f"{ROLLOUT_VAR}=1")   # ... and moved the rollout
    seq_before = head(ws)["seq"]
    result = do_rollback(ws, reason="hand edit found", verifier=passing)
    assert result.ok and result.exit_code == EXIT_OK
    assert result.extra.get("breakGlass") is True and result.rollback["breakGlass"] is True
    assert result.rollback["engaged"] is True
    found = controls(ws)
    assert found[KILL_VAR] == "true"
    assert found[ALLOWLIST_VAR] == APPROVED_ALLOWLIST  # the rest as found
    glass = list(AuditLog(ws.environments_dir / f"{ENV}.breakglass.jsonl").entries())
    assert len(glass) == 1
    assert glass[0]["action"] == "rollback" and glass[0]["operator"] == "oncall"
    assert glass[0]["old"] == "false" and glass[0]["new"] == "true"
    assert glass[0]["details"]["breakGlass"] is True and glass[0]["reason"] == "hand edit found"
    # The main audit log was not extended: it is the thing under doubt.
    assert head(ws)["seq"] == seq_before


def test_rollback_after_a_hand_edit_of_the_kill_switch_only_heals_it(ws):
    walk_to(ws, 3)
    _hand_edit(ws, f"{KILL_VAR}=true", f"{KILL_VAR}=false")
    result = do_rollback(ws, reason="hand edit found")
    # Engaging the kill-switch undid the only difference, so the audit log takes the rollback.
    assert result.ok and not result.extra.get("breakGlass") and head(ws)["action"] == "rollback"
    assert audit_verify(env_of(ws))["valid"] is True


def test_set_refused_as_integrity_failure_when_controls_hand_edited(ws):
    _hand_edit(ws, f"{FEATURE_VAR}=false", f"{FEATURE_VAR}=true")
    before = files_of(ws)
    with pytest.raises(IntegrityFailure) as info:
        do_set(ws, f"{KILL_VAR}=true")
    assert info.value.exit_code == EXIT_INTEGRITY
    with pytest.raises(IntegrityFailure):
        do_approve(ws, f"{ROLLOUT_VAR}=1")
    assert files_of(ws) == before
    # Rollback still works (break-glass), and changes stay refused afterwards.
    assert do_rollback(ws).ok
    with pytest.raises(IntegrityFailure):
        do_set(ws, f"{KILL_VAR}=true")


# -- compare-and-set -------------------------------------------------------------------------------


def test_expect_mismatch_refused_and_recorded(ws):
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{KILL_VAR}=true", expect="false"),
                                message="compare-and-set")
    walk_to(ws, 1)
    assert_refused_and_recorded(ws, lambda: do_set(ws, f"{FEATURE_VAR}=true", expect="true"),
                                message="compare-and-set")
    assert do_set(ws, f"{FEATURE_VAR}=true", expect="false").ok


def test_expect_empty_means_unset(ws):
    walk_to(ws, 2)
    assert do_set(ws, f"{ALLOWLIST_VAR}={APPROVED_ALLOWLIST}", expect="").ok


# -- the log after a mixed history ------------------------------------------------------------


def test_replay_and_audit_verify_after_refusals_and_rollbacks(ws):
    walk_to(ws, 4)
    with pytest.raises(Refused):
        do_set(ws, f"{KILL_VAR}=false")
    with pytest.raises(Refused):
        do_set(ws, f"{FEATURE_VAR}=true", operator="mallory")
    do_rollback(ws)
    do_verify(ws)
    with pytest.raises(Refused, match="needs an approval"):  # re-entry after a rollback (SPEC section 6)
        do_set(ws, f"{KILL_VAR}=false")
    approval = do_approve(ws, f"{KILL_VAR}=false").approval_id
    assert do_set(ws, f"{KILL_VAR}=false", approval=approval).ok
    env = env_of(ws)
    log = list(AuditLog(env.log.path).entries())
    assert replay(log) == log[-1]["state"]
    assert audit_verify(env)["valid"] is True


def test_an_approval_is_bound_to_the_old_value_too(ws):
    """SPEC section 7: bound to environment, control, old value, new value and decision record."""
    walk_to(ws, 3)  # rollout 0
    early = do_approve(ws, f"{ROLLOUT_VAR}=5", dr="DR-7").approval_id  # approved while the rollout was 0
    assert head(ws)["details"]["approval"]["old"] == "0"
    walk_to_rest = [
        lambda: do_set(ws, f"{ROLLOUT_VAR}=1", operator="oncall", dr="DR-4",
                       approval=do_approve(ws, f"{ROLLOUT_VAR}=1", dr="DR-4").approval_id),
        lambda: do_verify(ws, operator="owner", dr="DR-5"),
        lambda: do_set(ws, f"{KILL_VAR}=false", operator="owner", dr="DR-6"),
    ]
    for action in walk_to_rest:
        assert action().ok
    refused = assert_refused_and_recorded(
        ws, lambda: do_set(ws, f"{ROLLOUT_VAR}=5", operator="oncall", dr="DR-7", approval=early))
    assert "0 -> 5" in refused.message and "1 -> 5" in refused.message


@pytest.mark.parametrize(("expires", "expired"), [
    ("2999-01-01T00:00:00.000000Z", False), ("2000-01-01T00:00:00.000000Z", True),
    ("not a time", True), ("2999-01-01T00:00:00", True), (None, True),
    # 18:00 at +09:00 is 09:00 UTC, before 10:00 UTC: string order ("18" > "10") would call it unexpired.
    ("2026-11-23T18:00:00+09:00", True),
])
def test_approval_expiry_is_compared_as_times(expires, expired):
    from datetime import datetime, timezone

    from slotgen_ops.clock import expired as _expired

    assert _expired(expires, datetime(2026, 11, 23, 10, tzinfo=timezone.utc)) is expired
