"""8 processes x 50 approvals and changes racing on one environment (real processes).

With the lock, every entry is present once, the chain verifies, the controls
agree with the log and no update is lost (every approval is in the final
state). The same run with the lock disabled must break one of those, which
proves the test can see a race.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

WORKERS = 8
OPS = 50


def _worker(root: str, index: int, disable_lock: bool, queue) -> None:
    if disable_lock:  # test-only: the package itself has no switch for this
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        import faultwrap

        faultwrap.disable_lock()
        faultwrap.install([], widen_race=True)
    from slotgen_ops.errors import SlotgenError
    from slotgen_ops.changes.steps import approve, set_control
    from walked import demo_actor
    from slotgen_ops.workspace import Workspace

    env = Workspace(Path(root)).environment("staging")
    approvals, refusals, errors = 0, 0, 0
    for i in range(OPS):
        try:
            if index % 2 == 0:
                actor = demo_actor(env.workspace, "approver")
                result = approve(env, ["SLOTGEN_AI_ROLLOUT_PERCENT=1"], actor=actor, decision_record=f"DR-{index + 1}{i:03d}",
                                 dry_run=False, confirm=lambda preview: True)
                approvals += result.ok
            else:  # a change that skips a step: refused, and the refusal is recorded
                actor = demo_actor(env.workspace, "oncall")
                set_control(env, ["SLOTGEN_AI_KILL=false"], actor=actor, decision_record="DR-9", approval_id=None,
                            expect=None, dry_run=False, confirm=lambda preview: True,
                            verifier=lambda e, c: {"passed": True, "checks": []})
        except SlotgenError as exc:
            if exc.exit_code == 3:
                refusals += 1
            else:
                errors += 1
        except Exception:  # noqa: BLE001 - an unlocked race may break anything; count it
            errors += 1
    queue.put((index, approvals, refusals, errors))


def _race(root: Path, disable_lock: bool) -> list[tuple[int, int, int, int]]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(root), i, disable_lock, queue)) for i in range(WORKERS)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    return results


def _workspace(tmp_path: Path) -> Path:
    from slotgen_ops.policy.authority import Actor
    from slotgen_ops.workspace.init import init_workspace

    root = tmp_path / "ws"
    init_workspace(root, Actor(claimed=None, operator=None))
    return root


def _outcome(root: Path) -> dict:
    from slotgen_ops.errors import SlotgenError
    from slotgen_ops.oversight.report import audit_verify
    from slotgen_ops.runbook.state import replay
    from slotgen_ops.workspace import Workspace

    env = Workspace(root).environment("staging")
    out: dict = {}
    try:
        out["verify"] = audit_verify(env)
    except SlotgenError as exc:
        out["verify"] = {"valid": False, "reason": exc.message}
    try:
        entries = list(env.log.entries())
        out["entries"] = entries
        out["replayed"] = replay(entries)
    except SlotgenError:
        out["entries"], out["replayed"] = [], None
    try:
        out["snapshot"] = env.snapshot()
    except SlotgenError as exc:
        out["snapshot"] = exc
    return out


def test_racing_changes_and_approvals_lose_nothing(tmp_path):
    root = _workspace(tmp_path)
    results = _race(root, disable_lock=False)
    out = _outcome(root)
    assert all(errors == 0 for _, _, _, errors in results), results
    assert sum(r[1] for r in results) == (WORKERS // 2) * OPS
    assert sum(r[2] for r in results) == (WORKERS // 2) * OPS
    assert out["verify"]["valid"], out["verify"]
    entries = out["entries"]
    assert [e["seq"] for e in entries] == list(range(1, 1 + 1 + WORKERS * OPS))
    approvals = [e for e in entries if e["action"] == "approve"]
    refusals = [e for e in entries if e["action"] == "refused"]
    assert len(approvals) == len({e["approvalId"] for e in approvals}) == (WORKERS // 2) * OPS
    assert len(refusals) == (WORKERS // 2) * OPS
    assert len({e["decisionRecord"] for e in approvals}) == len(approvals), "each approval recorded once"
    head_state = entries[-1]["state"]
    assert len(head_state["approvals"]) == (WORKERS // 2) * OPS, "no lost update"
    assert out["replayed"] == head_state
    assert not isinstance(out["snapshot"], Exception)


def test_same_race_without_the_lock_is_caught(tmp_path):
    root = _workspace(tmp_path)
    results = _race(root, disable_lock=True)
    out = _outcome(root)
    entries = out["entries"]
    head_approvals = len(entries[-1]["state"]["approvals"]) if entries and isinstance(entries[-1].get("state"), dict) else 0
    broken = (
        not out["verify"]["valid"]
        or any(r[3] for r in results)
        or len(entries) != 1 + WORKERS * OPS
        or head_approvals != (WORKERS // 2) * OPS
        or isinstance(out["snapshot"], Exception)
    )
    assert broken, "with the lock disabled the race must show; otherwise this test could not see one"
