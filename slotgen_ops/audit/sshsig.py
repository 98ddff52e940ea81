"""SSH signatures (OpenSSH SSHSIG): the envelope, and verifying it in-process.

SPEC section 7: an operator signs entries with `ssh-keygen -Y sign` (see `sshkeygen`); SPEC section 9:
checkpoints carry the same kind of signature. `verify` checks a signature against OpenSSH public key
lines (parsed by `sshkey`) without a subprocess, and agrees with `ssh-keygen -Y verify` given the file
`allowed_signers` writes (tests/audit/test_sshsig.py holds the two to the same verdict).

Formats: OpenSSH PROTOCOL.sshsig (the envelope and the signed data),
PROTOCOL.u2f (sk keys: the data signed is SHA256(application) || flags ||
counter || SHA256(message)), RFC 8709 (Ed25519), RFC 5656 (ECDSA), RFC 8332
(rsa-sha2-256/512; SHA-1 `ssh-rsa` signatures are refused, as ssh-keygen
refuses them for SSHSIG). Where PROTOCOL.sshsig leaves a choice, this module
does what OpenSSH's sshsig.c does: the `reserved` field of the envelope is
ignored and the signed data always carries it empty.

Deliberately stricter than `ssh-keygen -Y verify` (OpenSSH 9.2), which accepts
all three: an sk signature must carry the user-presence flag (what sshd
requires by default; ssh-keygen only logs the flags), the envelope version
must be 1 (ssh-keygen also takes 0), and nothing may follow the END line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from .sshkey import (
    _ECDSA_CURVES,
    SK_ECDSA,
    SK_ED25519,
    SshsigError,
    _fingerprint,
    _invalid_signature,
    _Key,
    _parse_key_blob,
    _parse_key_line,
    _Reader,
    _Short,
    _string,
    _Unsupported,
)

if TYPE_CHECKING:  # `cryptography` is imported when a signature is checked
    from cryptography.hazmat.primitives import hashes

MAGIC = b"SSHSIG"
VERSION = 1
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
HASH_ALGORITHMS = ("sha256", "sha512")
_RSA_SIGNATURES = {"rsa-sha2-256": "SHA256", "rsa-sha2-512": "SHA512"}
SK_USER_PRESENT = 0x01


def _hash(name: str) -> hashes.HashAlgorithm:
    from cryptography.hazmat.primitives import hashes

    return getattr(hashes, name)()


class Reason(StrEnum):
    MALFORMED = "malformed"  # the armor or the envelope does not parse
    UNSUPPORTED = "unsupported"  # parses, but a key or signature type (or version) we do not verify
    NAMESPACE = "namespace"  # made for another namespace
    HASH_ALGORITHM = "hash-algorithm"  # not sha256 or sha512
    KEY_NOT_ALLOWED = "key-not-allowed"  # made by a key not among the allowed ones
    INVALID = "invalid"  # the signature does not verify (or an sk signature lacks user presence)


class BadSignature(SshsigError):
    """A signature that is not accepted, with the first check it failed (`reason`)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = " ".join(detail.split())
        super().__init__(f"bad SSH signature ({reason.value}): {self.detail}")


@dataclass(frozen=True)
class Signature:
    """A parsed SSHSIG envelope (its public key and signature blobs parsed and checked too)."""

    public_key: bytes  # the key blob, as in a public key line
    namespace: str
    reserved: bytes
    hash_algorithm: str
    signature: bytes  # the signature blob: string type || string sig [|| byte flags || uint32 counter]
    signature_type: str
    raw_signature: bytes  # the signature proper (for ECDSA: mpint r || mpint s)
    sk_flags: int | None = None
    sk_counter: int | None = None

    @property
    def key_type(self) -> str:
        return _Reader(self.public_key).string().decode()

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.public_key)


@dataclass(frozen=True)
class Verified:
    fingerprint: str  # "SHA256:..." as `ssh-keygen -l` prints it
    key_type: str  # e.g. "ssh-ed25519"


# --- the envelope ----------------------------------------------------------------------------------

