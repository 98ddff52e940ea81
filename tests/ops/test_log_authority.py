"""The log is the authority only if nothing unproven can widen it (SPEC section 14).

"Only entries that lower exposure may lack a proven operator": replaying the
log, an entry without a valid signature under `identity: signed` is an
integrity failure unless the state it leads to exposes no more jobs than the
state before it; `init` is entry 1 and only entry 1. The attacks are made the
way an attacker with write access to the workspace would make them (real
files, the package's own hashing, the real `ssh-keygen` for signatures), then
driven through the real CLI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slotgen_ops.audit import sshkey, sshkeygen, sshsig
from slotgen_ops.audit.canonical import _dumps, entry_hash
from slotgen_ops.contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR
from slotgen_ops.changes.controls_file import render_controls
from slotgen_ops.runbook.state import SAFE_CONTROLS, apply, reach, widening
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from cli.helpers import slotgen  # noqa: E402
from walked import API_KEY, APPROVED, kill_as_runtime_reads, walk  # noqa: E402

LOG = Path("environments") / "staging.audit.jsonl"
CONTROLS = Path("environments") / "staging.env"
LIVE = {KILL_VAR: "false", FEATURE_VAR: "true", ROLLOUT_VAR: "100", ALLOWLIST_VAR: APPROVED}


def run(ws: Path, *args: str, env: dict[str, str] | None = None):
    return slotgen(*args, "--workspace", str(ws), env={"OPENAI_API_KEY": API_KEY, **(env or {})}, cwd=ws)


def entries(ws: Path) -> list[dict]:
    return [json.loads(line) for line in (ws / LOG).read_text().splitlines()]


def write_log(ws: Path, items: list[dict]) -> None:
    """The log as an attacker writes it: every seq, prevHash and hash recomputed (signatures left as they
    are, or as the caller re-made them), and the controls file rewritten to match the new head."""
    prev = "0" * 64
    for seq, entry in enumerate(items, start=1):
        entry["seq"], entry["prevHash"] = seq, prev
        entry["hash"] = entry_hash(entry)
        prev = entry["hash"]
    (ws / LOG).write_bytes(b"".join(_dumps(e) + b"\n" for e in items))
    head = items[-1]
    (ws / CONTROLS).write_bytes(render_controls("staging", head["state"]["controls"], head["seq"], head["hash"]))


def forged_init(first: dict, controls: dict, identity: str = "declared") -> dict:
    """An unsigned `init` entry like `slotgen init` writes, with the controls and identity mode of its choice."""
    policy = {**first["details"]["policy"], "identity": identity}
    entry = {k: v for k, v in first.items() if k not in ("seq", "prevHash", "hash", "state")}
    entry.update(new=dict(controls), details={**first["details"], "policy": policy}, signature=None,
                 reason="workspace created by slotgen init")
    entry["state"] = apply(None, entry)
    return entry


# -- init is entry 1 and only entry 1 ----------------------------------------------------------------------------


def test_an_unsigned_init_appended_mid_log_is_an_integrity_failure_naming_it(tmp_path, endpoint, state_home):
    """The attack of issue 18, critical 1: an `init` appended with live controls and `identity: declared`,
    hash and chain recomputed, the controls file rewritten to match. Its state would replace everything."""
    ws = tmp_path / "ws"
    walk(ws, 2, endpoint.base_url)
    items = entries(ws)
    attack = forged_init(items[0], LIVE)
    attack["ts"] = items[-1]["ts"]
    items.append(attack)
    write_log(ws, items)
    seq = len(items)

    verify = run(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4, verify.stdout + verify.stderr
    doc = verify.json()
    assert doc["valid"] is False and doc["firstBad"] == seq
    assert f"entry seq {seq} is an 'init'" in doc["reason"] and "only entry 1" in doc["reason"]

    status = run(ws, "status", "--env", "staging", "--json")
    assert status.code == 4 and status.json()["audit"]["valid"] is False
    assert f"seq {seq}" in status.json()["audit"]["problem"]

    change = run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record", "DR-9",
                 "--operator", "oncall", "--yes")
    assert change.code == 4 and f"seq {seq}" in change.stderr

    rb = run(ws, "rollback", "--env", "staging", "--reason", "forged init", "--operator", "oncall", "--json")
    assert rb.code == 0 and rb.json()["rollback"]["engaged"] is True
    assert kill_as_runtime_reads(ws / CONTROLS) == "true"


def test_apply_refuses_an_init_after_the_first_entry():
    first = {"action": "init", "new": dict(SAFE_CONTROLS), "details": {"policy": None}}
    state = apply(None, first)
    with pytest.raises(ValueError, match="entry 1 and only entry 1"):
        apply(state, {**first, "new": dict(LIVE)})


@pytest.mark.parametrize("identity", ["signed", "declared"])
def test_a_log_that_starts_live_is_an_integrity_failure(tmp_path, endpoint, state_home, identity):
    """A whole log replaced by one unsigned `init` whose controls are live: nothing existed before it, so
    it exposes more than the state before it and no proven operator recorded it (whatever mode it says)."""
    ws = tmp_path / "ws"
    walk(ws, 0, endpoint.base_url)
    first = dict(entries(ws)[0])
    first["actor"] = {**first["actor"], "identity": identity}
    write_log(ws, [forged_init(first, LIVE, identity=identity)])
    verify = run(ws, "audit", "verify", "--env", "staging", "--json", env={"XDG_STATE_HOME": str(tmp_path)})
    assert verify.code == 4, verify.stdout + verify.stderr
    doc = verify.json()
    assert doc["firstBad"] == 1 and "exposes no more jobs" in doc["reason"], doc


# -- "exposes no more": the order on states ------------------------------------------------------------------------


def _state(**controls) -> dict:
    return {"controls": {**LIVE, **controls}, "policy": {"digest": "p"}, "approvals": {}, "stepVerified": False,
            "verificationPassing": None}


@pytest.mark.parametrize("controls, expected", [
    ({KILL_VAR: "true"}, None),
    ({KILL_VAR: "TRUE"}, None),
    ({KILL_VAR: "1"}, None),              # the runtime reads anything but unset, empty or false as engaged
    ({KILL_VAR: ""}, (APPROVED, 100)),    # empty: off
    ({FEATURE_VAR: "false"}, None),
    ({FEATURE_VAR: "yes"}, None),         # only "true" turns the feature on
    ({ALLOWLIST_VAR: None}, None),
    ({ALLOWLIST_VAR: ""}, None),
    ({ROLLOUT_VAR: "abc"}, None),         # not a percent: the rollout gate fails closed
    ({ROLLOUT_VAR: "101"}, None),
    ({ROLLOUT_VAR: "0"}, (APPROVED, 100)),  # 0 turns the rollout gate off: every allowlisted job
    ({ROLLOUT_VAR: "5"}, (APPROVED, 5)),
])
def test_reach_reads_the_controls_as_the_gating_engine_does(controls, expected):
    assert reach(_state(**controls)["controls"]) == expected


@pytest.mark.parametrize("before, after, wider", [
    (_state(), _state(**{KILL_VAR: "true"}), None),                     # a rollback
    (_state(**{KILL_VAR: "true"}), _state(**{KILL_VAR: "true", FEATURE_VAR: "false"}), None),
    (_state(**{ROLLOUT_VAR: "5"}), _state(**{ROLLOUT_VAR: "1"}), None),  # one rung down
    (_state(**{ROLLOUT_VAR: "5"}), _state(**{ROLLOUT_VAR: "5"}), None),  # a refusal changes nothing
    (_state(**{ROLLOUT_VAR: "100"}), _state(**{ROLLOUT_VAR: "0"}), None),  # 0 is everyone: no wider than 100
    (_state(**{ROLLOUT_VAR: "5"}), _state(**{ROLLOUT_VAR: "0"}), "widens the rollout from 5% to 100%"),
    (_state(**{ROLLOUT_VAR: "1"}), _state(**{ROLLOUT_VAR: "5"}), "widens the rollout"),
    (_state(**{KILL_VAR: "true"}), _state(), "where nothing was exposed"),
    (_state(**{FEATURE_VAR: "false"}), _state(), "where nothing was exposed"),
    (_state(), _state(**{ALLOWLIST_VAR: "allowlists/wide-open.json"}), "instead of"),
    (_state(**{KILL_VAR: "true"}), {**_state(**{KILL_VAR: "true"}), "policy": {"digest": "q"}}, "policy"),
    (_state(**{KILL_VAR: "true"}), {**_state(**{KILL_VAR: "true"}), "approvals": {"apv-1": {}}}, "approval"),
    (_state(**{KILL_VAR: "true"}), {**_state(**{KILL_VAR: "true"}), "stepVerified": True}, "verified"),
    (_state(**{KILL_VAR: "true"}), {**_state(**{KILL_VAR: "true"}), "verificationPassing": True}, "passing"),
    (None, {**_state(**{KILL_VAR: "true"})}, None),                      # init: safe controls
    (None, _state(), "where nothing was exposed"),                        # init: live controls
])
def test_exposes_no_more_is_conservative(before, after, wider):
    found = widening(before, after)
    if wider is None:
        assert found is None
    else:
        assert found is not None and wider in found


# -- a signature proves the key the entry names --------------------------------------------------------------------


def test_an_entry_signed_by_its_operator_but_naming_another_key_is_refused(tmp_path, endpoint, state_home):
    """The last entry rewritten to name another of the roster's keys as `actor.key`, then re-signed with the
    operator's real key: the signature is good, but it does not prove the key the entry names."""
    from slotgen_ops.changes.chain import chain_report
    from slotgen_ops.workspace import Workspace

    ws = tmp_path / "ws"
    walk(ws, 2, endpoint.base_url)
    items = entries(ws)
    last = items[-1]
    operator = last["operator"]
    assert last["signature"] and last["actor"]["key"] == last["signature"]["fingerprint"]
    other = sshkey.fingerprint((ws / "demo-keys" / "approver.pub").read_text().strip())
    assert other != last["actor"]["key"]
    last["actor"]["key"] = other
    last["hash"] = entry_hash(last)
    armored = sshkeygen.sign(last["hash"].encode(), ws / "demo-keys" / operator, "slotgen-audit")
    last["signature"] = {"namespace": "slotgen-audit", "fingerprint": sshsig.parse_signature(armored).fingerprint,
                         "sshsig": armored}
    (ws / LOG).write_bytes(b"".join(_dumps(e) + b"\n" for e in items))

    report = chain_report(Workspace(ws).environment("staging"))
    assert report["valid"] is False and report["firstBad"] == last["seq"]
    assert "not the key the entry names" in report["reason"]


