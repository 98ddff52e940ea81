"""Signed checkpoints against real logs and real ssh-keygen (SPEC section 9)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from slotgen_ops.audit import checkpoint, sshsig
from slotgen_ops.ops.authority import resolve_actor
from slotgen_ops.audit.canonical import _dumps, entry_hash
from slotgen_ops.ops.init import init_workspace


@pytest.fixture
def log(tmp_path) -> Path:
    root = tmp_path / "ws"
    init_workspace(root, resolve_actor(None, "owner"))
    return root / "environments" / "staging.audit.jsonl"


@pytest.fixture
def key(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "keys" / "owner"
    path.parent.mkdir()
    return path, sshsig.generate_key(path, comment="owner")


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
    assert cp.size == 5 and signer.fingerprint == sshsig.fingerprint(public)
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
        allowed = [sshsig.generate_key(other)]
    else:  # the same key's signature in another namespace is not a checkpoint signature
        head = text.partition("\n\n")[0] + "\n"
        text = head + "\n" + sshsig.sign(head.encode(), key_file, "slotgen-audit")
    with pytest.raises(checkpoint.BadCheckpoint):
        checkpoint.verify(text, allowed)


@pytest.mark.parametrize("text", ["", "slotgen/staging\n1\n", "slotgen/Staging\n1\nAAAA\n\nsig",
                                  "slotgen/staging\n01\n" + "A" * 44 + "\n\nsig", "slotgen/staging\n1\n!!\n\nsig"])
def test_malformed_checkpoints_are_refused_with_a_reason(text):
    with pytest.raises(checkpoint.BadCheckpoint):
        checkpoint.parse(text)
