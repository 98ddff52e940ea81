"""Signed checkpoints against real logs and real ssh-keygen (SPEC section 9)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from slotgen_ops.audit import checkpoint, sshkey, sshkeygen, sshsig
from slotgen_ops.policy.authority import resolve_actor
from slotgen_ops.audit.canonical import _dumps, entry_hash
from slotgen_ops.workspace.init import init_workspace


@pytest.fixture
def log(tmp_path) -> Path:
    root = tmp_path / "ws"
    init_workspace(root, resolve_actor(None, "owner"))
    return root / "environments" / "staging.audit.jsonl"


@pytest.fixture
def key(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "keys" / "owner"
    path.parent.mkdir()
    return path, sshkeygen.generate_key(path, comment="owner")


def append_entries(log: Path, count: int) -> None:
    """Entries chained like the log's own (the checkpoint does not care how they were made)."""
    lines = log.read_bytes().splitlines()
    prev = json.loads(lines[-1])
    for _ in range(count):
        entry = {**prev, "seq": prev["seq"] + 1, "prevHash": prev["hash"], "reason": f"entry {prev['seq'] + 1}"}
        entry.pop("hash")
        entry["hash"] = entry_hash(entry)
        lines.append(_dumps(entry))
        prev = entry
    log.write_bytes(b"\n".join(lines) + b"\n")


def test_a_checkpoint_is_three_lines_and_an_ssh_signature_ssh_keygen_accepts(log, key, tmp_path):
    key_file, public = key
    append_entries(log, 4)
    text = checkpoint.make("staging", log, key_file)
    head, _, signature = text.partition("\n\n")
    origin, size, root = head.split("\n")
    assert origin == "slotgen/staging" and size == "5" and len(root) == 44
    cp, signer = checkpoint.verify(text, [public])
    assert cp.size == 5 and signer.fingerprint == sshkey.fingerprint(public)
    # The real tool agrees: the signed message is the three lines with their newlines.
    (tmp_path / "allowed").write_text(sshsig.allowed_signers([("owner", [public])], checkpoint.NAMESPACE))
    (tmp_path / "sig").write_text(signature)
    result = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "owner", "-n",
                             checkpoint.NAMESPACE, "-s", str(tmp_path / "sig")], input=cp.body, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_an_appended_log_extends_its_checkpoint(log, key):
    key_file, public = key
    text = checkpoint.make("staging", log, key_file)
    append_entries(log, 7)
    cp, _ = checkpoint.verify(text, [public])
    assert checkpoint.consistent(cp, log)[0] is True


def test_a_rewritten_log_does_not_even_with_every_hash_recomputed(log, key):
    key_file, public = key
    append_entries(log, 5)
    text = checkpoint.make("staging", log, key_file)
    # The insider's rewrite: change entry 3, then re-chain everything after it.
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    entries[2]["reason"] = "rewritten"
    for i in range(2, len(entries)):
        entries[i].pop("hash")
        if i:
            entries[i]["prevHash"] = entries[i - 1]["hash"]
        entries[i]["hash"] = entry_hash(entries[i])
    log.write_bytes(b"\n".join(_dumps(e) for e in entries) + b"\n")
    append_entries(log, 2)
    cp, _ = checkpoint.verify(text, [public])
    ok, why = checkpoint.consistent(cp, log)
    assert ok is False and "not the ones" in why


def test_a_truncated_log_does_not(log, key):
    key_file, public = key
    append_entries(log, 5)
    text = checkpoint.make("staging", log, key_file)
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:3]))
    ok, why = checkpoint.consistent(checkpoint.verify(text, [public])[0], log)
    assert ok is False and "truncated" in why


@pytest.mark.parametrize("tamper", ["size", "root", "origin", "key", "namespace"])
def test_a_tampered_or_foreign_checkpoint_is_refused(log, key, tmp_path, tamper):
    key_file, public = key
    text = checkpoint.make("staging", log, key_file)
    allowed = [public]
    if tamper == "size":
        text = text.replace("\n1\n", "\n2\n", 1)
    elif tamper == "root":
        head, sep, sig = text.partition("\n\n")
        lines = head.split("\n")
        lines[2] = "A" + lines[2][1:] if lines[2][0] != "A" else "B" + lines[2][1:]
        text = "\n".join(lines) + sep + sig
    elif tamper == "origin":
        text = text.replace("slotgen/staging", "slotgen/production", 1)
    elif tamper == "key":
        other = tmp_path / "keys" / "other"
        allowed = [sshkeygen.generate_key(other)]
    else:  # the same key's signature in another namespace is not a checkpoint signature
        head = text.partition("\n\n")[0] + "\n"
        text = head + "\n" + sshkeygen.sign(head.encode(), key_file, "slotgen-audit")
    with pytest.raises(checkpoint.BadCheckpoint):
        checkpoint.verify(text, allowed)