def _dearmor(armored: str) -> bytes:
    lines = armored.strip().splitlines()
    if not lines or lines[0].strip() != BEGIN:
        raise BadSignature(Reason.MALFORMED, "missing the BEGIN SSH SIGNATURE line")
    if len(lines) < 3 or lines[-1].strip() != END:
        raise BadSignature(Reason.MALFORMED, "missing the END SSH SIGNATURE line")
    body = "".join("".join(line.split()) for line in lines[1:-1])
    try:
        return binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error as exc:
        raise BadSignature(Reason.MALFORMED, f"the body is not valid base64 ({exc})") from None


def _parse_signature_blob(key: _Key, blob: bytes) -> tuple[str, bytes, int | None, int | None]:
    r = _Reader(blob)
    sig_type = r.cstring("signature type")
    raw = r.string()
    flags = counter = None
    if key.key_type in (SK_ED25519, SK_ECDSA):
        flags, counter = r.u8(), r.u32()
    r.end("the signature")
    if key.key_type == "ssh-rsa":
        if sig_type == "ssh-rsa":
            raise _Unsupported("RSA signatures with SHA-1 (ssh-rsa) are refused; rsa-sha2-256/512 only")
        if sig_type not in _RSA_SIGNATURES:
            raise _Unsupported(f"signature type {sig_type!r} on an RSA key")
    elif key.key_type == SK_ECDSA and sig_type == "webauthn-" + SK_ECDSA:
        raise _Unsupported("webauthn signatures are not supported")
    elif sig_type != key.key_type:
        raise _Short(f"a {sig_type} signature on a {key.key_type} key")
    if key.key_type in ("ssh-ed25519", SK_ED25519) and len(raw) != 64:
        raise _Short(f"an Ed25519 signature is 64 bytes, not {len(raw)}")
    if key.key_type in _ECDSA_CURVES or key.key_type == SK_ECDSA:
        inner = _Reader(raw)
        inner.mpint("ECDSA r")
        inner.mpint("ECDSA s")
        inner.end("the ECDSA signature")
    return sig_type, raw, flags, counter


def parse_signature(armored: str) -> Signature:
    """Parse an armored SSH signature strictly (PROTOCOL.sshsig); anything malformed raises BadSignature."""
    data = _dearmor(armored)
    r = _Reader(data)
    try:
        if r.take(6) != MAGIC:
            raise BadSignature(Reason.MALFORMED, "no SSHSIG magic")
        version = r.u32()
        key_blob = r.string()
        namespace = r.cstring("namespace")
        reserved = r.string()
        hash_algorithm = r.cstring("hash algorithm")
        sig_blob = r.string()
        r.end("the envelope")
        if version != VERSION:
            raise BadSignature(Reason.UNSUPPORTED, f"SSHSIG version {version} (only {VERSION})")
        key = _parse_key_blob(key_blob)
        sig_type, raw, flags, counter = _parse_signature_blob(key, sig_blob)
    except _Short as exc:
        raise BadSignature(Reason.MALFORMED, str(exc)) from None
    except _Unsupported as exc:
        raise BadSignature(Reason.UNSUPPORTED, str(exc)) from None
    return Signature(key_blob, namespace, reserved, hash_algorithm, sig_blob, sig_type, raw, flags, counter)


# --- verification ----------------------------------------------------------------------------------

def _signed_data(namespace: str, hash_algorithm: str, message: bytes) -> bytes:
    digest = hashlib.new(hash_algorithm, message).digest()
    return (MAGIC + _string(namespace.encode()) + _string(b"") + _string(hash_algorithm.encode())
            + _string(digest))


def _ecdsa_der(raw: bytes) -> bytes:
    inner = _Reader(raw)
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(inner.mpint("ECDSA r"), inner.mpint("ECDSA s"))


