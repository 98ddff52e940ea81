"""How an environment reads itself (`Environment.snapshot`) and what a writer does when the files disagree.

Each disagreement between the controls file and the audit log is made on real
files, the way a crash, a restore, a copy or a hand edit leaves them, and the
test pins what the operator is told: the one-line message, the remedy command,
and whether the state is accepted (an interrupted change, a kill-switch
engaged outside the log) or refused (exit 4). The last tests make a rollback
land inside a writer's critical section, between its commit point and its
controls write, through the write protocol's own hook point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers_runbook import report
from slotgen_ops.audit.canonical import entry_hash
from slotgen_ops.contract import KILL_VAR, ROLLOUT_VAR
from slotgen_ops.errors import IntegrityFailure, Refused
from slotgen_ops.files import hooks
from slotgen_ops.policy.authority import Actor, resolve_actor
from slotgen_ops.changes.steps import set_control, verify_environment
from slotgen_ops.changes.snapshot import ControlsDisagree
from slotgen_ops.changes.writer import Superseded
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.workspace import Workspace
from test_changes_service import (
    actor,
    controls,
    crash_after_commit,
    do_approve,
    entries,
    env_of,
    head,
    walk_to,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ENV = "staging"
REPAIR = f"slotgen audit repair --env {ENV}"


@pytest.fixture(autouse=True)
def _no_ambient_operator(monkeypatch):
    monkeypatch.delenv("SLOTGEN_OPERATOR", raising=False)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(root, resolve_actor(None, "owner"))
    return Workspace(root)


@pytest.fixture(autouse=True)
def _no_hook():
    yield
    hooks.install(None)


def controls_path(ws: Workspace) -> Path:
    return ws.environments_dir / f"{ENV}.env"


def log_path(ws: Workspace) -> Path:
    return ws.environments_dir / f"{ENV}.audit.jsonl"


def set_head_line(ws: Workspace, seq: int, digest: str) -> None:
    path = controls_path(ws)
    lines = path.read_text(encoding="utf-8").split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("# slotgen-head: "))
    lines[at] = f"# slotgen-head: seq={seq} hash={digest}"
    path.write_text("\n".join(lines), encoding="utf-8")


def replace_in_controls(ws: Workspace, old: str, new: str) -> None:
    path = controls_path(ws)
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def snapshot_error(ws: Workspace) -> IntegrityFailure:
    with pytest.raises(IntegrityFailure) as info:
        env_of(ws).snapshot()
    return info.value


# -- what is accepted ---------------------------------------------------------------------------------


def test_files_that_agree_give_the_log_head_and_nothing_pending(ws):
    walk_to(ws, 2)
    snap = env_of(ws).snapshot()
    assert snap.head == head(ws) and snap.state == head(ws)["state"]
    assert snap.pending is None and snap.engaged_outside is False and snap.needs_reconcile is False
    assert snap.controls.values == controls(ws)
    assert snap.head_id == (head(ws)["seq"], head(ws)["hash"])


def test_a_kill_switch_engaged_outside_the_log_is_accepted_and_flagged(ws):
    walk_to(ws, 6)
    replace_in_controls(ws, f"{KILL_VAR}=false", f"{KILL_VAR}=true")
    snap = env_of(ws).snapshot()
    assert snap.engaged_outside is True and snap.pending is None and snap.needs_reconcile is True


def test_controls_one_entry_behind_the_log_are_a_pending_change(ws):
    """A crash after the commit point, before the controls write: the head entry is pending."""
    walk_to(ws, 1)
    crash_after_commit(ws, "FEATURE_SLOTGEN_AI=true", "oncall")
    snap = env_of(ws).snapshot()
    assert snap.pending == head(ws) and head(ws)["action"] == "set"
    assert snap.controls.values["FEATURE_SLOTGEN_AI"] == "false" and snap.needs_reconcile is True
    # The next change closes it first: recorded as a rollback, fail closed, and says so.
    seq = head(ws)["seq"]
    result = verify_environment(env_of(ws), actor=actor(ws, "owner"), decision_record="DR-5",
                                verifier=lambda env, values: report(True))
    recovered = entries(ws)[seq]
    assert recovered["action"] == "rollback" and recovered["details"] == {"trigger": "recover", "pendingSeq": seq}
    why = (f"the change recorded at seq {seq} (set FEATURE_SLOTGEN_AI) was interrupted before its controls "
           "were written")
    assert recovered["reason"] == f"recovered, fail closed: {why}"
    assert recovered["old"] == "true" and recovered["new"] == "true"
    assert result.warnings == [f"{why}: recorded as rollback seq {recovered['seq']}, kill-switch engaged"]


def test_a_kill_switch_found_engaged_is_recorded_with_the_value_the_log_had(ws):
    walk_to(ws, 6)
    replace_in_controls(ws, f"{KILL_VAR}=false", f"{KILL_VAR}=true")
    seq = head(ws)["seq"]
    verify_environment(env_of(ws), actor=actor(ws, "owner"), decision_record="DR-7",
                       verifier=lambda env, values: report(True))
    recovered = entries(ws)[seq]
    assert recovered["reason"] == ("recovered, fail closed: the kill-switch was found engaged in the controls file "
                                   "but not in the audit log")
    assert recovered["details"] == {"trigger": "recover", "pendingSeq": None}
    assert recovered["old"] == "true"  # as found in the file


# -- what is refused --------------------------------------------------------------------------------


def test_a_missing_controls_file_names_rollback_then_repair(ws):
    controls_path(ws).unlink()
    exc = snapshot_error(ws)
    rollback = f"slotgen rollback --env {ENV} --reason TEXT"
    assert isinstance(exc, ControlsDisagree) and exc.remedy == rollback
    assert exc.message == (f"{controls_path(ws)}: controls file is missing; '{rollback}' writes it with the "
                           f"kill-switch engaged, then '{REPAIR}' restores the audit log's values")


def test_a_hand_damaged_controls_file_names_repair(ws):
    replace_in_controls(ws, f"{ROLLOUT_VAR}=0", f"{ROLLOUT_VAR}=0\nSURPRISE=1")
    exc = snapshot_error(ws)
    assert isinstance(exc, ControlsDisagree) and exc.remedy == REPAIR
    # SPEC section 14: the line and the byte are named.
    assert exc.message.endswith(f"staging.env:8: 'SURPRISE' is not a runtime control, at byte "
                                f"{controls_path(ws).read_bytes().index(b'SURPRISE')} (hand edit?); '{REPAIR}' rewrites "
                                "it from the audit log with the kill-switch engaged")


def test_a_controls_file_that_cannot_be_read_offers_no_rewrite(ws):
    path = controls_path(ws)
    path.unlink()
    path.mkdir()  # not a file: nothing slotgen could rewrite
    exc = snapshot_error(ws)
    assert not isinstance(exc, ControlsDisagree)
    assert exc.message == f"{path} is a directory, not a regular file: not read as a controls file"


def test_an_empty_log_is_refused(ws):
    log_path(ws).write_bytes(b"")
    assert snapshot_error(ws).message == (f"{log_path(ws)}: audit log is empty or missing; the controls cannot be "
                                          "trusted: restore the log from a backup (rollback still works)")


def _rewrite_head(ws: Workspace, change, rehash: bool) -> dict:
    lines = log_path(ws).read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[-1])
    change(entry)
    if rehash:
        entry["hash"] = entry_hash(entry)
    lines[-1] = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
    log_path(ws).write_bytes(b"".join(lines))
    return entry


def test_a_head_entry_that_fails_its_hash_is_refused(ws):
    walk_to(ws, 2)
    entry = _rewrite_head(ws, lambda e: e.update(reason="edited"), rehash=False)
    assert snapshot_error(ws).message == (
        f"{log_path(ws)}: the last entry (seq {entry['seq']}) fails its hash; 'slotgen audit verify --env {ENV}' "
        "names the first bad entry (rollback still works)")


def test_a_head_entry_without_a_state_is_refused(ws):
    walk_to(ws, 2)
    entry = _rewrite_head(ws, lambda e: e.update(state={"controls": "none"}), rehash=True)
    assert snapshot_error(ws).message == f"{log_path(ws)}: the last entry (seq {entry['seq']}) carries no state"


def test_a_controls_file_ahead_of_the_log_means_the_log_lost_entries(ws):
    walk_to(ws, 2)
    seq = head(ws)["seq"]
    set_head_line(ws, seq + 3, "a" * 64)
    exc = snapshot_error(ws)
    assert not isinstance(exc, ControlsDisagree)  # repair never hides lost entries
    assert exc.message == (
        f"{controls_path(ws)} records audit seq {seq + 3} but the audit log ends at seq {seq}: the log lost entries "
        f"(truncated or replaced?); restore it from a backup ('slotgen audit verify --env {ENV}' shows what is "
        "missing; 'slotgen audit repair' never hides lost entries; rollback still works)")


def test_a_controls_file_of_another_chain_means_the_log_was_replaced(ws):
    walk_to(ws, 2)
    entry = head(ws)
    set_head_line(ws, entry["seq"], "b" * 64)
    exc = snapshot_error(ws)
    assert not isinstance(exc, ControlsDisagree)
    assert exc.message == (
        f"{controls_path(ws)} records audit seq {entry['seq']} with hash bbbbbbbbbbbb… but the log's entry "
        f"{entry['seq']} has hash {entry['hash'][:12]}…: the log was rewritten or replaced, or the controls file "
        f"comes from elsewhere; 'slotgen audit verify --env {ENV}' checks the whole chain, with '--checkpoint FILE' "
        "against a checkpoint kept outside (rollback still works)")


@pytest.mark.parametrize("differs", [False, True])
def test_an_older_controls_file_names_repair(ws, differs):
    walk_to(ws, 3)
    seq = head(ws)["seq"]
    set_head_line(ws, seq - 2, "c" * 64)
    if differs:
        replace_in_controls(ws, f"{ROLLOUT_VAR}=0", f"{ROLLOUT_VAR}=1")
    exc = snapshot_error(ws)
    said = f': {ROLLOUT_VAR} recorded "0", found "1"' if differs else " (the values agree, the head line does not)"
    assert isinstance(exc, ControlsDisagree) and exc.remedy == REPAIR
    assert exc.message == (
        f"{controls_path(ws)} records audit seq {seq - 2} but the audit log's last entry is seq {seq} (an older or "
        f"copied controls file?){said}; '{REPAIR}' restores the log's values with the kill-switch engaged")


# -- a rollback inside a writer's critical section ---------------------------------------------------


def once_at(point: str, action):
    fired: list[str] = []

    def hook(name: str) -> None:
        if name == point and not fired:
            fired.append(name)
            action()

    return hook


def _declared_verify(ws: Workspace):
    """Record a verify entry as a declared (unsigned) operator: one pass under the lock, no signing round."""
    from slotgen_ops.changes.entries import new_entry

    who = Actor(None, None, identity="unidentified")
    env = env_of(ws)
    return env.transact(who, lambda w: w.record(new_entry(env.name, who, w.snapshot.state, action="verify",
                                                          details={"trigger": "operator"})))


def test_a_rollback_between_commit_and_controls_write_supersedes_the_entry(ws):
    walk_to(ws, 6)  # the AI path on at 1 %
    hooks.install(once_at("after-audit-append", lambda: env_of(ws).controls.engage()))
    with pytest.raises(Superseded) as info:
        _declared_verify(ws)
    committed, rolled = entries(ws)[-2:]
    assert committed["action"] == "verify"
    assert info.value.audit_seq == rolled["seq"]
    assert info.value.message == (f"superseded: a rollback engaged the kill-switch while this change (seq "
                                  f"{committed['seq']}) was being applied; recorded as seq {rolled['seq']}, nothing "
                                  "exposed")
    assert {k: rolled[k] for k in ("env", "action", "operator", "control", "old", "new", "decisionRecord", "reason",
                                   "details")} == {
        "env": ENV, "action": "rollback", "operator": None, "control": KILL_VAR, "old": "false", "new": "true",
        "decisionRecord": None,
        "reason": f"a concurrent rollback engaged the kill-switch while seq {committed['seq']} was being applied; "
                  "that change never reached the controls",
        "details": {"trigger": "concurrent-rollback", "supersededSeq": committed["seq"]}}
    assert controls(ws)[KILL_VAR] == "true"
    snap = env_of(ws).snapshot()
    assert snap.head == rolled and snap.needs_reconcile is False


def test_a_signed_step_overtaken_inside_the_lock_is_closed_and_superseded(ws):
    """Signed, the entry is written on the second pass; the rollback that lands then is closed as an
    interrupted change on the third, and the step itself is recorded as superseded: nothing exposed."""
    walk_to(ws, 6)
    apv = do_approve(ws, f"{ROLLOUT_VAR}=5", dr="DR-7").approval_id
    hooks.install(once_at("after-audit-append", lambda: env_of(ws).controls.engage()))
    with pytest.raises(Refused) as info:
        set_control(env_of(ws), [f"{ROLLOUT_VAR}=5"], actor=actor(ws, "oncall"), decision_record="DR-7",
                    approval_id=apv, expect=None, dry_run=False, confirm=lambda p: True,
                    verifier=lambda e, v: report(True))
    applied, closed, superseded = entries(ws)[-3:]
    assert (applied["action"], applied["new"]) == ("set", "5")
    assert closed["action"] == "rollback" and closed["details"] == {"trigger": "recover", "pendingSeq": applied["seq"]}
    assert superseded["action"] == "verify" and superseded["details"]["superseded"] is True
    assert info.value.message.startswith("superseded: ")
    # The step reached the log and the controls only behind the engaged kill-switch.
    assert controls(ws)[KILL_VAR] == "true" and controls(ws)[ROLLOUT_VAR] == "5"


def test_a_controls_file_changed_under_the_lock_otherwise_is_refused(ws):
    walk_to(ws, 6)
    hooks.install(once_at("after-audit-append",
                          lambda: replace_in_controls(ws, f"{ROLLOUT_VAR}=1", f"{ROLLOUT_VAR}=3")))
    with pytest.raises(ControlsDisagree) as info:
        _declared_verify(ws)
    seq = head(ws)["seq"]
    assert info.value.remedy == REPAIR
    assert info.value.message == (
        f"{controls_path(ws)} changed under the lock, and not by a rollback: {ROLLOUT_VAR} recorded \"1\", found "
        f"\"3\" (seq {seq} recorded); '{REPAIR}' restores the recorded values with the kill-switch engaged")


# -- more disagreements, each with its own words ---------------------------------------------------------


def test_a_hand_edited_value_under_the_log_head_names_repair(ws):
    walk_to(ws, 2)
    replace_in_controls(ws, f"{ROLLOUT_VAR}=0", f"{ROLLOUT_VAR}=7")
    exc = snapshot_error(ws)
    assert isinstance(exc, ControlsDisagree) and exc.remedy == REPAIR
    assert exc.message == (
        f"{controls_path(ws)}: the controls differ from the audit log at seq {head(ws)['seq']} (hand edit?): "
        f"{ROLLOUT_VAR} recorded \"0\", found \"7\"; '{REPAIR}' restores the recorded values with the kill-switch "
        "engaged")


def test_a_hand_edit_over_an_interrupted_change_names_repair(ws):
    walk_to(ws, 1)
    crash_after_commit(ws, "FEATURE_SLOTGEN_AI=true", "oncall")
    replace_in_controls(ws, f"{ROLLOUT_VAR}=0", f"{ROLLOUT_VAR}=7")
    exc = snapshot_error(ws)
    behind = head(ws)["seq"] - 1
    assert isinstance(exc, ControlsDisagree) and exc.remedy == REPAIR
    assert exc.message == (
        f"{controls_path(ws)}: the controls differ from the audit log at seq {behind} (hand edit?): "
        f"{ROLLOUT_VAR} recorded \"0\", found \"7\"; '{REPAIR}' restores the log's values with the kill-switch "
        "engaged")


def test_a_head_whose_hash_cannot_even_be_computed_is_refused(ws):
    walk_to(ws, 2)
    entry = _rewrite_head(ws, lambda e: e.update(reason=1.5), rehash=False)  # canonical form refuses floats
    assert snapshot_error(ws).message.startswith(f"{log_path(ws)}: the last entry (seq {entry['seq']}) fails its hash")


def test_one_entry_behind_needs_the_hash_of_the_entry_before_too(ws):
    walk_to(ws, 3)
    seq = head(ws)["seq"]
    set_head_line(ws, seq - 1, "d" * 64)  # the right seq, the wrong chain
    exc = snapshot_error(ws)
    assert isinstance(exc, ControlsDisagree)
    assert f"records audit seq {seq - 1} but the audit log's last entry is seq {seq}" in exc.message


@pytest.mark.parametrize("present", ["log", "controls"])
def test_an_environment_is_never_created_over_one_half_there(ws, present):
    from slotgen_ops.errors import BadInput
    from slotgen_ops.changes.environment import create_environment

    env = env_of(ws)
    (controls_path(ws) if present == "log" else log_path(ws)).unlink()
    before = {p.name: p.read_bytes() for p in ws.environments_dir.iterdir() if p.is_file()}
    with pytest.raises(BadInput) as info:
        create_environment(env, {"action": "init"}, resolve_actor(None, "owner"))
    assert info.value.message == (f"environment '{ENV}' already exists in {ws.root} (a second operator clones the "
                                  "workspace instead)")
    assert {p.name: p.read_bytes() for p in ws.environments_dir.iterdir() if p.is_file()} == before
