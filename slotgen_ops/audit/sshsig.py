"""SSH signatures (OpenSSH SSHSIG): signing through ssh-keygen, verifying in-process.

SPEC section 7: an operator's key is a private key file, or a public key
file whose private half is in ssh-agent, exactly as `ssh-keygen -Y sign -f`
takes it (so agent and hardware keys work): `sign` runs the real ssh-keygen
and never reads key material itself. SPEC section 9: checkpoints carry the
same kind of signature. SPEC section 14: a checkpoint also carries a plain
Ed25519 signature (a C2SP signed-note line), which ssh-keygen cannot make:
`sign_ed25519` asks ssh-agent for it, as ssh-keygen would use the agent, and
only when the agent does not hold the key reads an unencrypted private key
file in-process. `verify` checks a signature against OpenSSH public
key lines without a subprocess, and agrees with `ssh-keygen -Y verify` given
the file `allowed_signers` writes (tests/audit/test_sshsig.py holds the two
to the same verdict).

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
import functools
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `cryptography` is imported when a signature is checked or a non-Ed25519 key is parsed:
    # reading a roster of Ed25519 keys (every `status`) needs only their bytes and fingerprints.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAGIC = b"SSHSIG"
VERSION = 1
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
HASH_ALGORITHMS = ("sha256", "sha512")

#: key type -> (curve name in the key, curve class name, hash name); the objects are made when needed.
_ECDSA_CURVES: dict[str, tuple[str, str, str]] = {
    "ecdsa-sha2-nistp256": ("nistp256", "SECP256R1", "SHA256"),
    "ecdsa-sha2-nistp384": ("nistp384", "SECP384R1", "SHA384"),
    "ecdsa-sha2-nistp521": ("nistp521", "SECP521R1", "SHA512"),
}
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
SUPPORTED_KEY_TYPES = ("ssh-ed25519", *_ECDSA_CURVES, "ssh-rsa", SK_ED25519, SK_ECDSA)
_RSA_SIGNATURES = {"rsa-sha2-256": "SHA256", "rsa-sha2-512": "SHA512"}


def _hash(name: str) -> hashes.HashAlgorithm:
    from cryptography.hazmat.primitives import hashes

    return getattr(hashes, name)()
_RSA_MIN_BITS = 1024  # OpenSSH's SSH_RSA_MINIMUM_MODULUS_SIZE
_MAX_MPINT = 16384 // 8 + 1  # OpenSSH's SSHBUF_MAX_BIGNUM, plus a sign byte
SK_USER_PRESENT = 0x01
KEYGEN_TYPES = ("ed25519", "ecdsa", "rsa")


class SshsigError(Exception):
    """Base of this module's errors; str() is always one line."""


class SigningError(SshsigError):
    """ssh-keygen could not make the signature (no key, wrong passphrase, agent without the key, ...)."""


class KeyGenerationError(SshsigError):
    """ssh-keygen could not write a new key pair."""


class KeyFormatError(SshsigError, ValueError):
    """A public key line is malformed or of a type this module cannot verify."""


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


@functools.lru_cache(maxsize=256)
def _ed25519_key(blob: bytes) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    r = _Reader(blob)
    r.string()  # the key type, checked when the blob was parsed
    return Ed25519PublicKey.from_public_bytes(r.string())


def _invalid_signature() -> type[Exception]:
    from cryptography.exceptions import InvalidSignature

    return InvalidSignature


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


# --- ssh-keygen ------------------------------------------------------------------------------------