def _check(key: _Key, sig: Signature, data: bytes) -> None:
    """Raise InvalidSignature unless `sig` is `key`'s signature over `data`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    crypto = key.public_key()
    if key.key_type in (SK_ED25519, SK_ECDSA):
        assert sig.sk_flags is not None and sig.sk_counter is not None
        data = (hashlib.sha256(key.application).digest() + bytes([sig.sk_flags])
                + struct.pack(">I", sig.sk_counter) + hashlib.sha256(data).digest())
    if isinstance(crypto, Ed25519PublicKey):
        crypto.verify(sig.raw_signature, data)
    elif isinstance(crypto, ec.EllipticCurvePublicKey):
        digest = _hash("SHA256" if key.key_type == SK_ECDSA else _ECDSA_CURVES[key.key_type][2])
        crypto.verify(_ecdsa_der(sig.raw_signature), data, ec.ECDSA(digest))
    else:
        size = (crypto.key_size + 7) // 8
        if len(sig.raw_signature) > size:
            raise InvalidSignature()
        raw = sig.raw_signature.rjust(size, b"\x00")  # OpenSSH pads a short RSA signature
        crypto.verify(raw, data, padding.PKCS1v15(), _hash(_RSA_SIGNATURES[sig.signature_type]))


def verify(message: bytes, armored: str, namespace: str, allowed_keys: Iterable[str]) -> Verified:
    """Accept `armored` as a signature over `message` in `namespace` by one of `allowed_keys`, or raise.

    allowed_keys are OpenSSH public key lines ("ssh-ed25519 AAAA... comment"); a malformed or
    unsupported line raises KeyFormatError (a ValueError: the roster is wrong, not the signature).
    The checks, in order, each raising BadSignature with its `reason`: the envelope parses
    (MALFORMED, UNSUPPORTED), the namespace matches (NAMESPACE), the hash algorithm is sha256
    or sha512 (HASH_ALGORITHM), the signing key is one of allowed_keys (KEY_NOT_ALLOWED), the
    signature verifies and an sk signature asserts user presence (INVALID).
    """
    allowed = [_parse_key_line(line) for line in allowed_keys]
    sig = parse_signature(armored)
    if sig.namespace != namespace:
        raise BadSignature(Reason.NAMESPACE, f"made for namespace {sig.namespace!r}, not {namespace!r}")
    if sig.hash_algorithm not in HASH_ALGORITHMS:
        raise BadSignature(Reason.HASH_ALGORITHM, f"hash algorithm {sig.hash_algorithm!r} (sha256 or sha512 only)")
    key = next((k for k in allowed if k.blob == sig.public_key), None)
    if key is None:
        raise BadSignature(Reason.KEY_NOT_ALLOWED,
                           f"made by {sig.key_type} key {sig.fingerprint}, which is not an allowed key")
    try:
        _check(key, sig, _signed_data(namespace, sig.hash_algorithm, message))
    except _invalid_signature():
        raise BadSignature(Reason.INVALID, f"does not verify with {key.key_type} key {sig.fingerprint}") from None
    if sig.sk_flags is not None and not sig.sk_flags & SK_USER_PRESENT:
        raise BadSignature(Reason.INVALID,
                           f"the security key signature lacks user presence (flags {sig.sk_flags:#04x})")
    return Verified(fingerprint=sig.fingerprint, key_type=key.key_type)


# --- allowed signers -------------------------------------------------------------------------------

_PATTERN_CHARS = set(',*?!"')


def _check_token(value: str, what: str) -> None:
    if not value or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c in _PATTERN_CHARS for c in value) \
            or value.startswith("#"):
        raise ValueError(f"{what} {value!r} cannot be written to an allowed-signers file "
                         "(empty, or whitespace, control characters or one of , * ? ! \" #)")


def allowed_signers(roster: Iterable[tuple[str, Iterable[str]]], namespace: str) -> str:
    """An allowed-signers file (ssh-keygen(1) ALLOWED SIGNERS) for (principal, public key lines) pairs.

    Each key gives one line `principal namespaces="NAMESPACE" TYPE BASE64`, so that
    `ssh-keygen -Y verify -f FILE -I principal -n NAMESPACE` accepts its signatures.
    """
    _check_token(namespace, "namespace")
    out: list[str] = []
    for principal, keys in roster:
        _check_token(principal, "principal")
        for line in keys:
            key = _parse_key_line(line)
            out.append(f'{principal} namespaces="{namespace}" {key.key_type} '
                       f'{base64.b64encode(key.blob).decode()}\n')
    return "".join(out)


__all__ = ["BEGIN", "END", "HASH_ALGORITHMS", "MAGIC", "SK_USER_PRESENT", "VERSION", "BadSignature", "Reason",
           "Signature", "Verified", "allowed_signers", "parse_signature", "verify"]
