"""The approver's model of an audit log (SPEC section 11), built from real walked workspaces: one row per change
with who applied it, who approved it and what its verification showed; break-glass acts in the same timeline,
folded or not; exposure over time from what each entry recorded."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from slotgen_ops.errors import Refused
from slotgen_ops.audit.timeline import build, entry_matches, select, verification_text
from slotgen_ops.changes.breakglass import BreakGlassJournal
from slotgen_ops.changes.steps import set_control
from slotgen_ops.changes.repair import repair_log
from slotgen_ops.changes.rollback import rollback
from slotgen_ops.verification.samples import run_verification
from slotgen_ops.workspace import Workspace
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lock_holder import lock_held  # noqa: E402
from walked import demo_actor, walk  # noqa: E402

KILL, FEATURE, ROLLOUT, ALLOW = ("SLOTGEN_AI_KILL", "FEATURE_SLOTGEN_AI", "SLOTGEN_AI_ROLLOUT_PERCENT",
                                 "SLOTGEN_AI_ALLOWLIST_PATH")
APPROVED = "allowlists/slot-generation-allowlist.v1.json"


@pytest.fixture
def endpoint():
    with FakeOpenAIServer("ok") as server:
        yield server


def entries(root: Path, env: str = "staging") -> list[dict]:
    return [json.loads(line) for line in (root / "environments" / f"{env}.audit.jsonl").read_text().splitlines()]


def glass(root: Path, env: str = "staging") -> list[dict]:
    """The break-glass journal as `audit show` hands it to the model."""
    environment = Workspace(root).environment(env)
    folded = set((environment.log.head() or {}).get("state", {}).get("breakGlassFolded") or [])
    return [{"journal": str(path), "folded": entry["hash"] in folded, "entry": entry}
            for path, entry in BreakGlassJournal(environment).entries()]


def by_seq(model: dict) -> dict[int, dict]:
    return {row["seq"]: row for row in model["changes"] if row["seq"] is not None}


def test_a_walked_log_is_one_row_per_change_with_who_applied_and_who_approved(tmp_path, endpoint):
    root = tmp_path / "ws"
    walk(root, 7, endpoint.base_url)
    log = entries(root)
    model = build(log)
    rows = by_seq(model)
    # init, config-accept, five steps and the step-5 verification's step: approvals and verifications are not rows
    assert [(r["seq"], r["action"], r["step"]) for r in model["changes"]] == [
        (1, "init", None), (3, "config-accept", None), (4, "set", "kill-switch-on"), (5, "set", "feature-flag-on"),
        (6, "set", "allowlist-enable"), (8, "set", "rollout-canary"), (10, "set", "kill-switch-off"),
        (12, "set", "rollout-progression")]
    signer = {e["seq"]: e["signature"]["fingerprint"] for e in log if e.get("signature")}
    canary = rows[8]
    assert (canary["control"], canary["old"], canary["new"]) == (ROLLOUT, "0", "1")
    assert canary["appliedBy"] == {"operator": "oncall", "name": "On-call Operator (demo)", "roles": ["on-call"],
                                   "identity": "signed", "known": True, "key": signer[8], "signed": True}
    approval = log[6]
    assert approval["action"] == "approve" and approval["seq"] == 7
    assert canary["approval"]["id"] == approval["approvalId"] == canary["approvalId"]
    assert (canary["approval"]["approver"], canary["approval"]["seq"], canary["approval"]["ts"]) == (
        "approver", 7, approval["ts"])
    assert canary["approval"]["approverKey"] == signer[7] != signer[8], "the approver's own key, not the operator's"
    assert rows[12]["approval"]["seq"] == 11 and rows[3]["approval"]["seq"] == 2
    assert all(rows[s]["approval"] is None for s in (1, 4, 5, 6, 10))
    assert [a["usedBy"] for a in model["approvals"]] == [3, 8, 12]
    # each change carries its own verification; the step-5 verify goes on the change it verified
    assert all(rows[s]["verification"]["passed"] for s in (3, 4, 5, 6, 8, 10, 12))
    assert [(v["seq"], v["step"], v["passed"], v["by"]) for v in canary["verifications"]] == [(9, "verify", True, "owner")]
    assert verification_text(canary) == "pass; step verify (seq 9): pass"
    assert rows[3]["control"] == "policy" and rows[3]["old"] == log[0]["state"]["policy"]["digest"]
    assert rows[3]["new"] == log[2]["state"]["policy"]["digest"] != rows[3]["old"]
    assert not any(r["refused"] or r["rollback"] or r["breakGlass"] for r in model["changes"])
    # exposure: a point wherever the controls changed, from each entry's recorded state
    assert [(p["seq"], p["killEngaged"], p["featureOn"], p["rolloutPercent"], p["allowlist"], p["open"])
            for p in model["exposure"]] == [
        (1, True, False, 0, None, False), (5, True, True, 0, None, False), (6, True, True, 0, APPROVED, False),
        (8, True, True, 1, APPROVED, False), (10, False, True, 1, APPROVED, True), (12, False, True, 5, APPROVED, True)]


def test_rollbacks_refusals_and_failed_verifications_are_marked(tmp_path, endpoint):
    root = tmp_path / "ws"
    ws = walk(root, 7, endpoint.base_url)
    env = Workspace(root).environment("staging")
    # A refusal: an operator not in the roster asks for a step; recorded as claimed, nothing applied.
    with pytest.raises(Refused):
        set_control(env, [f"{ROLLOUT}=25"], actor=demo_actor(ws, "<script>alert(1)</script>"), decision_record="DR-5",
                    approval_id=None, expect=None, dry_run=False, confirm=lambda p: True, verifier=run_verification)
    # A step down whose verification fails: the kill-switch is engaged automatically.
    endpoint.set_mode("http500")
    failed = set_control(Workspace(root).environment("staging"), [f"{ROLLOUT}=1"], actor=demo_actor(ws, "oncall"),
                         decision_record="DR-6", approval_id=None, expect=None, dry_run=False,
                         confirm=lambda p: True, verifier=run_verification)
    assert not failed.ok
    endpoint.set_mode("ok")
    # An operator's rollback, verified afterwards.
    done = rollback(Workspace(root).environment("staging"), actor=demo_actor(ws, "owner"), reason="incident 7",
                    decision_record="DR-7", dry_run=False, verifier=run_verification)
    assert done.ok
    log = entries(root)
    model = build(log)
    tail = [r for r in model["changes"] if r["seq"] > 12]
    refused, automatic, manual = tail
    assert refused["refused"] and refused["action"] == "refused" and not refused["rollback"]
    assert refused["appliedBy"]["operator"] == "<script>alert(1)</script>"
    assert (refused["control"], refused["new"], refused["decisionRecord"]) == (ROLLOUT, "25", "DR-5")
    assert "unknown operator" in refused["refusal"]
    assert automatic["rollback"] and automatic["trigger"] == "verification-failed"
    assert (automatic["control"], automatic["old"], automatic["new"]) == (KILL, "false", "true")
    assert [(v["trigger"], v["passed"]) for v in automatic["verifications"]] == [("before-change", False)]
    assert verification_text(automatic).startswith("before the change (seq ") and "FAIL" in verification_text(automatic)
    assert manual["rollback"] and manual["appliedBy"]["operator"] == "owner" and manual["reason"] == "incident 7"
    assert [(v["trigger"], v["passed"]) for v in manual["verifications"]] == [("after-rollback", True)]
    # every verify entry of the log is on exactly one row, and no approve or verify entry is a row of its own
    linked = [v["seq"] for r in model["changes"] for v in r["verifications"]]
    assert sorted(linked) == [e["seq"] for e in log if e["action"] == "verify"]
    assert model["exposure"][-1]["killEngaged"] is True and model["exposure"][-1]["rolloutPercent"] == 5
    # filters
    assert [r["seq"] for r in select(model["changes"], operator="approver")] == [3, 8, 12]
    assert [r["seq"] for r in select(model["changes"], action="approve")] == [3, 8, 12]
    assert [r["seq"] for r in select(model["changes"], action="verify")] == [8, automatic["seq"], manual["seq"]]
    assert [r["seq"] for r in select(model["changes"], control=KILL)] == [4, 10, automatic["seq"], manual["seq"]]
    assert [r["seq"] for r in select(model["changes"], decision_record="DR-7")] == [manual["seq"]]
    assert [r["seq"] for r in select(model["changes"], action="refused")] == [refused["seq"]]
    assert [e["seq"] for e in log if entry_matches(e, control="policy")] == [2, 3]


def test_a_break_glass_act_is_one_row_at_its_time_folded_or_not(tmp_path, endpoint):
    root = tmp_path / "ws"
    ws = walk(root, 7, endpoint.base_url)
    with lock_held(root / "environments"):  # another writer holds the lock: the rollback goes to the journal
        done = rollback(Workspace(root).environment("staging"), actor=demo_actor(ws, "oncall"), reason="incident",
                        decision_record=None, dry_run=False, verifier=None)
    assert done.ok and done.extra.get("breakGlass") is True
    journal = glass(root)
    assert [g["folded"] for g in journal] == [False]
    before = build(entries(root), journal)
    act = [r for r in before["changes"] if r["breakGlass"]]
    assert len(act) == 1 and act[0] is before["changes"][-1]
    act = act[0]
    assert act["seq"] is None and act["rollback"] and act["breakGlass"]["folded"] is False
    assert act["breakGlass"]["journalSeq"] == 1 and act["breakGlass"]["journal"].endswith("staging.breakglass.jsonl")
    assert act["appliedBy"]["operator"] == "oncall" and act["reason"] == "incident"
    assert (act["old"], act["new"]) == ("false", "true")
    # the kill-switch was engaged at the act, though no log entry says so yet
    assert before["exposure"][-1]["killEngaged"] is True and before["exposure"][-1]["breakGlass"] is True
    assert before["exposure"][-1]["ts"] == journal[0]["entry"]["ts"]

    repair_log(Workspace(root).environment("staging"), "owner", str(root / "demo-keys" / "owner"))  # folds it
    journal = glass(root)
    assert [g["folded"] for g in journal] == [True]
    after = build(entries(root), journal)
    folded = [r for r in after["changes"] if r["breakGlass"]]
    assert len(folded) == 1, "the act and the entry that folded it are one row"
    folded = folded[0]
    fold_entry = entries(root)[-1]
    assert fold_entry["details"]["trigger"] == "break-glass-fold"
    assert folded["seq"] == fold_entry["seq"] and folded["breakGlass"]["foldedSeq"] == fold_entry["seq"]
    assert folded["breakGlass"]["folded"] is True and folded["breakGlass"]["foldedBy"] == "owner"
    assert folded["ts"] == journal[0]["entry"]["ts"] < fold_entry["ts"], "at the time of the act"
    assert folded["appliedBy"]["operator"] == "oncall" and folded["reason"] == "incident"
    assert len(after["changes"]) == len(before["changes"])
    # without its journal (moved away), the fold entry alone is still the break-glass row
    alone = build(entries(root))
    row = [r for r in alone["changes"] if r["breakGlass"]][0]
    assert row["seq"] == fold_entry["seq"] and row["appliedBy"]["operator"] == "oncall"
    assert row["reason"] == "incident" and row["ts"] == journal[0]["entry"]["ts"]


def test_a_break_glass_act_overrides_the_state_an_entry_recorded_after_it(tmp_path, endpoint):
    """An entry written after the act by a writer that had judged before it records the kill-switch off; the
    controls had it engaged from the act on, and so does the exposure series, until a step turns it off."""
    root = tmp_path / "ws"
    walk(root, 7, endpoint.base_url)
    log = entries(root)
    act = {**log[-1], "action": "rollback", "control": KILL, "old": "false", "new": "true", "seq": 1,
           "ts": log[-2]["ts"], "hash": "f" * 64}
    model = build(log, [{"journal": "j", "folded": False, "entry": act}])
    last = model["exposure"][-1]
    assert last["seq"] == 12 and last["killEngaged"] is True and last["rolloutPercent"] == 5
    assert [r["seq"] for r in model["changes"]][-2:] == [None, 12]


def test_entries_of_unexpected_shape_are_shown_as_missing_never_an_exception(tmp_path, endpoint):
    root = tmp_path / "ws"
    walk(root, 4, endpoint.base_url)
    log = entries(root)
    mangled = [dict(e) for e in log]
    mangled[3].update(actor="someone", signature=[1], verification=["passed"], roles="on-call", ts=17)
    mangled[5].update(details="x", approvalId=5, state=None, seq="8")
    mangled.append("not an entry")  # type: ignore[arg-type]
    model = build(mangled, [{"entry": "nope"}, {"entry": {"action": "rollback", "ts": None}}])
    row = next(r for r in model["changes"] if r["action"] == "set" and r["step"] == "kill-switch-on")
    assert row["appliedBy"]["key"] is None and row["verification"] is None and row["ts"] == "17"
    assert verification_text(row) == ""
    assert select(model["changes"], since=datetime(2000, 1, 1, tzinfo=timezone.utc))
