"""`audit repair` never lowers safety (SPEC section 6), as a property over logs and torn tails.

For any log the change service can write and any torn tail (garbage appended
after the last line, or the last entry's own line cut short), `audit repair`
either refuses and changes nothing, or leaves an environment that is at least
as safe as before: the kill-switch engaged if it was, engaged after any cut,
every entry at or below the head the controls file recorded kept byte for
byte, and the chain valid.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers_runbook import APPROVED_ALLOWLIST, report
from slotgen_ops.contract import KILL_VAR
from slotgen_ops.errors import SlotgenError
from slotgen_ops.policy.authority import resolve_actor
from walked import demo_actor
from slotgen_ops.changes.steps import approve, set_control, verify_environment
from slotgen_ops.changes.rollback import rollback
from slotgen_ops.changes.controls_file import lenient_controls, runtime_values
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.changes.repair import repair_log
from slotgen_ops.oversight.report import audit_verify
from slotgen_ops.workspace import Workspace

WALK = [
    ("set", "SLOTGEN_AI_KILL=true"), ("set", "FEATURE_SLOTGEN_AI=true"),
    ("set", f"SLOTGEN_AI_ALLOWLIST_PATH={APPROVED_ALLOWLIST}"), ("approved", "SLOTGEN_AI_ROLLOUT_PERCENT=1"),
    ("verify", None), ("set", "SLOTGEN_AI_KILL=false"), ("approved", "SLOTGEN_AI_ROLLOUT_PERCENT=5"),
]
EXTRA = st.sampled_from([("rollback", None), ("set", "SLOTGEN_AI_ROLLOUT_PERCENT=1"), ("set", "FEATURE_SLOTGEN_AI=false"),
                         ("fail", "SLOTGEN_AI_KILL=false"), ("refused", "SLOTGEN_AI_ROLLOUT_PERCENT=100")])
TAILS = st.one_of(
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=300).filter(lambda b: b"\n" not in b)),
    st.tuples(st.just("cut-last"), st.floats(min_value=0.05, max_value=0.95)),
)


def passing(env, controls):
    return report(True)


def failing(env, controls):
    return report(False)


def _apply(root: Path, op: str, item: str | None) -> None:
    env = Workspace(root).environment("staging")
    roster = env.workspace.roster

    def do_set(value, verifier=passing, approval=None):
        set_control(env, [value], actor=demo_actor(env.workspace, "owner"), decision_record="DR-1", approval_id=approval,
                    expect=None, dry_run=False, confirm=lambda p: True, verifier=verifier)

    try:
        if op == "set":
            do_set(item)
        elif op == "fail":
            do_set(item, verifier=failing)
        elif op == "refused":
            do_set(item)
        elif op == "approved":
            approval = approve(env, [item], actor=demo_actor(env.workspace, "approver"), decision_record="DR-1",
                               dry_run=False, confirm=lambda p: True).approval_id
            do_set(item, approval=approval)
        elif op == "verify":
            verify_environment(env, actor=demo_actor(env.workspace, "owner"), decision_record="DR-1", verifier=passing)
        elif op == "rollback":
            rollback(env, actor=demo_actor(env.workspace, "oncall"), reason="r", decision_record=None, dry_run=False,
                     verifier=None)
    except SlotgenError:
        pass  # refusals are part of the history too


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(walked=st.integers(0, len(WALK)), extra=st.lists(EXTRA, max_size=4), tail=TAILS)
def test_repair_is_never_less_safe(walked, extra, tail):
    root = Path(tempfile.mkdtemp()) / "ws"
    try:
        init_workspace(root, resolve_actor(None, "owner"))
        for op, item in [*WALK[:walked], *extra]:
            _apply(root, op, item)
        envdir = root / "environments"
        log, controls = envdir / "staging.audit.jsonl", envdir / "staging.env"
        before_kill = runtime_values(controls.read_bytes())[KILL_VAR]
        head_seq = lenient_controls(controls).head_seq
        lines = log.read_bytes().splitlines(keepends=True)
        kind, value = tail
        if kind == "garbage":
            log.write_bytes(b"".join(lines) + value)
        else:  # the last entry's own line, cut short
            cut = max(1, int(len(lines[-1]) * value))
            log.write_bytes(b"".join(lines[:-1]) + lines[-1][:cut])
        damaged_log, damaged_controls = log.read_bytes(), controls.read_bytes()
        kept = b"".join(lines[:head_seq])  # every entry at or below the controls' head
        env = Workspace(root).environment("staging")
        try:
            repair_log(env, "owner", str(root / "demo-keys" / "owner"))
        except SlotgenError:
            assert log.read_bytes() == damaged_log and controls.read_bytes() == damaged_controls, "a refusal changed files"
            assert kind == "cut-last"  # only cutting the controls' own entry is refused
            return
        after = log.read_bytes()
        assert after.startswith(kept), "an entry at or below the controls' head was removed"
        after_kill = runtime_values(controls.read_bytes())[KILL_VAR]
        if before_kill == "true":
            assert after_kill == "true"
        assert after_kill == "true", "a state restored after a cut must have the kill-switch engaged"
        assert audit_verify(Workspace(root).environment("staging"))["valid"] is True
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
