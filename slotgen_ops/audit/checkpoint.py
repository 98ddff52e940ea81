"""Signed checkpoints of an audit log, and the proof that a log extends one (SPEC sections 9 and 14).

A checkpoint is three lines in the C2SP `tlog-checkpoint` form: the origin
`slotgen/<env>`, the tree size (entries), the RFC 6962 root hash in standard
base64; then an empty line, an SSH signature (namespace `slotgen-checkpoint`)
over those three lines with their newlines and, when the operator's key is
Ed25519, a C2SP signed-note signature line over the same three lines:

    slotgen/staging
    42
    <base64 root>

    -----BEGIN SSH SIGNATURE-----
    ...
    -----END SSH SIGNATURE-----
    — slotgen/staging <base64(key id || Ed25519 signature)>

The SSH signature comes first so that everything after the empty line is
still what `ssh-keygen -Y verify -s` reads (it stops at the END line), as it
was before signed-note lines existed; checkpoints without one stay valid.
Deleting the SSH armor lines leaves a plain C2SP signed note (`note_of`) that
standard tlog tooling and witnesses verify with the operator's verifier key
(`vkey`). Leaf *n* is entry *n*'s line as stored, without the newline. A log
that was rewritten in any entry a checkpoint covers does not extend it,
whatever was recomputed and re-signed afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import merkle, sshagent, sshkey, sshkeygen, sshsig

NAMESPACE = "slotgen-checkpoint"
_ORIGIN_RE = re.compile(r"^slotgen/[a-z][a-z0-9-]{0,31}$")
#: A tree size is at most 19 ASCII digits and below 2**63: what C2SP readers parse it into (Go's tlog an int64).
MAX_SIZE = 2**63 - 1
_SIZE_RE = re.compile(r"^(0|[1-9][0-9]{0,18})$")
NOTE_DASH = "\u2014"  # the em dash that opens a signed-note signature line
ED25519_TYPE = b"\x01"  # C2SP signed-note signature type: Ed25519
MAX_NOTE_SIGNATURES = 100  # what Go's note.Open accepts; C2SP asks for at least 16


class BadCheckpoint(Exception):
    """A checkpoint that cannot be read, or whose signature does not verify (the reason says which)."""


@dataclass(frozen=True)
class NoteSignature:
    """One signed-note signature line: `— <name> <base64(key id || signature)>`."""

    name: str
    key_id: bytes  # 4 bytes
    signature: bytes

    @property
    def line(self) -> str:
        return f"{NOTE_DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    signature: str | None  # the armored SSH signature (None in a plain signed note)
    notes: tuple[NoteSignature, ...] = ()  # its signed-note signature lines, known keys or not

    @property
    def body(self) -> bytes:
        return body(self.origin, self.size, self.root)


def body(origin: str, size: int, root: bytes) -> bytes:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()


# --- C2SP signed notes ----------------------------------------------------------------------------

def note_name(origin: str) -> str:
    """The key name of a checkpoint's signed-note line: its origin, `slotgen/<env>`.

    C2SP tlog-checkpoint: "The log's key name in its signature line SHOULD match the origin line", and
    a witness looks the log's keys up by that name. Every operator of the environment signs under the
    same name; C2SP tells their keys apart by the key id, which hashes the public key with the name
    (one verifier key per operator key). A name that also carried the operator would break that SHOULD
    and give a witness one log per operator. The name carries the environment, so a line made for
    staging names another key than one made for production, besides signing another origin line.
    """
    return origin


def key_id(name: str, public: bytes) -> bytes:
    """C2SP signed-note key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + public).digest()[:4]


def vkey(name: str, public_key_line: str) -> str:
    """The C2SP verifier key (`<name>+<hex key id>+<base64(0x01 || public key)>`) of an `ssh-ed25519` line,
    what a witness or Go's note.NewVerifier is given. sshkey.NotEd25519 for another key type."""
    public = sshkey.ed25519_public(public_key_line)
    return f"{name}+{key_id(name, public).hex()}+{base64.b64encode(ED25519_TYPE + public).decode()}"


def note_line(name: str, public: bytes, signature: bytes) -> str:
    """The signature line (without its newline) for an Ed25519 `signature` over a note's text."""
    return NoteSignature(name, key_id(name, public), signature).line


def sign_note(text: bytes, key_file: Path) -> str:
    """The signed-note line over `text` with the Ed25519 key `key_file` (file or ssh-agent, as ssh-keygen
    takes it). sshkey.NotEd25519 when the key is of another type; sshkey.SigningError otherwise."""
    origin = text.split(b"\n", 1)[0].decode()
    public, signature = sshagent.sign_ed25519(text, key_file)
    return note_line(note_name(origin), public, signature)


def _parse_note_line(line: str) -> NoteSignature:
    if not line.startswith(NOTE_DASH + " "):
        raise BadCheckpoint(f"line {line[:40]!r} after the signature is not a signed-note line (— name signature)")
    name, sep, b64 = line[2:].partition(" ")
    if not sep or not name or "+" in name or any(c.isspace() for c in name) or not b64:
        raise BadCheckpoint(f"signed-note line {line[:40]!r}: a key name (no spaces, no +) and a signature")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadCheckpoint(f"signed-note line of {name!r}: the signature is not standard base64") from None
    if len(raw) < 5:
        raise BadCheckpoint(f"signed-note line of {name!r}: too short for a key id and a signature")
    return NoteSignature(name, raw[:4], raw[4:])