def _one_line(stderr: bytes) -> str:
    lines = [" ".join(line.split()) for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    return "; ".join(lines) or "no message"


def _run(argv: list[str], timeout: float,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run without a terminal (own session, stdin /dev/null); on timeout kill its process group."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _ssh_keygen(error: type[SshsigError]) -> str:
    path = shutil.which("ssh-keygen")
    if path is None:
        raise error("ssh-keygen was not found on PATH (install OpenSSH 8.2 or later)")
    return path


def _no_prompt_env() -> dict[str, str]:
    """The environment, with any passphrase or PIN prompt answered at once by a failing askpass.

    Without a terminal, ssh-keygen would otherwise read a passphrase from stdin.
    """
    env = dict(os.environ)
    env["SSH_ASKPASS"] = shutil.which("false") or "/bin/false"
    env["SSH_ASKPASS_REQUIRE"] = "force"
    return env


def sign(message: bytes, key_file: Path, namespace: str, *, hash_algorithm: str = "sha512",
         timeout: float = 30.0) -> str:
    """The armored SSH signature over `message` by `ssh-keygen -Y sign -f key_file -n namespace`.

    key_file is a private key file, or a public key file whose private half is in ssh-agent
    (SSH_AUTH_SOCK); this process never reads key material. A passphrase is never prompted
    for: a key that needs one must be in the agent. Any failure raises SigningError (one line).
    The timeout covers a hardware key waiting for a touch.
    """
    return sign_many([message], key_file, namespace, hash_algorithm=hash_algorithm, timeout=timeout)[0]


def sign_many(messages: list[bytes], key_file: Path, namespace: str, *, hash_algorithm: str = "sha512",
              timeout: float = 30.0) -> list[str]:
    """`sign` for several messages with one ssh-keygen process (one passphrase, agent or touch round)."""
    if not namespace or "\x00" in namespace:
        raise SigningError("the signature namespace must be a non-empty string")
    if hash_algorithm not in HASH_ALGORITHMS:
        raise SigningError(f"hash algorithm {hash_algorithm!r} (sha256 or sha512 only)")
    if not messages:
        return []
    key_file = Path(key_file)
    if not key_file.is_file():
        raise SigningError(f"cannot sign with {key_file}: no such key file")
    keygen = _ssh_keygen(SigningError)
    with tempfile.TemporaryDirectory(prefix="slotgen-sign-") as tmp:
        files = []
        for i, message in enumerate(messages):
            data = Path(tmp) / f"m{i}"
            data.write_bytes(message)
            files.append(data)
        argv = [keygen, "-Y", "sign", "-f", str(key_file), "-n", namespace, "-O", f"hashalg={hash_algorithm}",
                *map(str, files)]
        try:
            done = _run(argv, timeout, _no_prompt_env())
        except subprocess.TimeoutExpired:
            raise SigningError(f"cannot sign with {key_file}: ssh-keygen gave no answer in {timeout:g} s "
                               "(a hardware key waiting for a touch?)") from None
        except OSError as exc:
            raise SigningError(f"cannot run ssh-keygen: {exc}") from None
        sig_files = [f.with_name(f.name + ".sig") for f in files]
        if done.returncode != 0 or not all(f.is_file() for f in sig_files):
            raise SigningError(f"cannot sign with {key_file}: {_one_line(done.stderr)}")
        out = [f.read_text(encoding="ascii") for f in sig_files]
    for armored in out:
        try:
            parse_signature(armored)
        except BadSignature as exc:  # pragma: no cover - ssh-keygen wrote something unexpected
            raise SigningError(f"ssh-keygen wrote an unreadable signature: {exc.detail}") from None
    return out


_PRIVATE_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_PRIVATE_END = "-----END OPENSSH PRIVATE KEY-----"


#: A key file is a few KiB at most; an OpenSSH private key with a long comment stays far below this.
KEY_FILE_BOUND = 1 << 20


def _read_key_text(path: Path, errors: str = "replace") -> str:
    """A key file's text, read without blocking and with a bound (SPEC section 14): a FIFO, a device such as
    /dev/zero, a directory or a file over KEY_FILE_BOUND is KeyFormatError, in one line, never a hang."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyFormatError(f"cannot read the key {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFormatError(f"cannot read the key {path}: not a regular file")
        if st.st_size > KEY_FILE_BOUND:
            raise KeyFormatError(f"cannot read the key {path}: {st.st_size} bytes, far larger than a key")
        data = os.read(fd, KEY_FILE_BOUND + 1)
    except OSError as exc:
        raise KeyFormatError(f"cannot read the key {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
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


def generate_key(path: Path, key_type: str = "ed25519", comment: str = "", *, bits: int | None = None,
                 timeout: float = 60.0) -> str:
    """Write a new key pair without a passphrase (`path` mode 0600, `path`.pub) and return its public key line.

    key_type is what `ssh-keygen -t` takes: ed25519, ecdsa (bits 256, 384, 521) or rsa (bits >= 2048).
    An existing file is never overwritten.
    """
    path = Path(path)
    if key_type not in KEYGEN_TYPES:
        raise KeyGenerationError(f"key type {key_type!r} (one of {', '.join(KEYGEN_TYPES)})")
    for target in (path, path.with_name(path.name + ".pub")):
        if target.exists() or target.is_symlink():
            raise KeyGenerationError(f"{target} already exists; not overwriting it")
    if "\n" in comment or "\r" in comment:
        raise KeyGenerationError("a key comment is one line")
    argv = [_ssh_keygen(KeyGenerationError), "-t", key_type, "-N", "", "-f", str(path), "-C", comment, "-q"]
    if bits is not None:
        argv[3:3] = ["-b", str(bits)]
    try:
        done = _run(argv, timeout)
    except subprocess.TimeoutExpired:
        raise KeyGenerationError(f"ssh-keygen gave no answer in {timeout:g} s") from None
    except OSError as exc:
        raise KeyGenerationError(f"cannot run ssh-keygen: {exc}") from None
    pub = path.with_name(path.name + ".pub")
    if done.returncode != 0 or not pub.is_file():
        raise KeyGenerationError(f"cannot generate a {key_type} key at {path}: {_one_line(done.stderr)}")
    os.chmod(path, 0o600)
    line = pub.read_text(encoding="utf-8").strip()
    _parse_key_line(line)
    return line


# --- plain Ed25519 signatures (C2SP signed notes) --------------------------------------------------

class NotEd25519(SshsigError):
    """The key is not a plain Ed25519 key, so it cannot make a plain Ed25519 signature."""


_AGENTC_SIGN_REQUEST = 13
_AGENT_SIGN_RESPONSE = 14
_AGENT_FAILURE = 5
_MAX_AGENT_REPLY = 256 * 1024
_MAX_KEY_FILE = 64 * 1024


def ed25519_public(public_key_line: str) -> bytes:
    """The 32-byte Ed25519 public key of an `ssh-ed25519` key line; NotEd25519 for any other type
    (a security key's `sk-ssh-ed25519` signs a different message, so it is not one either)."""
    key = _parse_key_line(public_key_line)
    if key.key_type != "ssh-ed25519":
        raise NotEd25519(f"a {key.key_type} key makes no plain Ed25519 signature")
    r = _Reader(key.blob)
    r.string()
    return r.string()


def _agent_sign(blob: bytes, message: bytes, timeout: float) -> bytes | None:
    """The agent's signature blob over `message` by the key `blob`, or None if there is no agent or it
    does not hold the key (SSH agent protocol, draft-ietf-sshm-ssh-agent: SSH_AGENTC_SIGN_REQUEST)."""
    import socket

    path = os.environ.get("SSH_AUTH_SOCK")
    if not path:
        return None
    request = bytes([_AGENTC_SIGN_REQUEST]) + _string(blob) + _string(message) + struct.pack(">I", 0)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:  # no agent there (a stale socket): as ssh-keygen, use the key file
            return None

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise SigningError("ssh-agent closed the connection without an answer")
                data += chunk
            return data

        try:
            sock.sendall(struct.pack(">I", len(request)) + request)
            length = struct.unpack(">I", read(4))[0]
            if not 0 < length <= _MAX_AGENT_REPLY:
                raise SigningError(f"ssh-agent answered with a message of {length} bytes")
            reply = read(length)
        except socket.timeout:
            raise SigningError(f"ssh-agent gave no answer in {timeout:g} s") from None
        except OSError as exc:
            raise SigningError(f"ssh-agent: {exc.strerror or exc}") from None
    if reply[0] == _AGENT_FAILURE:
        return None
    if reply[0] != _AGENT_SIGN_RESPONSE:
        raise SigningError(f"ssh-agent answered a sign request with message type {reply[0]}")
    try:
        r = _Reader(reply[1:])
        sig_blob = r.string()
        r.end("the agent's reply")
    except _Short as exc:
        raise SigningError(f"ssh-agent: {exc}") from None
    return sig_blob


def _read_key_file(key_file: Path) -> bytes:
    """A private key file's bytes: a regular file, read without blocking and within a bound."""
    import stat

    try:
        fd = os.open(key_file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SigningError(f"cannot read the key {key_file}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SigningError(f"the key {key_file} is not a regular file")
        data = os.read(fd, _MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE:
        raise SigningError(f"the key {key_file} is larger than {_MAX_KEY_FILE // 1024} KiB: not a key file")
    return data


def sign_ed25519(message: bytes, key_file: Path, *, timeout: float = 30.0) -> tuple[bytes, bytes]:
    """(32-byte public key, 64-byte Ed25519 signature over `message`) by the key `ssh-keygen -Y sign -f
    key_file` would use: from ssh-agent if it holds the key (as ssh-keygen, the agent first), else from the
    private key file itself, which must not need a passphrase (one never is prompted for).

    Unlike `sign`, this reads an unencrypted private key file in-process (with `cryptography`): a C2SP
    signed note carries a plain Ed25519 signature over its text, which ssh-keygen cannot make (it only
    signs SSHSIG envelopes). An ssh-agent sign request with an Ed25519 key and no flags returns exactly
    such a signature (RFC 8709 section 6). NotEd25519 for a key of another type; SigningError otherwise.
    Every signature made is checked against the public key before it is returned.
    """
    key_file = Path(key_file)
    try:
        line = public_key_of(key_file)
    except KeyFormatError as exc:
        raise SigningError(str(exc)) from None
    public = ed25519_public(line)
    blob = _parse_key_line(line).blob
    sig_blob = _agent_sign(blob, message, timeout)
    if sig_blob is not None:
        try:
            r = _Reader(sig_blob)
            sig_type, raw = r.string(), r.string()
            r.end("the agent's signature")
        except _Short as exc:
            raise SigningError(f"ssh-agent gave an unreadable signature: {exc}") from None
        if sig_type != b"ssh-ed25519" or len(raw) != 64:
            raise SigningError(f"ssh-agent gave a {sig_type.decode(errors='replace')} signature of {len(raw)} "
                               "bytes, not an Ed25519 one")
        signature = raw
    else:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        data = _read_key_file(key_file)
        if data.lstrip().startswith(b"ssh-ed25519 "):
            raise SigningError(f"{key_file} is a public key and ssh-agent does not hold its private half"
                               + ("" if os.environ.get("SSH_AUTH_SOCK") else " (SSH_AUTH_SOCK is not set)"))
        try:
            if _PRIVATE_BEGIN.encode() in data:
                private = serialization.load_ssh_private_key(data, password=None)
            else:
                private = serialization.load_pem_private_key(data, password=None)
        except TypeError:  # encrypted: only the agent may use it
            raise SigningError(f"{key_file} needs a passphrase: add it to ssh-agent (ssh-add {key_file})") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise SigningError(f"{key_file} is not a readable private key ({' '.join(str(exc).split())})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise NotEd25519(f"{key_file} is not an Ed25519 private key")
        if private.public_key().public_bytes_raw() != public:
            raise SigningError(f"{key_file} holds another private key than its public key says")
        signature = private.sign(message)
    try:
        _ed25519_key(blob).verify(signature, message)
    except _invalid_signature():
        raise SigningError("the Ed25519 signature made does not verify with its public key") from None
    return public, signature
