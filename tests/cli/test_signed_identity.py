"""Who acted is proven, not claimed (SPEC section 7), and a log can be checked from outside (section 9).

Each attack of the issue is made the way an attacker would make it (real files, real keys, the real
ssh-keygen), then the product must stop it with the exit code the SPEC gives, and rollback must still
work in the state the attacker left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slotgen_ops.audit import sshkey, sshkeygen, sshsig
from slotgen_ops.audit.canonical import _dumps, entry_hash
from slotgen_ops.changes.controls_file import render_controls, runtime_values
from slotgen_ops.runbook.state import apply

from .helpers import assert_one_line_error, slotgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from walked import API_KEY, kill_as_runtime_reads, walk  # noqa: E402

ENV = {"OPENAI_API_KEY": API_KEY}
LOG = Path("environments") / "staging.audit.jsonl"
CONTROLS = Path("environments") / "staging.env"


def run(ws: Path, *args: str, env: dict[str, str] | None = None):
    return slotgen(*args, "--workspace", str(ws), env={**ENV, **(env or {})}, cwd=ws)


def entries(ws: Path) -> list[dict]:
    return [json.loads(line) for line in (ws / LOG).read_text().splitlines()]


def roster_keys(entry_state: dict) -> dict[str, list[str]]:
    return {op["id"]: op["keys"] for op in entry_state["policy"]["roster"]["operators"]}


def assert_rollback_still_works(ws: Path) -> None:
    rb = run(ws, "rollback", "--env", "staging", "--reason", "attack found", "--operator", "oncall", "--json")
    assert rb.code == 0, rb.stderr
    assert rb.json()["rollback"]["engaged"] is True
    assert kill_as_runtime_reads(ws / CONTROLS) == "true"


def rewrite(ws: Path, edit, resign: dict[str, Path] | None = None) -> None:
    """Rewrite the log as an attacker with write access would: `edit(entries)` changes the list, then every
    hash, prevHash and state is recomputed with the package's own code and the controls' head line rewritten.
    With `resign` ({operator: private key}), each entry is signed again with its operator's key (an insider
    holding those keys); without, the old signatures stay (an outsider has no key)."""
    items = entries(ws)
    edit(items)
    prev_hash, state = "0" * 64, None
    for seq, entry in enumerate(items, start=1):
        entry["seq"], entry["prevHash"] = seq, prev_hash
        state = apply(state, entry)
        entry["state"] = state
        entry["hash"] = entry_hash(entry)
        if resign and entry.get("signature"):
            armored = sshkeygen.sign(entry["hash"].encode(), resign[entry["operator"]], "slotgen-audit")
            entry["signature"] = {"namespace": "slotgen-audit", "fingerprint": sshsig.parse_signature(armored).fingerprint,
                                  "sshsig": armored}
        prev_hash = entry["hash"]
    (ws / LOG).write_bytes(b"".join(_dumps(e) + b"\n" for e in items))
    head = items[-1]
    (ws / CONTROLS).write_bytes(render_controls("staging", head["state"]["controls"], head["seq"], head["hash"]))


# -- init and the happy path -------------------------------------------------------------------------------------


def test_init_writes_rehearsal_keys_listed_in_the_roster(tmp_path):
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    assert "identity: signed" in (ws / "slotgen.yaml").read_text()
    roster = (ws / "operators.yaml").read_text()
    assert "REHEARSAL KEYS" in roster
    for operator in ("owner", "oncall", "approver"):
        private, public = ws / "demo-keys" / operator, ws / "demo-keys" / f"{operator}.pub"
        assert private.stat().st_mode & 0o777 == 0o600
        line = public.read_text().strip()
        assert line.startswith("ssh-ed25519 ") and " ".join(line.split()[:2]) in roster
    init = entries(ws)[0]
    assert init["signature"] is None and init["state"]["policy"]["identity"] == "signed"


def test_every_entry_verifies_with_ssh_keygen_and_an_allowed_signers_file_from_the_roster(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 7, endpoint.base_url)
    items = entries(ws)
    signed = [e for e in items if e["signature"] is not None]
    assert {e["operator"] for e in signed} == {"owner", "oncall", "approver"}
    assert all(e["action"] == "init" for e in items if e["signature"] is None)
    state = items[0]["state"]
    for entry in items:
        if entry["signature"] is not None:
            keys = roster_keys(state)
            allowed = tmp_path / "allowed_signers"
            allowed.write_text(sshsig.allowed_signers(keys.items(), "slotgen-audit"))
            sig = tmp_path / "entry.sig"
            sig.write_text(entry["signature"]["sshsig"])
            for principal, expect in ((entry["operator"], 0), ("mallory", 255)):
                done = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal,
                                       "-n", "slotgen-audit", "-s", str(sig)], input=entry["hash"].encode(),
                                      capture_output=True, timeout=30)
                assert done.returncode == expect, (entry["seq"], principal, done.stderr)
            assert entry["signature"]["fingerprint"] == entry["actor"]["key"]
        state = entry["state"]
    assert run(ws, "audit", "verify", "--env", "staging").code == 0


def test_a_checkpoint_verifies_with_ssh_keygen(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 3, endpoint.base_url)
    out = tmp_path / "cp.txt"
    made = run(ws, "audit", "checkpoint", "--env", "staging", "--operator", "approver", "--output", str(out), "--json")
    assert made.code == 0, made.stderr
    text = out.read_text()
    body, _, armored = text.partition("\n\n")
    lines = body.split("\n")
    assert lines[0] == "slotgen/staging" and int(lines[1]) == len(entries(ws))
    (tmp_path / "cp.sig").write_text(armored)
    keys = roster_keys(entries(ws)[-1]["state"])
    (tmp_path / "allowed").write_text(sshsig.allowed_signers(keys.items(), "slotgen-checkpoint"))
    done = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "approver", "-n",
                           "slotgen-checkpoint", "-s", str(tmp_path / "cp.sig")], input=(body + "\n").encode(),
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    verified = run(ws, "audit", "verify", "--env", "staging", "--checkpoint", str(out), "--json")
    assert verified.code == 0
    assert verified.json()["checkpoints"] == [{"file": str(out), "size": int(lines[1]), "consistent": True,
                                               "signed": True, "signer": "approver", "reason": None}]


# -- a key that does not prove the claim -----------------------------------------------------------------------


def _stranger_key(tmp_path: Path) -> str:
    key = tmp_path / "stranger"
    sshkeygen.generate_key(key)
    return str(key)


@pytest.mark.parametrize("how", ["no-key", "another-operators-key", "key-not-in-roster", "missing-key-file",
                                 "public-key-without-agent"])
def test_a_change_whose_key_does_not_prove_the_operator_is_refused(tmp_path, endpoint, how):
    ws = tmp_path / "ws"
    walk(ws, 1, endpoint.base_url)
    before_controls = runtime_values((ws / CONTROLS).read_bytes())
    before_entries = len(entries(ws))
    if how == "public-key-without-agent":  # ssh-keygen would otherwise use the private key beside the .pub
        shutil.move(ws / "demo-keys" / "oncall", tmp_path / "oncall-private")
    keyed = {
        "no-key": {"SLOTGEN_SIGNING_KEY": ""},
        "another-operators-key": {"SLOTGEN_SIGNING_KEY": str(ws / "demo-keys" / "approver")},
        "key-not-in-roster": {"SLOTGEN_SIGNING_KEY": _stranger_key(tmp_path)},
        "missing-key-file": {"SLOTGEN_SIGNING_KEY": str(tmp_path / "nope")},
        # the public half of the right key, but no agent holds the private half: it cannot sign
        "public-key-without-agent": {"SLOTGEN_SIGNING_KEY": str(ws / "demo-keys" / "oncall.pub"),
                                     "SSH_AUTH_SOCK": str(tmp_path / "no-agent.sock")},
    }[how]
    r = run(ws, "set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--decision-record", "DR-5", "--operator",
            "oncall", "--yes", env=keyed)
    assert_one_line_error(r, 3)
    assert runtime_values((ws / CONTROLS).read_bytes()) == before_controls
    last = entries(ws)[-1]
    if how == "public-key-without-agent":
        assert "cannot sign" in r.stderr
        assert len(entries(ws)) == before_entries, "nothing is recorded when the key cannot sign"
        assert kill_as_runtime_reads(ws / CONTROLS) == "true"
    else:
        assert last["action"] == "refused" and last["signature"] is None
        assert last["actor"]["identity"] == "unidentified" and last["operator"] == "oncall"
    assert run(ws, "audit", "verify", "--env", "staging").code == 0
    assert_rollback_still_works(ws)


def test_a_public_key_whose_private_half_is_in_ssh_agent_signs(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 1, endpoint.base_url)
    sock = str(tmp_path / "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            agent.poll()
            assert agent.returncode is None, "ssh-agent exited"
            import time

            time.sleep(0.01)  # the agent's socket appears when it is ready
        added = subprocess.run(["ssh-add", "-q", str(ws / "demo-keys" / "oncall")], env={**os.environ, "SSH_AUTH_SOCK": sock},
                               capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        assert added.returncode == 0, added.stderr
        hidden = tmp_path / "oncall-private"
        shutil.move(ws / "demo-keys" / "oncall", hidden)  # only the agent holds the private half now
        r = run(ws, "set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--decision-record", "DR-5", "--operator",
                "oncall", "--yes", "--key", "demo-keys/oncall.pub", env={"SSH_AUTH_SOCK": sock})
        assert r.code == 0, r.stderr
        last = entries(ws)[-1]
        assert last["action"] == "set" and last["signature"]["fingerprint"] == sshkey.fingerprint(
            (ws / "demo-keys" / "oncall.pub").read_text())
        assert run(ws, "audit", "verify", "--env", "staging").code == 0
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(timeout=10)


# -- rewriting history -------------------------------------------------------------------------------------------


def _approval_seq(items: list[dict]) -> int:
    return next(e["seq"] for e in items if e["action"] == "approve")


def test_a_wholesale_rewrite_with_recomputed_hashes_is_caught_by_signatures(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 7, endpoint.base_url)
    target = _approval_seq(entries(ws))

    def edit(items):  # who approved, and under which decision record, rewritten; every hash and state recomputed
        items[target - 1]["decisionRecord"] = "DR-666"
        items[target - 1]["details"]["approval"]["decisionRecord"] = "DR-666"

    rewrite(ws, edit)
    verify = run(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4
    assert verify.json()["firstBad"] == target and "signature" in verify.json()["reason"]
    status = run(ws, "status", "--env", "staging", "--json")
    assert status.code == 4 and status.json()["audit"]["valid"] is False
    r = run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-9", "--operator",
            "oncall", "--yes")
    assert_one_line_error(r, 4)
    assert_rollback_still_works(ws)


def test_a_rewrite_signed_with_a_key_outside_the_roster_is_caught(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 4, endpoint.base_url)
    stranger = Path(_stranger_key(tmp_path))
    target = _approval_seq(entries(ws))

    def edit(items):
        items[target - 1]["reason"] = "rewritten"

    rewrite(ws, edit, resign={"owner": stranger, "oncall": stranger, "approver": stranger})
    verify = run(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4 and verify.json()["firstBad"] == 2  # the first signed entry, re-signed by a stranger
    assert_rollback_still_works(ws)


def test_an_insider_rewrite_re_signed_with_roster_keys_is_caught_by_an_earlier_checkpoint(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 7, endpoint.base_url)
    checkpoint = tmp_path / "before.checkpoint"
    assert run(ws, "audit", "checkpoint", "--env", "staging", "--operator", "approver", "--output",
               str(checkpoint)).code == 0
    assert run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-10",
               "--operator", "oncall", "--yes").code == 0  # the log grows after the checkpoint: still consistent
    target = _approval_seq(entries(ws))
    keys = {op: ws / "demo-keys" / op for op in ("owner", "oncall", "approver")}  # rehearsal keys: all in reach

    def edit(items):
        items[target - 1]["decisionRecord"] = "DR-666"
        items[target - 1]["details"]["approval"]["decisionRecord"] = "DR-666"

    rewrite(ws, edit, resign=keys)
    elsewhere = {"XDG_STATE_HOME": str(tmp_path / "another-machine")}  # one that never saw the log (SPEC 14)
    plain = run(ws, "audit", "verify", "--env", "staging", env=elsewhere)
    assert plain.code == 0, "every hash and signature was redone: only an outside anchor can see this"
    assert run(ws, "audit", "verify", "--env", "staging").code == 4, "this machine saw the log before it"
    verify = run(ws, "audit", "verify", "--env", "staging", "--checkpoint", str(checkpoint), "--json")
    assert verify.code == 4
    doc = verify.json()
    assert doc["valid"] is False and doc["firstBad"] == 1
    assert doc["checkpoints"][0]["consistent"] is False and doc["checkpoints"][0]["size"] < doc["entries"]
    assert_rollback_still_works(ws)


def test_a_truncated_log_rewritten_to_match_its_controls_is_caught_by_a_checkpoint(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)
    checkpoint = tmp_path / "cp"
    assert run(ws, "audit", "checkpoint", "--env", "staging", "--operator", "owner", "-o", str(checkpoint)).code == 0
    rewrite(ws, lambda items: items.pop())  # drop the last entry (the verify), controls rewritten to match
    verify = run(ws, "audit", "verify", "--env", "staging", "--checkpoint", str(checkpoint), "--json")
    assert verify.code == 4 and "fewer than the checkpoint" in verify.json()["checkpoints"][0]["reason"]


def test_a_checkpoint_of_another_environment_or_forged_is_refused(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 2, endpoint.base_url)
    checkpoint = tmp_path / "cp"
    assert run(ws, "audit", "checkpoint", "--env", "production", "--operator", "owner", "-o", str(checkpoint)).code == 0
    other = run(ws, "audit", "verify", "--env", "staging", "--checkpoint", str(checkpoint), "--json")
    assert other.code == 4 and "slotgen/production" in other.json()["checkpoints"][0]["reason"]
    text = checkpoint.read_text().replace("slotgen/production", "slotgen/staging")
    forged = tmp_path / "forged"
    forged.write_text(text)  # the origin edited: the signature no longer covers what it says
    doc = run(ws, "audit", "verify", "--env", "staging", "--checkpoint", str(forged), "--json")
    assert doc.code == 4 and doc.json()["checkpoints"][0]["signed"] is False
    garbage = tmp_path / "garbage"
    garbage.write_text("not a checkpoint\n")
    assert_one_line_error(run(ws, "audit", "verify", "--env", "staging", "--checkpoint", str(garbage)), 2)


# -- one key, two ids; and the roster is a policy change like any other ------------------------------------------


def test_self_approval_under_two_ids_with_one_key_is_refused(tmp_path, endpoint):
    """oncall lists their own key under a second id with the approver role, and gets that roster accepted
    (another approver approves it, the owner accepts it). The approval oncall2 signs cannot be used by
    oncall: it is the same key, whatever ids are claimed (SPEC section 7)."""
    ws = tmp_path / "ws"
    walk(ws, 3, endpoint.base_url)
    oncall_key = (ws / "demo-keys" / "oncall.pub").read_text().strip()
    roster = ws / "operators.yaml"
    roster.write_text(roster.read_text() + f"  - id: oncall2\n    name: Second hat\n    roles: [approver]\n"
                      f"    keys: [\"{oncall_key}\"]\n")
    approval = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-4", "--operator",
                   "approver", "--yes", "--json").json()["approvalId"]
    assert run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-4", "--approval", approval,
               "--operator", "owner").code == 0
    assert run(ws, "verify", "--env", "staging", "--decision-record", "DR-4", "--operator", "owner").code == 0
    status = run(ws, "status", "--env", "staging", "--json").json()
    assert any("listed for oncall, oncall2" in w for w in status["warnings"]), status["warnings"]
    own = run(ws, "approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-4",
              "--operator", "oncall2", "--key", "demo-keys/oncall", "--yes", "--json")
    assert own.code == 0, own.stderr
    r = run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-4", "--approval",
            own.json()["approvalId"], "--operator", "oncall", "--yes")
    assert_one_line_error(r, 3)
    assert "cannot be used by the key that signed it" in r.stderr
    other = run(ws, "approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-4",
                "--operator", "approver", "--yes", "--json").json()["approvalId"]
    assert run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-4",
               "--approval", other, "--operator", "oncall", "--yes").code == 0
    assert run(ws, "audit", "verify", "--env", "staging").code == 0
    assert_rollback_still_works(ws)


def test_a_relative_key_is_found_in_the_workspace_and_a_checkpoint_knows_its_signer_by_key(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 1, endpoint.base_url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = slotgen("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--decision-record", "DR-5", "--operator",
                "oncall", "--key", "demo-keys/oncall", "--yes", "--workspace", str(ws), env=ENV, cwd=elsewhere)
    assert r.code == 0, r.stderr
    cp = slotgen("audit", "checkpoint", "--env", "staging", "--key", "demo-keys/approver", "--workspace", str(ws),
                 "--json", env={**ENV, "SLOTGEN_SIGNING_KEY": ""}, cwd=elsewhere)
    assert cp.code == 0, cp.stderr
    assert cp.json()["signer"] == "approver" and cp.json()["size"] == len(entries(ws))


def test_an_approval_cannot_be_used_by_the_key_that_signed_it():
    from datetime import datetime, timezone

    from slotgen_ops.errors import Refused
    from slotgen_ops.policy.authority import approval_record, check_approval

    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    record = approval_record("staging", "SLOTGEN_AI_ROLLOUT_PERCENT", "1", "DR-4", "approver", 24, now, old="0",
                             key="SHA256:same")
    approvals = {"apv-1": record}
    with pytest.raises(Refused, match="cannot be used by the key that signed it"):
        check_approval(approvals, "apv-1", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT", "1", "DR-4", "someone-else", now,
                       old="0", key="SHA256:same")
    check_approval(approvals, "apv-1", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT", "1", "DR-4", "someone-else", now,
                   old="0", key="SHA256:other")


def test_a_new_key_is_a_policy_change_approved_by_another_key(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 2, endpoint.base_url)
    new_line = sshkeygen.generate_key(ws / "demo-keys" / "owner-new")
    roster = ws / "operators.yaml"
    text = roster.read_text()
    old_line = (ws / "demo-keys" / "owner.pub").read_text().strip()
    roster.write_text(text.replace(f'keys: ["{old_line}"]', f'keys: ["{new_line}"]'))
    new_key = str(ws / "demo-keys" / "owner-new")
    # Until accepted, the edited roster counts for nothing: changes are refused (exit 4) ...
    r = run(ws, "set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
            "--decision-record", "DR-3", "--operator", "owner", "--yes", "--key", new_key)
    assert_one_line_error(r, 4)
    # ... the owner cannot approve their own key (not an approver), and cannot accept it with the new key.
    assert run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-3", "--operator", "owner",
               "--yes").code == 3
    approval = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-3", "--operator",
                   "approver", "--yes", "--json").json()["approvalId"]
    with_new = run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-3", "--approval", approval,
                   "--operator", "owner", "--key", new_key)
    assert_one_line_error(with_new, 3)  # the accepted roster does not know this key yet
    assert run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-3", "--approval", approval,
               "--operator", "owner").code == 0  # signed with the key in force until now
    # From now on only the new key proves the owner; entries before the change still verify with the old one.
    old = run(ws, "verify", "--env", "staging", "--decision-record", "DR-3", "--operator", "owner")
    assert_one_line_error(old, 3)
    assert run(ws, "verify", "--env", "staging", "--decision-record", "DR-3", "--operator", "owner", "--key",
               new_key).code == 0
    assert run(ws, "audit", "verify", "--env", "staging").code == 0


def test_declared_identity_is_an_explicit_opt_out_said_on_every_status(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 1, endpoint.base_url)
    config = ws / "slotgen.yaml"
    config.write_text(config.read_text().replace("identity: signed", "identity: declared"))
    approval = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-2", "--operator",
                   "approver", "--yes", "--json").json()["approvalId"]
    assert run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-2", "--approval", approval,
               "--operator", "owner").code == 0
    r = run(ws, "set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--decision-record", "DR-2", "--operator",
            "oncall", "--yes", env={"SLOTGEN_SIGNING_KEY": ""})
    assert r.code == 0, r.stderr
    last = entries(ws)[-1]
    assert last["signature"] is None and last["actor"]["identity"] == "declared"
    for _ in range(2):
        status = run(ws, "status", "--env", "staging", "--json")
        assert status.code == 0 and status.json()["identity"] == "declared"
        assert any("identity: declared" in w for w in status.json()["warnings"])
    assert run(ws, "audit", "verify", "--env", "staging").code == 0


def test_an_unsigned_entry_claiming_a_change_is_caught(tmp_path, endpoint):
    """Dropping a set entry's signature (and saying 'unidentified') does not make it acceptable: only an
    init, a rollback or a refusal may be unsigned."""
    ws = tmp_path / "ws"
    walk(ws, 2, endpoint.base_url)
    target = next(e["seq"] for e in entries(ws) if e["action"] == "set" and e["step"] == "feature-flag-on")

    def edit(items):
        items[target - 1]["signature"] = None
        items[target - 1]["actor"]["identity"] = "unidentified"

    rewrite(ws, edit)
    verify = run(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4 and verify.json()["firstBad"] == target and "not signed" in verify.json()["reason"]
    assert_rollback_still_works(ws)
