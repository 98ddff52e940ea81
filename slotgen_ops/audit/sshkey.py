"""OpenSSH public keys, and the errors of the SSH signature modules (`sshsig`, `sshkeygen`, `sshagent`).

Owns the SSH wire encoding (RFC 4251 strings and mpints, read strictly by `_Reader`), public key blobs and
key lines of the types `sshsig` verifies (RFC 8709 Ed25519, RFC 5656 ECDSA, RFC 8332 RSA, PROTOCOL.u2f sk
keys), their SHA-256 fingerprints as `ssh-keygen -l` prints them, and the public key of an operator's key
file, read without decrypting anything and without blocking (SPEC sections 7 and 14). `cryptography` is
imported only when a key other than Ed25519 is parsed or a key is used: reading a roster of Ed25519 keys
(every `status`) needs only their bytes and fingerprints.
"""

from __future__ import annotations

import base64
import binascii
import errno
import functools
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files.atomic import UnsafeFile, read_bounded

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: key type -> (curve name in the key, curve class name, hash name); the objects are made when needed.
_ECDSA_CURVES: dict[str, tuple[str, str, str]] = {
    "ecdsa-sha2-nistp256": ("nistp256", "SECP256R1", "SHA256"),
    "ecdsa-sha2-nistp384": ("nistp384", "SECP384R1", "SHA384"),
    "ecdsa-sha2-nistp521": ("nistp521", "SECP521R1", "SHA512"),
}
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
SUPPORTED_KEY_TYPES = ("ssh-ed25519", *_ECDSA_CURVES, "ssh-rsa", SK_ED25519, SK_ECDSA)
_RSA_MIN_BITS = 1024  # OpenSSH's SSH_RSA_MINIMUM_MODULUS_SIZE
_MAX_MPINT = 16384 // 8 + 1  # OpenSSH's SSHBUF_MAX_BIGNUM, plus a sign byte


class SshsigError(Exception):
    """Base of the SSH modules' errors; str() is always one line."""


class SigningError(SshsigError):
    """ssh-keygen could not make the signature (no key, wrong passphrase, agent without the key, ...)."""


class KeyGenerationError(SshsigError):
    """ssh-keygen could not write a new key pair."""


class KeyFormatError(SshsigError, ValueError):
    """A public key line is malformed or of a type `sshsig` cannot verify."""


class NotEd25519(SshsigError):
    """The key is not a plain Ed25519 key, so it cannot make a plain Ed25519 signature."""


# --- wire format -----------------------------------------------------------------------------------