def note_of(text: str) -> str:
    """The plain C2SP signed note in a checkpoint: its three lines, the empty line and its signed-note
    lines, without the SSH signature (what `sed '/^-----BEGIN SSH/,/^-----END SSH/d'` leaves).
    BadCheckpoint if it has no signed-note line."""
    checkpoint = parse(text)
    if not checkpoint.notes:
        raise BadCheckpoint("the checkpoint has no signed-note line (its signer's key is not Ed25519?)")
    return checkpoint.body.decode() + "\n" + "".join(n.line + "\n" for n in checkpoint.notes)


# --- reading and checking -------------------------------------------------------------------------

def leaves(log_path: Path) -> Iterator[bytes]:
    """The leaf hashes of a log file: each complete line, without its newline (a torn tail is no leaf)."""
    with open(log_path, "rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                yield merkle.leaf_hash(line[:-1])


def make(env: str, log_path: Path, key_file: Path) -> str:
    """A checkpoint of the log as it is now, signed with `key_file` (by `ssh-keygen -Y sign`, and a
    signed-note line when the key is Ed25519)."""
    hashes = list(leaves(log_path))
    text = body(f"slotgen/{env}", len(hashes), merkle.root(hashes))
    return sign(text, key_file)[0]


def sign(text: bytes, key_file: Path) -> tuple[str, bool]:
    """(the checkpoint, whether it has a signed-note line): `text` signed by `key_file`."""
    armored = sshkeygen.sign(text, key_file, NAMESPACE)
    try:
        line = sign_note(text, key_file) + "\n"
    except sshkey.NotEd25519:
        return text.decode() + "\n" + armored, False
    return text.decode() + "\n" + armored + line, True


def parse(text: str) -> Checkpoint:
    head, sep, rest = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or len(lines) != 3:
        raise BadCheckpoint("not a checkpoint: expected origin, size and root lines, an empty line, a signature")
    origin, size_text, root_text = lines
    if not _ORIGIN_RE.match(origin):
        raise BadCheckpoint(f"origin {origin[:60]!r} is not slotgen/<env>")
    if not _SIZE_RE.match(size_text) or int(size_text) > MAX_SIZE:
        shown = size_text if len(size_text) <= 24 else f"{size_text[:12]}...({len(size_text)} characters)"
        raise BadCheckpoint(f"tree size {shown!r} is not a decimal number below 2^63")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise BadCheckpoint("root hash is not standard base64") from None
    if len(root) != 32:
        raise BadCheckpoint("root hash is not 32 bytes")
    signature, notes = _signatures(rest)
    return Checkpoint(origin, int(size_text), root, signature, notes)


def _signatures(rest: str) -> tuple[str | None, tuple[NoteSignature, ...]]:
    """The SSH signature (armored, None if absent) and the signed-note lines after the empty line.

    Before signed-note lines existed, everything there was the SSH signature: a text that does not
    open with a signed-note line is read that way up to the END line, and only signed-note lines may
    follow it. With no SSH signature, it is a plain signed note: signed-note lines, each ending in a
    newline.
    """
    if rest.startswith(NOTE_DASH):
        if not rest.endswith("\n"):
            raise BadCheckpoint("a signed note ends with a newline")
        armored, tail = None, rest[:-1].split("\n")
    else:
        at = rest.find(sshsig.END)
        if at < 0:
            armored, tail = rest, []  # sshsig says what is wrong with it
        else:
            cut = at + len(sshsig.END)
            armored, after = rest[:cut], rest[cut:]
            tail = after.strip("\n").split("\n") if after.strip("\n") else []
    if len(tail) > MAX_NOTE_SIGNATURES:
        raise BadCheckpoint(f"more than {MAX_NOTE_SIGNATURES} signed-note lines")
    return armored, tuple(_parse_note_line(line) for line in tail)


def verify(text: str, allowed_keys: Iterable[str]) -> tuple[Checkpoint, sshsig.Verified]:
    """The checkpoint and who signed it; BadCheckpoint if it cannot be read or a signature fails.

    Every signature by an allowed key must verify: the SSH signature, if there is one, and every
    signed-note line whose name (the origin) and key id are those of an allowed Ed25519 key. As C2SP
    requires, signed-note lines by other keys (a witness's cosignature, say) are ignored. At least one
    signature must be by an allowed key. The signer is the SSH signature's, else the note's.
    """
    checkpoint = parse(text)
    allowed = list(allowed_keys)
    signer = None
    if checkpoint.signature is not None:
        try:
            signer = sshsig.verify(checkpoint.body, checkpoint.signature, NAMESPACE, allowed)
        except sshsig.BadSignature as exc:
            raise BadCheckpoint(f"signature: {exc}") from None
    note_signer = _verify_notes(checkpoint, allowed)
    signer = signer or note_signer
    if signer is None:
        raise BadCheckpoint(f"no signed-note line is by an allowed key under the name {note_name(checkpoint.origin)}")
    return checkpoint, signer


def _verify_notes(checkpoint: Checkpoint, allowed: list[str]) -> sshsig.Verified | None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name = note_name(checkpoint.origin)
    known: dict[bytes, tuple[bytes, str]] = {}
    for line in allowed:
        try:
            public = sshkey.ed25519_public(line)
        except sshkey.NotEd25519:
            continue
        known[key_id(name, public)] = (public, line)
    signer = None
    for note in checkpoint.notes:
        if note.name != name or note.key_id not in known:
            continue  # an unknown key, even one sharing the name or the id: ignored (C2SP signed-note)
        public, line = known[note.key_id]
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(note.signature, checkpoint.body)
        except InvalidSignature:
            raise BadCheckpoint(f"signed-note line {name}+{note.key_id.hex()}: does not verify with "
                                f"{sshkey.fingerprint(line)}") from None
        signer = signer or sshsig.Verified(fingerprint=sshkey.fingerprint(line), key_type="ssh-ed25519")
    return signer


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