# -- the replay of recorded state --------------------------------------------------------------------------------


def _declared_log() -> list[dict]:
    """A short log under `identity: declared`, so that signatures decide nothing and only the replay can."""
    from slotgen_ops.audit.review import GENESIS_HASH

    actor = {"id": "owner", "identity": "declared"}
    items = [{"action": "init", "env": "staging", "operator": "owner", "actor": actor, "ts": "2030-01-01T00:00:00Z",
              "new": dict(SAFE_CONTROLS), "details": {"policy": {"digest": "p", "identity": "declared"}},
              "signature": None},
             {"action": "set", "env": "staging", "operator": "owner", "actor": actor, "ts": "2030-01-01T00:01:00Z",
              "control": FEATURE_VAR, "old": "false", "new": "true", "step": "feature-flag-on", "signature": None,
              "verification": {"passed": True}},
             {"action": "verify", "env": "staging", "operator": "owner", "actor": actor,
              "ts": "2030-01-01T00:02:00Z", "verification": {"passed": False}, "signature": None}]
    state, prev = None, GENESIS_HASH
    for seq, entry in enumerate(items, start=1):
        state = apply(state, entry)
        entry.update(seq=seq, prevHash=prev, state=state)
        entry["hash"] = entry_hash(entry)
        prev = entry["hash"]
    return items


def _verify(items: list[dict]):
    from slotgen_ops.audit.review import verify_lines
    from slotgen_ops.changes.chain import replay_checker

    return verify_lines([_dumps(e) + b"\n" for e in items], env="staging", check=replay_checker())


def test_a_forged_recorded_state_is_caught_by_the_replay():
    items = _declared_log()
    assert _verify(items).valid
    forged = items[1]
    forged["state"] = {**forged["state"], "controls": {**forged["state"]["controls"], KILL_VAR: "false"}}
    forged["hash"] = entry_hash(forged)
    items[2]["prevHash"] = forged["hash"]
    items[2]["hash"] = entry_hash(items[2])
    report = _verify(items)
    assert not report.valid and report.first_bad == 2
    assert "its recorded state is not what its action yields" in report.reason


def test_an_init_after_entry_1_is_named_before_anything_else():
    items = _declared_log()
    extra = dict(items[0])
    items.append(extra)
    extra.update(seq=4, prevHash=items[2]["hash"], state=apply(None, extra), ts="2030-01-01T00:03:00Z")
    extra["hash"] = entry_hash(extra)
    report = _verify(items)
    assert not report.valid and report.first_bad == 4 and "only entry 1" in report.reason
