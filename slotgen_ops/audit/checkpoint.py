"""Signed checkpoints of an audit log, and the proof that a log extends one (SPEC section 9).

A checkpoint is three lines in the C2SP `tlog-checkpoint` form: the origin
`slotgen/<env>`, the tree size (entries), the RFC 6962 root hash in standard
base64; then an empty line and an SSH signature (namespace
`slotgen-checkpoint`) over those three lines with their newlines. Leaf *n* is
entry *n*'s line as stored, without the newline. A log that was rewritten in
any entry a checkpoint covers does not extend it, whatever was recomputed and
re-signed afterwards.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import merkle, sshsig

NAMESPACE = "slotgen-checkpoint"
_ORIGIN_RE = re.compile(r"^slotgen/[a-z][a-z0-9-]{0,31}$")


class BadCheckpoint(Exception):
    """A checkpoint that cannot be read, or whose signature does not verify (the reason says which)."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    signature: str  # the armored SSH signature

    @property
    def body(self) -> bytes:
        return body(self.origin, self.size, self.root)


def body(origin: str, size: int, root: bytes) -> bytes:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()


def leaves(log_path: Path) -> Iterator[bytes]:
    """The leaf hashes of a log file: each complete line, without its newline (a torn tail is no leaf)."""
    with open(log_path, "rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                yield merkle.leaf_hash(line[:-1])


def make(env: str, log_path: Path, key_file: Path) -> str:
    """A checkpoint of the log as it is now, signed with `key_file` (by `ssh-keygen -Y sign`)."""
    hashes = list(leaves(log_path))
    text = body(f"slotgen/{env}", len(hashes), merkle.root(hashes))
    return text.decode() + "\n" + sshsig.sign(text, key_file, NAMESPACE)


def parse(text: str) -> Checkpoint:
    head, sep, signature = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or len(lines) != 3:
        raise BadCheckpoint("not a checkpoint: expected origin, size and root lines, an empty line, a signature")
    origin, size_text, root_text = lines
    if not _ORIGIN_RE.match(origin):
        raise BadCheckpoint(f"origin {origin!r} is not slotgen/<env>")
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise BadCheckpoint(f"tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise BadCheckpoint("root hash is not standard base64") from None
    if len(root) != 32:
        raise BadCheckpoint("root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root, signature)


def verify(text: str, allowed_keys: Iterable[str]) -> tuple[Checkpoint, sshsig.Verified]:
    """The checkpoint and who signed it; BadCheckpoint if it cannot be read or its signature fails."""
    checkpoint = parse(text)
    try:
        signer = sshsig.verify(checkpoint.body, checkpoint.signature, NAMESPACE, allowed_keys)
    except sshsig.BadSignature as exc:
        raise BadCheckpoint(f"signature: {exc}") from None
    return checkpoint, signer


def leaves_of(lines: Iterable[bytes]) -> list[bytes]:
    """The leaf hashes of a log's lines (each with its newline), wherever they are kept."""
    return [merkle.leaf_hash(line[:-1]) for line in lines if line.endswith(b"\n")]


def consistent(checkpoint: Checkpoint, log: Path | list[bytes]) -> tuple[bool, str]:
    """Is the log (a file, or its leaf hashes) an append-only extension of the checkpoint? (RFC 6962
    consistency proof, checked.)"""
    hashes = list(leaves(log)) if isinstance(log, Path) else list(log)
    n, m = len(hashes), checkpoint.size
    if m > n:
        return False, f"the log has {n} entries, fewer than the checkpoint's {m} (truncated?)"
    if m == 0:
        return True, "an empty checkpoint is extended by any log"
    new_root = merkle.root(hashes)
    proof = merkle.consistency_proof(hashes, m)
    if not merkle.verify_consistency(m, n, checkpoint.root, new_root, proof):
        return False, f"the first {m} entries are not the ones the checkpoint covers (rewritten?)"
    return True, f"the log's {n} entries extend the checkpoint's {m}"