@pytest.mark.parametrize("text", ["", "slotgen/staging\n1\n", "slotgen/Staging\n1\nAAAA\n\nsig",
                                  "slotgen/staging\n01\n" + "A" * 44 + "\n\nsig", "slotgen/staging\n1\n!!\n\nsig"])
def test_malformed_checkpoints_are_refused_with_a_reason(text):
    with pytest.raises(checkpoint.BadCheckpoint):
        checkpoint.parse(text)


# --- through the CLI: whose signature counts, and input that is no checkpoint ---------------------------

def cli(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, acting in the workspace `ws`, with no operator or agent leaking in."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLOTGEN_", "FEATURE_SLOTGEN", "OPENAI_")) and k != "SSH_AUTH_SOCK"}
    env.update({"NO_COLOR": "1", "COLUMNS": "120"})
    return subprocess.run([sys.executable, "-m", "slotgen_ops", *args, "--workspace", str(ws)], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    return lines[0]


def accept_roster(ws: Path, roster: str, approver: tuple[str, str], ref: str) -> None:
    """operators.yaml replaced by `roster`, approved by `approver` (id, key), accepted by the owner."""
    (ws / "operators.yaml").write_text(roster)
    approved = cli(ws, "approve", "--env", "staging", "--config", "--decision-record", ref, "--operator", approver[0],
                   "--key", approver[1], "--yes", "--json")
    assert approved.returncode == 0, approved.stderr
    accepted = cli(ws, "config", "accept", "--env", "staging", "--decision-record", ref, "--approval",
                   json.loads(approved.stdout)["approvalId"], "--operator", "owner", "--key", "demo-keys/owner")
    assert accepted.returncode == 0, accepted.stderr


def verify_one(ws: Path, path: Path) -> tuple[int, dict]:
    done = cli(ws, "audit", "verify", "--env", "staging", "--checkpoint", str(path), "--json")
    return done.returncode, json.loads(done.stdout)["checkpoints"][0]


@pytest.fixture
def cli_ws(tmp_path) -> Path:
    import sys

    done = subprocess.run([sys.executable, "-m", "slotgen_ops", "init", str(tmp_path / "ws")], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return tmp_path / "ws"


def test_a_checkpoint_is_judged_under_the_roster_in_force_at_its_size(cli_ws, tmp_path):
    """An operator removed later: their old checkpoint still verifies (they were one when they made it).
    Operators added later: neither their SSH signature nor their signed-note line makes a checkpoint of a
    size from before they joined (no `audit checkpoint` could have made it) - exit 4, naming the roster."""
    ws = cli_ws
    before = tmp_path / "before"
    made = cli(ws, "audit", "checkpoint", "--env", "staging", "--operator", "approver", "--key", "demo-keys/approver",
               "--output", str(before))
    assert made.returncode == 0, made.stderr
    (tmp_path / "keys").mkdir()
    ec_line = sshkeygen.generate_key(tmp_path / "keys" / "newbie", "ecdsa", bits=256)
    late_line = sshkeygen.generate_key(tmp_path / "keys" / "late")
    roster = (ws / "operators.yaml").read_text()
    newcomers = (f'  - id: newbie\n    name: New approver\n    roles: [approver]\n    keys: ["{ec_line}"]\n'
                 f'  - id: late\n    name: Late on-call\n    roles: [on-call]\n    keys: ["{late_line}"]\n')
    accept_roster(ws, roster + newcomers, ("approver", "demo-keys/approver"), "DR-7")
    # A non-Ed25519 operator: the SSH signature only, and one line that says so.
    ec_cp = tmp_path / "ec-now"
    made = cli(ws, "audit", "checkpoint", "--env", "staging", "--operator", "newbie", "--key",
               str(tmp_path / "keys" / "newbie"), "--output", str(ec_cp))
    assert made.returncode == 0, made.stderr
    warning = [line for line in made.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "no C2SP signed-note line" in warning[0] and "ecdsa-sha2-nistp256" in warning[0]
    assert "\u2014" not in ec_cp.read_text()
    assert verify_one(ws, ec_cp)[0] == 0
    # The newcomers forge checkpoints of size 1, the log as it stood before they joined (consistent with it).
    old = checkpoint.parse(before.read_text())
    by_newbie, by_late = tmp_path / "by-newbie", tmp_path / "by-late"
    by_newbie.write_text(checkpoint.sign(old.body, tmp_path / "keys" / "newbie")[0])  # SSH signature only
    by_late.write_text(old.body.decode() + "\n" + checkpoint.sign_note(old.body, tmp_path / "keys" / "late") + "\n")
    for forged in (by_newbie, by_late):
        code, item = verify_one(ws, forged)
        assert code == 4 and item["consistent"] is True and item["signed"] is False, item
        assert "roster in force at size 1" in item["reason"]
    # The approver leaves the roster (approved by the newcomer): their checkpoint from before still holds.
    accept_roster(ws, _without(roster, "approver") + newcomers, ("newbie", str(tmp_path / "keys" / "newbie")), "DR-8")
    head_roster = json.loads((ws / "environments" / "staging.audit.jsonl").read_text().splitlines()[-1])["state"]
    assert "approver" not in [op["id"] for op in head_roster["policy"]["roster"]["operators"]]
    code, item = verify_one(ws, before)
    assert code == 0 and item == {"file": str(before), "size": 1, "consistent": True, "signed": True,
                                  "signer": "approver", "reason": None}
    assert verify_one(ws, by_late)[0] == 4 and verify_one(ws, ec_cp)[0] == 0


def _without(roster: str, operator: str) -> str:
    """operators.yaml's text without one operator's block."""
    head, *blocks = roster.split("  - id: ")
    return head + "".join("  - id: " + b for b in blocks if not b.startswith(operator + "\n"))


@pytest.mark.parametrize("size", ["9" * 5000, "1" + "0" * 4400, str(2**63), "\u0661", "1\u0662", "+1", " 1", "-0"])
def test_a_tree_size_that_is_no_c2sp_size_is_one_line_and_exit_2(cli_ws, tmp_path, size):
    path = tmp_path / "cp"
    made = cli(cli_ws, "audit", "checkpoint", "--env", "staging", "--operator", "owner", "--key", "demo-keys/owner",
               "--output", str(path))
    assert made.returncode == 0, made.stderr
    path.write_text(path.read_text().replace("\n1\n", f"\n{size}\n", 1))
    line = one_line_error(cli(cli_ws, "audit", "verify", "--env", "staging", "--checkpoint", str(path)), 2)
    assert "tree size" in line and len(line) < 300


def test_a_checkpoint_at_the_largest_size_is_read_and_refused_as_too_large(cli_ws, tmp_path):
    """2^63 - 1 is a size C2SP readers take: it parses, and the log is shorter (exit 4, not a crash)."""
    path = tmp_path / "cp"
    assert cli(cli_ws, "audit", "checkpoint", "--env", "staging", "--operator", "owner", "--key", "demo-keys/owner",
               "--output", str(path)).returncode == 0
    path.write_text(path.read_text().replace("\n1\n", f"\n{2**63 - 1}\n", 1))
    code, item = verify_one(cli_ws, path)
    assert code == 4 and item["consistent"] is False and "fewer than the checkpoint" in item["reason"]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "huge", "binary", "missing"])
def test_a_checkpoint_file_that_is_no_text_file_is_one_line_and_exit_2(cli_ws, tmp_path, kind):
    import os

    path = tmp_path / "cp"
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes it: reading it would wait for ever
    elif kind == "dev-zero":
        path = Path("/dev/zero")  # endless: reading it would never end
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge":
        path.write_bytes(b"slotgen/staging\n1\n" + b"A" * (8 << 20))
    elif kind == "binary":
        path.write_bytes(b"slotgen/staging\n1\n\xff\xfe\n\n")
    import time

    started = time.monotonic()
    line = one_line_error(cli(cli_ws, "audit", "verify", "--env", "staging", "--checkpoint", str(path)), 2)
    assert time.monotonic() - started < 30 and str(path) in line


def test_a_checkpoint_from_before_signed_note_lines_still_verifies(log, key):
    """The old form, the SSH signature alone after the empty line, is read as it always was; the new form
    adds the signed-note line after the END line, where ssh-keygen stops reading."""
    key_file, public = key
    text = checkpoint.make("staging", log, key_file)
    note_line = text.splitlines()[-1]
    assert note_line.startswith("\u2014 slotgen/staging ") and text.endswith(note_line + "\n")
    old_form = text[: -len(note_line) - 1]
    assert old_form.endswith(sshsig.END + "\n")
    for form in (old_form, text):
        cp, signer = checkpoint.verify(form, [public])
        assert cp.size == 1 and signer.fingerprint == sshkey.fingerprint(public)
    assert checkpoint.parse(old_form).notes == () and len(checkpoint.parse(text).notes) == 1
    with pytest.raises(checkpoint.BadCheckpoint, match="no signed-note line"):
        checkpoint.note_of(old_form)
    for junk in ("\nnot a note line\n", "\n\u2014 slotgen/staging !!!\n", "\n\u2014 bad+name AAAAAAAA\n"):
        with pytest.raises(checkpoint.BadCheckpoint):
            checkpoint.parse(old_form + junk.lstrip("\n"))