class _Short(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Short(f"truncated: wanted {n} bytes at offset {self.pos} of {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.u32())

    def cstring(self, what: str) -> str:
        raw = self.string()
        if b"\x00" in raw:
            raise _Short(f"{what} contains a NUL byte")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Short(f"{what} is not UTF-8") from None

    def mpint(self, what: str) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise _Short(f"{what} is negative")
        if len(raw) > _MAX_MPINT or (len(raw) == _MAX_MPINT and raw[0] != 0):
            raise _Short(f"{what} is too large")
        return int.from_bytes(raw, "big")

    def end(self, what: str) -> None:
        if self.pos != len(self.data):
            raise _Short(f"{what} has {len(self.data) - self.pos} bytes of trailing data")


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# --- public keys -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Key:
    key_type: str
    blob: bytes
    crypto: Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None  # None: Ed25519, made when used
    application: bytes = b""  # sk keys only

    def public_key(self) -> Any:
        """The `cryptography` public key (an Ed25519 one is made on first use: any 32 bytes are a key)."""
        if self.crypto is not None:
            return self.crypto
        return _ed25519_key(self.blob)


@functools.lru_cache(maxsize=256)  # each signature carries its key: a log's few keys are parsed once
def _parse_key_blob(blob: bytes) -> _Key:
    """Parse a public key blob strictly; raises _Short (malformed) or _Unsupported."""
    r = _Reader(blob)
    key_type = r.string().decode("utf-8", "replace")
    crypto: Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None
    application = b""
    if key_type in ("ssh-ed25519", SK_ED25519):
        pk = r.string()
        if len(pk) != 32:
            raise _Short(f"an Ed25519 public key is 32 bytes, not {len(pk)}")
        crypto = None  # made from the blob when a signature is checked (_ed25519_key)
    elif key_type in _ECDSA_CURVES or key_type == SK_ECDSA:
        from cryptography.hazmat.primitives.asymmetric import ec

        curve_name, curve_class, _ = _ECDSA_CURVES["ecdsa-sha2-nistp256" if key_type == SK_ECDSA else key_type]
        curve = getattr(ec, curve_class)()
        if r.cstring("curve name") != curve_name:
            raise _Short(f"{key_type} key names another curve")
        point = r.string()
        if not point or point[0] != 0x04:
            raise _Short("the ECDSA public point is not in uncompressed form")
        try:
            crypto = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        except ValueError:
            raise _Short("the ECDSA public point is not on the curve") from None
    elif key_type == "ssh-rsa":
        e, n = r.mpint("RSA exponent"), r.mpint("RSA modulus")
        if n.bit_length() < _RSA_MIN_BITS:
            raise _Short(f"an RSA modulus of {n.bit_length()} bits is too small")
        try:
            from cryptography.hazmat.primitives.asymmetric import rsa

            crypto = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise _Short(f"not a valid RSA public key: {exc}") from None
    else:
        raise _Unsupported(f"key type {key_type!r} is not supported")
    if key_type in (SK_ED25519, SK_ECDSA):
        application = r.cstring("sk application").encode()
    r.end("the public key")
    return _Key(key_type, blob, crypto, application)


class _Unsupported(Exception):
    pass


@functools.lru_cache(maxsize=256)  # a roster's keys are parsed once, not once per entry verified
def _parse_key_line(line: str) -> _Key:
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise KeyFormatError(f"not an OpenSSH public key line: {line.strip()[:60]!r}")
    declared, b64 = parts[0], parts[1]
    if declared not in SUPPORTED_KEY_TYPES:
        raise KeyFormatError(f"key type {declared!r} is not supported (one of {', '.join(SUPPORTED_KEY_TYPES)})")
    try:
        blob = binascii.a2b_base64(b64, strict_mode=True)
    except binascii.Error:
        raise KeyFormatError(f"{declared} key: the key is not valid base64") from None
    try:
        key = _parse_key_blob(blob)
    except (_Short, _Unsupported) as exc:
        raise KeyFormatError(f"{declared} key: {exc}") from None
    if key.key_type != declared:
        raise KeyFormatError(f"the line says {declared} but the key is {key.key_type}")
    return key


def fingerprint(public_key_line: str) -> str:
    """The key's SHA-256 fingerprint exactly as `ssh-keygen -l` prints it ("SHA256:" + unpadded base64)."""
    return _fingerprint(_parse_key_line(public_key_line).blob)



@functools.lru_cache(maxsize=256)
def _ed25519_key(blob: bytes) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    r = _Reader(blob)
    r.string()  # the key type, checked when the blob was parsed
    return Ed25519PublicKey.from_public_bytes(r.string())


def _invalid_signature() -> type[Exception]:
    from cryptography.exceptions import InvalidSignature

    return InvalidSignature


# --- key files -----------------------------------------------------------------------------------

_PRIVATE_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_PRIVATE_END = "-----END OPENSSH PRIVATE KEY-----"


#: A key file is a few KiB at most; an OpenSSH private key with a long comment stays far below this.
KEY_FILE_BOUND = 1 << 20


def _read_key_text(path: Path, errors: str = "replace") -> str:
    """A key file's text, read without blocking and with a bound (SPEC section 14): a FIFO, a device such as
    /dev/zero, a directory or a file over KEY_FILE_BOUND is KeyFormatError, in one line, never a hang."""
    try:
        data = read_bounded(path, KEY_FILE_BOUND)
    except UnsafeFile as exc:
        if exc.errno == errno.EFBIG:
            raise KeyFormatError(f"cannot read the key {path}: {exc.size} bytes, far larger than a key") from None
        raise KeyFormatError(f"cannot read the key {path}: not a regular file") from None
    except OSError as exc:
        raise KeyFormatError(f"cannot read the key {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise KeyFormatError(f"cannot read {path}: {exc}") from None


def public_key_of(key_file: Path) -> str:
    """The public key line of a key as `ssh-keygen -Y sign -f` takes it, without decrypting anything.

    A public key file (its private half in ssh-agent) is read as it is; for a private key file,
    `FILE.pub` beside it, else the public key an OpenSSH private key file carries in clear ahead
    of its (possibly encrypted) private part. KeyFormatError (one line) otherwise.
    """
    key_file = Path(key_file)
    text = _read_key_text(key_file)
    first = text.strip().splitlines()[0] if text.strip() else ""
    if first.split(None, 1)[:1] and first.split(None, 1)[0] in SUPPORTED_KEY_TYPES:
        _parse_key_line(first)
        return first.strip()
    sibling = key_file.with_name(key_file.name + ".pub")
    if sibling.is_file():
        line = _read_key_text(sibling, errors="strict").strip()
        _parse_key_line(line)
        return line
    if first.strip() != _PRIVATE_BEGIN or _PRIVATE_END not in text:
        raise KeyFormatError(f"{key_file} is neither an OpenSSH public key nor an OpenSSH private key "
                             f"(and there is no {sibling.name} beside it)")
    body = text.split(_PRIVATE_BEGIN, 1)[1].split(_PRIVATE_END, 1)[0]
    try:
        r = _Reader(binascii.a2b_base64("".join(body.split()), strict_mode=True))
        if r.take(15) != b"openssh-key-v1\x00":
            raise _Short("no openssh-key-v1 magic")
        r.string(), r.string(), r.string()  # cipher, kdf, kdf options: the private part's, not needed
        if r.u32() < 1:
            raise _Short("no key in the file")
        blob = r.string()
        key = _parse_key_blob(blob)
    except (binascii.Error, _Short, _Unsupported) as exc:
        raise KeyFormatError(f"{key_file}: not a readable OpenSSH private key ({exc})") from None
    return f"{key.key_type} {base64.b64encode(blob).decode()}"


def ed25519_public(public_key_line: str) -> bytes:
    """The 32-byte Ed25519 public key of an `ssh-ed25519` key line; NotEd25519 for any other type
    (a security key's `sk-ssh-ed25519` signs a different message, so it is not one either)."""
    key = _parse_key_line(public_key_line)
    if key.key_type != "ssh-ed25519":
        raise NotEd25519(f"a {key.key_type} key makes no plain Ed25519 signature")
    r = _Reader(key.blob)
    r.string()
    return r.string()


__all__ = ["KEY_FILE_BOUND", "SK_ECDSA", "SK_ED25519", "SUPPORTED_KEY_TYPES", "KeyFormatError", "KeyGenerationError",
           "NotEd25519", "SigningError", "SshsigError", "ed25519_public", "fingerprint", "public_key_of"]
