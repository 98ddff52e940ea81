"""A hand edit that turns the kill-switch off is never read as agreement (SPEC sections 3 and 6).

`Environment.snapshot` compares the controls file's values with the state the
log's head carries. One disagreement is accepted: the kill-switch engaged in
the file but not in the log (a rollback engages first and records after). Its
mirror image, the file saying off where the log says engaged, is a hand edit:
refused (exit 4) with the repair that restores the log's values, whether the
file is at the log's head or one entry behind it (an interrupted change).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slotgen_ops.contract import KILL_VAR
from slotgen_ops.files import hooks
from slotgen_ops.policy.authority import resolve_actor
from slotgen_ops.changes.environment import _agrees
from slotgen_ops.changes.snapshot import ControlsDisagree
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.workspace import Workspace
from test_changes_service import crash_after_commit, do_set, env_of, head, walk_to

ENV = "staging"
REPAIR = f"slotgen audit repair --env {ENV}"


@pytest.fixture(autouse=True)
def _no_hook(monkeypatch):
    monkeypatch.delenv("SLOTGEN_OPERATOR", raising=False)
    yield
    hooks.install(None)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(root, resolve_actor(None, "owner"))
    return Workspace(root)


def _turn_kill_off_by_hand(ws: Workspace) -> None:
    path = ws.environments_dir / f"{ENV}.env"
    text = path.read_text(encoding="utf-8")
    assert f"{KILL_VAR}=true\n" in text
    path.write_text(text.replace(f"{KILL_VAR}=true\n", f"{KILL_VAR}=false\n"), encoding="utf-8")


def test_agreement_accepts_only_the_kill_switch_engaged_outside_the_log():
    recorded = {KILL_VAR: "true", "FEATURE_SLOTGEN_AI": "true"}
    assert _agrees(dict(recorded), recorded) == (True, False)
    assert _agrees({**recorded, KILL_VAR: "false"}, recorded) == (False, True)
    assert _agrees({**recorded, KILL_VAR: None}, recorded)[0] is False
    assert _agrees({**recorded, KILL_VAR: "true"}, {**recorded, KILL_VAR: "false"}) == (True, True)


def test_a_hand_edit_turning_the_kill_switch_off_at_the_head_is_refused(ws):
    _turn_kill_off_by_hand(ws)
    with pytest.raises(ControlsDisagree) as info:
        env_of(ws).snapshot()
    assert info.value.remedy == REPAIR
    assert f"{KILL_VAR} recorded \"true\", found \"false\"" in info.value.message
    assert f"at seq {head(ws)['seq']} (hand edit?)" in info.value.message


def test_a_hand_edit_turning_the_kill_switch_off_under_an_interrupted_change_is_refused(ws):
    walk_to(ws, 1)
    crash_after_commit(ws, "FEATURE_SLOTGEN_AI=true", "oncall")
    _turn_kill_off_by_hand(ws)
    with pytest.raises(ControlsDisagree) as info:
        env_of(ws).snapshot()
    assert info.value.remedy == REPAIR
    assert f"{KILL_VAR} recorded \"true\", found \"false\"" in info.value.message
    assert f"at seq {head(ws)['seq'] - 1} (hand edit?)" in info.value.message


def test_a_writer_refuses_to_build_on_it(ws):
    walk_to(ws, 1)
    _turn_kill_off_by_hand(ws)
    before = head(ws)["seq"]
    with pytest.raises(ControlsDisagree):
        do_set(ws, "FEATURE_SLOTGEN_AI=true", operator="oncall")
    assert head(ws)["seq"] == before
