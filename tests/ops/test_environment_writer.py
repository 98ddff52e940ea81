"""The write protocol's own rules (changes/environment.py), each driven directly: an entry's time never runs
before the head it follows and keeps the time its signature was made for; an entry by a signed identity is
never recorded without its signature; a folded break-glass rollback carries what the act recorded; a
disagreement names each control, recorded vs found."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from slotgen_ops.audit.append import Unsealed
from slotgen_ops.clock import now_utc, parse_utc, utc
from slotgen_ops.contract import KILL_VAR
from slotgen_ops.errors import Refused
from slotgen_ops.policy.authority import resolve_actor
from slotgen_ops.changes.environment import differences
from slotgen_ops.changes.writer import ControlsWriter
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.changes.repair import repair_log
from slotgen_ops.changes.rollback import rollback
from slotgen_ops.policy.signing import Session
from slotgen_ops.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lock_holder import lock_held  # noqa: E402
from walked import demo_actor  # noqa: E402


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(root, resolve_actor(None, "owner"))
    return Workspace(root)


def writer(ws: Workspace, session: Session | None = None) -> ControlsWriter:
    return ControlsWriter(ws.environment("staging"), demo_actor(ws, "owner"), session)


# -- differences --------------------------------------------------------------------------------------------


def test_differences_name_each_control_recorded_then_found():
    recorded = {"SLOTGEN_AI_KILL": "true", "FEATURE_SLOTGEN_AI": "false", "SLOTGEN_AI_ALLOWLIST_PATH": None}
    found = {"SLOTGEN_AI_KILL": "false", "FEATURE_SLOTGEN_AI": "false", "SLOTGEN_AI_ALLOWLIST_PATH": None,
             "SURPRISE": "é"}
    assert differences(found, recorded) == ('SLOTGEN_AI_KILL recorded "true", found "false"; '
                                            'SURPRISE recorded (unset), found "é"')
    assert differences({"A": ""}, {"A": "x"}) == 'A recorded "x", found (unset)'
    assert differences(dict(recorded), recorded) == ""


# -- stamp: an entry's time ---------------------------------------------------------------------------------


def test_an_entry_keeps_the_time_its_signature_was_made_for_unless_that_runs_before_the_head(ws):
    head = parse_utc("2026-01-01T10:00:00Z")
    same, later, earlier = utc(head), utc(head + timedelta(seconds=5)), utc(head - timedelta(seconds=1))
    w = writer(ws, Session(signer=None, stamps=[same, later]))
    assert w.stamp(same) == same, "a time equal to the head's is kept (the log allows equal times)"
    assert w.stamp(same) == later, "the second entry of the pass takes the second stamp"
    assert w.stamps == [same, later]

    w = writer(ws, Session(signer=None, stamps=[earlier]))
    before = now_utc()
    fresh = w.stamp(same)
    assert fresh != earlier and parse_utc(fresh) >= before, "never before the head: a fresh time instead"

    assert writer(ws, Session(signer=None, stamps=[earlier])).stamp(None) == earlier, "no head: kept"
    assert parse_utc(writer(ws).stamp(same)) >= before, "no session: now"
    assert parse_utc(writer(ws, Session(signer=None)).stamp(same)) >= before, "no stamp left: now"


# -- seal: an entry's signature -----------------------------------------------------------------------------


def _entry(identity: str, digest: str = "ab" * 32) -> dict:
    return {"hash": digest, "actor": {"identity": identity}}


def test_an_entry_not_by_a_signed_identity_has_no_signature(ws):
    assert writer(ws).seal(_entry("declared")) is None
    assert writer(ws).seal({"hash": "00", "actor": None}) is None


def test_a_signed_entry_takes_the_signature_made_for_its_hash(ws):
    signature = {"fingerprint": "SHA256:x", "signature": "sig"}
    session = Session(signer=None, signatures={"ab" * 32: signature})
    assert writer(ws, session).seal(_entry("signed")) is signature


@pytest.mark.parametrize("session", [None, Session(signer=None)], ids=["no session", "no key"])
def test_a_signed_entry_without_its_key_is_refused_not_recorded(ws, session):
    with pytest.raises(Refused, match=r"^an entry by a signed identity cannot be recorded without its key; "
                                      r"nothing recorded$"):
        writer(ws, session).seal(_entry("signed"))


def test_a_signed_entry_with_a_key_but_no_signature_yet_is_put_aside_once(ws):
    w = writer(ws, Session(signer=object()))
    for _ in range(2):
        with pytest.raises(Unsealed) as caught:
            w.seal(_entry("signed"))
        assert caught.value.entry["hash"] == "ab" * 32
    assert w.unsigned == ["ab" * 32], "asked to sign once, however often it is sealed"


# -- folding a break-glass rollback -------------------------------------------------------------------------


def test_a_folded_break_glass_rollback_carries_what_the_act_recorded(ws):
    root = ws.root
    with lock_held(root / "environments"):  # another writer holds the lock: the rollback goes to the journal
        done = rollback(Workspace(root).environment("staging"), actor=demo_actor(ws, "oncall"),
                        reason="incident at 3am", decision_record=None, dry_run=False, verifier=None)
    assert done.ok and done.extra.get("breakGlass") is True
    from slotgen_ops.changes.breakglass import BreakGlassJournal

    env = Workspace(root).environment("staging")
    [(path, act)] = BreakGlassJournal(env).entries()
    before = env.snapshot()
    repair_log(Workspace(root).environment("staging"), "owner", str(root / "demo-keys" / "owner"))
    after = Workspace(root).environment("staging").snapshot()
    folds = [e for e in _entries(root) if (e.get("details") or {}).get("trigger") == "break-glass-fold"]
    assert len(folds) == 1
    fold = folds[0]
    assert fold["seq"] == before.head["seq"] + 1, "folded right after the head it found"
    assert (fold["action"], fold["control"], fold["new"]) == ("rollback", KILL_VAR, "true")
    assert fold["old"] == act["old"]
    assert fold["operator"] == "owner", "recorded by who folded it ..."
    assert fold["reason"] == "break-glass rollback folded into the chain: incident at 3am"
    assert fold["details"] == {"trigger": "break-glass-fold", "breakGlassHash": act["hash"],
                               "breakGlassSeq": act["seq"], "breakGlassLog": path.name,
                               "breakGlassOperator": "oncall", "breakGlassTs": act["ts"],
                               "problem": (act.get("details") or {}).get("problem")}, "... for who acted"
    assert fold["state"]["controls"][KILL_VAR] == "true"
    assert after.controls.values[KILL_VAR] == "true" and after.head["seq"] >= fold["seq"]


def _entries(root: Path) -> list[dict]:
    from slotgen_ops.audit.log import AuditLog

    return list(AuditLog(root / "environments" / "staging.audit.jsonl").entries())


# -- an entry computed but not written (signed on the next pass) ---------------------------------------------


@pytest.mark.parametrize("identity", ["signed", "declared"])
def test_an_unwritten_entry_is_the_writers_head_unsigned_with_the_controls_as_found(ws, identity):
    w = writer(ws)
    snap = ws.environment("staging").snapshot()
    entry = {"hash": "cd" * 32, "actor": {"identity": identity}, "state": {"controls": {KILL_VAR: "true"}},
             "signature": {"stale": True}}
    for _ in range(2):
        out = w._unwritten(snap, dict(entry))
    assert out is w.snapshot and out.head["signature"] is None and "stale" not in str(out.head)
    assert out.state == entry["state"] and out.controls is snap.controls
    assert out.pending is None and out.engaged_outside is False and not out.needs_reconcile
    assert w.unsigned == (["cd" * 32] if identity == "signed" else []), "only a signed entry waits to be signed"


def test_a_hand_edit_is_named_with_the_command_that_repairs_it(ws):
    from slotgen_ops.changes.snapshot import ControlsDisagree

    path = ws.environments_dir / "staging.env"
    path.write_text(path.read_text().replace("FEATURE_SLOTGEN_AI=false", "FEATURE_SLOTGEN_AI=true"))
    with pytest.raises(ControlsDisagree) as caught:
        Workspace(ws.root).environment("staging").snapshot()
    assert caught.value.remedy == "slotgen audit repair --env staging"
    assert 'FEATURE_SLOTGEN_AI recorded "false", found "true"' in str(caught.value)


def test_a_rollback_whose_evidence_no_record_can_hold_still_engages_and_says_so(ws):
    """Canonical JSON has no floats: neither the log nor the journal can take this entry. The kill-switch is
    engaged all the same, the rollback succeeds (exit 0), and the operator is told it is recorded nowhere."""
    root = ws.root
    done = rollback(Workspace(root).environment("staging"), actor=demo_actor(ws, "oncall"), reason="guard: test",
                    decision_record=None, dry_run=False, verifier=None, evidence={"rate": 0.05})
    assert done.ok and done.exit_code == 0 and done.audit_seq is None
    assert b"SLOTGEN_AI_KILL=true" in (root / "environments" / "staging.env").read_bytes()
    assert any("NOT RECORDED anywhere" in w for w in done.warnings)
