"""SSH signatures against the real OpenSSH tools: ssh-keygen signs, and our verifier and
`ssh-keygen -Y verify` must reach the same verdict on every case of a corpus.

The SSHSIG and sk encodings in this file are written out independently of the module
(PROTOCOL.sshsig, PROTOCOL.u2f), so that a shared mistake cannot make the two agree.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from slotgen_ops.audit.sshkey import KeyFormatError, KeyGenerationError, SigningError, fingerprint
from slotgen_ops.audit.sshkeygen import generate_key, sign
from slotgen_ops.audit.sshsig import (
    BadSignature,
    Reason,
    Verified,
    allowed_signers,
    parse_signature,
    verify,
)

NS = "slotgen-audit"
MSG = b"3f0c5a1e9b7d2c4f6a8e0b1d3c5e7f9a1b3d5f7092846a8c0e2f4a6b8d0c2e4f6"


@pytest.fixture(autouse=True, scope="module")
def _no_ambient_agent():
    """No test sees the developer's own ssh-agent, unless it starts one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SSH_AUTH_SOCK", raising=False)
        yield


@dataclass(frozen=True)
class Key:
    path: Path
    line: str


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    d = tmp_path_factory.mktemp("keys")
    specs = {"ed25519": ("ed25519", None), "ecdsa256": ("ecdsa", 256), "ecdsa384": ("ecdsa", 384),
             "ecdsa521": ("ecdsa", 521), "rsa": ("rsa", 3072), "other": ("ed25519", None)}
    return {name: Key(d / name, generate_key(d / name, kt, f"{name}@test", bits=bits))
            for name, (kt, bits) in specs.items()}


# --- wire format, written out independently -------------------------------------------------------

def s(data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return struct.pack(">I", len(data)) + data


def mpint(n: int) -> bytes:
    return s(n.to_bytes((n.bit_length() + 8) // 8, "big") if n else b"")


def armor(blob: bytes) -> str:
    b64 = base64.b64encode(blob).decode()
    body = "\n".join(b64[i:i + 70] for i in range(0, len(b64), 70))
    return f"-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----\n"


def unarmor(armored: str) -> bytes:
    return base64.b64decode("".join(armored.strip().splitlines()[1:-1]))


def read_string(data: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack(">I", data[pos:pos + 4])
    return data[pos + 4:pos + 4 + n], pos + 4 + n


def envelope_fields(armored: str) -> dict[str, bytes | int]:
    blob = unarmor(armored)
    assert blob[:6] == b"SSHSIG"
    (version,) = struct.unpack(">I", blob[6:10])
    out: dict[str, bytes | int] = {"version": version}
    pos = 10
    for name in ("key", "namespace", "reserved", "hashalg", "sig"):
        out[name], pos = read_string(blob, pos)
    assert pos == len(blob)
    return out


def envelope(key: bytes, namespace: str, hashalg: str, sig: bytes, *, reserved: bytes = b"",
             version: int = 1, trailing: bytes = b"") -> str:
    return armor(b"SSHSIG" + struct.pack(">I", version) + s(key) + s(namespace) + s(reserved)
                 + s(hashalg) + s(sig) + trailing)


def rebuild(armored: str, **changes: bytes | int | str) -> str:
    f = {**envelope_fields(armored), **changes}
    ns = f["namespace"].decode() if isinstance(f["namespace"], bytes) else f["namespace"]
    alg = f["hashalg"].decode() if isinstance(f["hashalg"], bytes) else f["hashalg"]
    return envelope(f["key"], ns, alg, f["sig"], reserved=f["reserved"], version=f["version"])


def signed_data(namespace: str, hashalg: str, message: bytes) -> bytes:
    return b"SSHSIG" + s(namespace) + s(b"") + s(hashalg) + s(hashlib.new(hashalg, message).digest())


def key_blob(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


def line_of(blob: bytes, comment: str = "") -> str:
    key_type, _ = read_string(blob, 0)
    return f"{key_type.decode()} {base64.b64encode(blob).decode()} {comment}".strip()


# --- sk keys, made in software (PROTOCOL.u2f) ------------------------------------------------------

def sk_ed25519_sign(message: bytes, namespace: str, flags: int, counter: int = 7,
                    application: str = "ssh:") -> tuple[str, str]:
    """(public key line, armored signature) of a hand-made sk-ssh-ed25519 signature."""
    priv = Ed25519PrivateKey.generate()
    pk = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    blob = s("sk-ssh-ed25519@openssh.com") + s(pk) + s(application)
    data = signed_data(namespace, "sha512", message)
    to_sign = (hashlib.sha256(application.encode()).digest() + bytes([flags]) + struct.pack(">I", counter)
               + hashlib.sha256(data).digest())
    sig = s("sk-ssh-ed25519@openssh.com") + s(priv.sign(to_sign)) + bytes([flags]) + struct.pack(">I", counter)
    return line_of(blob, "sk@test"), envelope(blob, namespace, "sha512", sig)


def sk_ecdsa_sign(message: bytes, namespace: str, flags: int, counter: int = 7,
                  application: str = "ssh:") -> tuple[str, str]:
    priv = ec.generate_private_key(ec.SECP256R1())
    point = priv.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    kt = "sk-ecdsa-sha2-nistp256@openssh.com"
    blob = s(kt) + s("nistp256") + s(point) + s(application)
    data = signed_data(namespace, "sha256", message)
    to_sign = (hashlib.sha256(application.encode()).digest() + bytes([flags]) + struct.pack(">I", counter)
               + hashlib.sha256(data).digest())
    r, ss = decode_dss_signature(priv.sign(to_sign, ec.ECDSA(hashes.SHA256())))
    sig = s(kt) + s(mpint(r) + mpint(ss)) + bytes([flags]) + struct.pack(">I", counter)
    return line_of(blob, "sk@test"), envelope(blob, namespace, "sha256", sig)


# --- the two verifiers ------------------------------------------------------------------------------

def keygen_accepts(tmp: Path, message: bytes, armored: str, namespace: str, allowed: list[str]) -> bool:
    (tmp / "allowed_signers").write_text(allowed_signers([("operator", allowed)], namespace))
    (tmp / "message.sig").write_text(armored)
    done = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp / "allowed_signers"), "-I", "operator",
                           "-n", namespace, "-s", str(tmp / "message.sig")],
                          input=message, capture_output=True, timeout=30)
    return done.returncode == 0


def ours(message: bytes, armored: str, namespace: str, allowed: list[str]) -> Reason | None:
    """None when accepted, else the reason."""
    try:
        result = verify(message, armored, namespace, allowed)
    except BadSignature as exc:
        assert "\n" not in str(exc)
        return exc.reason
    assert isinstance(result, Verified)
    return None


def signed(keys: dict[str, Key], name: str, message: bytes = MSG, namespace: str = NS,
           hashalg: str = "sha512") -> str:
    return sign(message, keys[name].path, namespace, hash_algorithm=hashalg)


def flip_last_sig_byte(armored: str) -> str:
    f = envelope_fields(armored)
    sig = bytearray(f["sig"])  # type: ignore[arg-type]
    sig[-1] ^= 0x01
    return rebuild(armored, sig=bytes(sig))


def relabel_sig_type(armored: str, new_type: str) -> str:
    sig = envelope_fields(armored)["sig"]
    _, pos = read_string(sig, 0)  # type: ignore[arg-type]
    return rebuild(armored, sig=s(new_type) + sig[pos:])  # type: ignore[index]


Case = tuple[bytes, str, str, list[str]]  # message, armored, namespace, allowed key lines


def case(name: str, **kw: object) -> Callable[[dict[str, Key]], Case]:
    def build(keys: dict[str, Key]) -> Case:
        return MSG, signed(keys, name, **kw), NS, [keys[name].line]  # type: ignore[arg-type]
    return build


def mutated(name: str, change: Callable[[str], str], **kw: object) -> Callable[[dict[str, Key]], Case]:
    def build(keys: dict[str, Key]) -> Case:
        return MSG, change(signed(keys, name, **kw)), NS, [keys[name].line]  # type: ignore[arg-type]
    return build


def sk_case(maker: Callable[..., tuple[str, str]], flags: int, change: Callable[[str], str] = lambda a: a):
    def build(keys: dict[str, Key]) -> Case:
        line, armored = maker(MSG, NS, flags)
        return MSG, change(armored), NS, [keys["ed25519"].line, line]
    return build


def wrong_namespace(keys: dict[str, Key]) -> Case:
    return MSG, signed(keys, "ed25519", namespace="slotgen-checkpoint"), NS, [keys["ed25519"].line]


def wrong_key(keys: dict[str, Key]) -> Case:
    return MSG, signed(keys, "other"), NS, [keys["ed25519"].line, keys["rsa"].line]


def other_message(name: str) -> Callable[[dict[str, Key]], Case]:
    def build(keys: dict[str, Key]) -> Case:
        return MSG + b"!", signed(keys, name), NS, [keys[name].line]
    return build


def claimed_key(keys: dict[str, Key]) -> Case:
    """The envelope names an allowed key, but the signature is by another."""
    forged = rebuild(signed(keys, "other"), key=key_blob(keys["ed25519"].line))
    return MSG, forged, NS, [keys["ed25519"].line]


def truncate_footer(a: str) -> str:
    return "\n".join(a.strip().splitlines()[:-1]) + "\n"


def truncate_body(a: str) -> str:
    lines = a.strip().splitlines()
    return "\n".join(lines[:2] + lines[-1:]) + "\n"


def with_version(version: int) -> Callable[[str], str]:
    return lambda a: rebuild(a, version=version)


def with_counter(a: str) -> str:
    sig = bytearray(envelope_fields(a)["sig"])  # type: ignore[arg-type]
    sig[-1] ^= 0x01  # the counter's last byte: the signature no longer covers it
    return rebuild(a, sig=bytes(sig))


CORPUS: list[tuple[str, Callable[[dict[str, Key]], Case], Reason | None]] = [
    ("ed25519", case("ed25519"), None),
    ("ed25519-sha256", case("ed25519", hashalg="sha256"), None),
    ("ecdsa-p256", case("ecdsa256"), None),
    ("ecdsa-p384-sha256", case("ecdsa384", hashalg="sha256"), None),
    ("ecdsa-p521", case("ecdsa521"), None),
    ("rsa-3072", case("rsa"), None),
    ("rsa-3072-sha256", case("rsa", hashalg="sha256"), None),
    ("empty-message", lambda k: (b"", signed(k, "ed25519", b""), NS, [k["ed25519"].line]), None),
    ("wrong-namespace", wrong_namespace, Reason.NAMESPACE),
    ("wrong-key", wrong_key, Reason.KEY_NOT_ALLOWED),
    ("claims-an-allowed-key", claimed_key, Reason.INVALID),
    ("truncated-armor-footer", mutated("ed25519", truncate_footer), Reason.MALFORMED),
    ("truncated-armor-body", mutated("rsa", truncate_body), Reason.MALFORMED),
    ("trailing-data", mutated("ed25519", lambda a: armor(unarmor(a) + b"\x00")), Reason.MALFORMED),
    ("flipped-byte-ed25519", mutated("ed25519", flip_last_sig_byte), Reason.INVALID),
    ("flipped-byte-ecdsa-p256", mutated("ecdsa256", flip_last_sig_byte), Reason.INVALID),
    ("flipped-byte-ecdsa-p521", mutated("ecdsa521", flip_last_sig_byte), Reason.INVALID),
    ("flipped-byte-rsa", mutated("rsa", flip_last_sig_byte), Reason.INVALID),
    ("other-message-ed25519", other_message("ed25519"), Reason.INVALID),
    ("other-message-ecdsa-p384", other_message("ecdsa384"), Reason.INVALID),
    ("other-message-rsa", other_message("rsa"), Reason.INVALID),
    ("hash-relabelled-sha256", mutated("ed25519", lambda a: rebuild(a, hashalg="sha256")), Reason.INVALID),
    ("hash-sha384", mutated("ed25519", lambda a: rebuild(a, hashalg="sha384")), Reason.HASH_ALGORITHM),
    ("namespace-relabelled", mutated("ed25519", lambda a: rebuild(a, namespace="other"), namespace=NS),
     Reason.NAMESPACE),
    ("rsa-relabelled-sha2-256", mutated("rsa", lambda a: relabel_sig_type(a, "rsa-sha2-256")), Reason.INVALID),
    ("rsa-sha1-refused", mutated("rsa", lambda a: relabel_sig_type(a, "ssh-rsa")), Reason.UNSUPPORTED),
    ("sig-type-mismatch", mutated("ed25519", lambda a: relabel_sig_type(a, "ecdsa-sha2-nistp256")),
     Reason.MALFORMED),
    ("version-2", mutated("ed25519", with_version(2)), Reason.UNSUPPORTED),
    # OpenSSH's sshsig.c ignores `reserved` and signs it empty; so do we.
    ("reserved-ignored", mutated("ed25519", lambda a: rebuild(a, reserved=b"tag")), None),
    ("sk-ed25519", sk_case(sk_ed25519_sign, 0x01), None),
    ("sk-ed25519-presence-and-verified", sk_case(sk_ed25519_sign, 0x05), None),
    ("sk-ed25519-counter-changed", sk_case(sk_ed25519_sign, 0x01, with_counter), Reason.INVALID),
    ("sk-ecdsa-p256", sk_case(sk_ecdsa_sign, 0x01), None),
    ("sk-ecdsa-p256-counter-changed", sk_case(sk_ecdsa_sign, 0x01, with_counter), Reason.INVALID),
]


@pytest.mark.parametrize(("build", "expected"), [(b, e) for _, b, e in CORPUS], ids=[n for n, _, _ in CORPUS])
def test_we_and_ssh_keygen_agree(keys: dict[str, Key], tmp_path: Path, build, expected: Reason | None) -> None:
    message, armored, namespace, allowed = build(keys)
    our_reason = ours(message, armored, namespace, allowed)
    theirs = keygen_accepts(tmp_path, message, armored, namespace, allowed)
    assert our_reason == expected
    assert theirs == (expected is None)


# Where we are deliberately stricter than `ssh-keygen -Y verify` (OpenSSH 9.2 accepts all of these):
# an sk signature without the user-presence flag (only sshd enforces it, per authorized_keys),
# an envelope of version 0 (sshsig.c only refuses versions above 1), text after the END line.
STRICTER: list[tuple[str, Callable[[dict[str, Key]], Case], Reason]] = [
    ("sk-ed25519-no-presence", sk_case(sk_ed25519_sign, 0x00), Reason.INVALID),
    ("sk-ed25519-verified-without-presence", sk_case(sk_ed25519_sign, 0x04), Reason.INVALID),
    ("sk-ecdsa-p256-no-presence", sk_case(sk_ecdsa_sign, 0x00), Reason.INVALID),
    ("version-0", mutated("ed25519", with_version(0)), Reason.UNSUPPORTED),
    ("text-after-footer", mutated("ed25519", lambda a: a + "trailing text\n"), Reason.MALFORMED),
]


@pytest.mark.parametrize(("build", "expected"), [(b, e) for _, b, e in STRICTER], ids=[n for n, _, _ in STRICTER])
def test_stricter_than_ssh_keygen(keys: dict[str, Key], build, expected: Reason) -> None:
    assert ours(*build(keys)) == expected


# --- sign and verify --------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "key_type"), [
    ("ed25519", "ssh-ed25519"), ("ecdsa256", "ecdsa-sha2-nistp256"), ("ecdsa384", "ecdsa-sha2-nistp384"),
    ("ecdsa521", "ecdsa-sha2-nistp521"), ("rsa", "ssh-rsa"),
])
def test_sign_then_verify(keys: dict[str, Key], name: str, key_type: str) -> None:
    armored = sign(MSG, keys[name].path, NS)
    assert armored.startswith("-----BEGIN SSH SIGNATURE-----\n")
    assert armored.endswith("-----END SSH SIGNATURE-----\n")
    result = verify(MSG, armored, NS, [keys["other"].line, keys[name].line])
    assert result == Verified(fingerprint=fingerprint(keys[name].line), key_type=key_type)
    sig = parse_signature(armored)
    assert (sig.namespace, sig.hash_algorithm, sig.reserved, sig.key_type) == (NS, "sha512", b"", key_type)
    assert sig.public_key == key_blob(keys[name].line)
    assert sig.signature_type == ("rsa-sha2-512" if name == "rsa" else key_type)


def test_sha256_is_asked_for_explicitly(keys: dict[str, Key]) -> None:
    assert parse_signature(sign(MSG, keys["ed25519"].path, NS, hash_algorithm="sha256")).hash_algorithm == "sha256"
    with pytest.raises(SigningError):
        sign(MSG, keys["ed25519"].path, NS, hash_algorithm="sha1")


@settings(max_examples=20, deadline=None)
@given(message=st.binary(max_size=300))
def test_round_trip(keys: dict[str, Key], message: bytes) -> None:
    armored = sign(message, keys["ed25519"].path, NS)
    assert verify(message, armored, NS, [keys["ed25519"].line]).key_type == "ssh-ed25519"
    with pytest.raises(BadSignature) as exc:
        verify(message + b"\n", armored, NS, [keys["ed25519"].line])
    assert exc.value.reason is Reason.INVALID


def test_fingerprint_is_what_ssh_keygen_prints(keys: dict[str, Key], tmp_path: Path) -> None:
    sk_line, _ = sk_ed25519_sign(MSG, NS, 1)
    sk_ecdsa_line, _ = sk_ecdsa_sign(MSG, NS, 1)
    lines = [k.line for k in keys.values()] + [sk_line, sk_ecdsa_line]
    for i, line in enumerate(lines):
        (tmp_path / f"{i}.pub").write_text(line + "\n")
        printed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / f"{i}.pub")],
                                 capture_output=True, text=True, check=True, timeout=30).stdout.split()[1]
        assert fingerprint(line) == printed


def test_allowed_signers_file(keys: dict[str, Key], tmp_path: Path) -> None:
    text = allowed_signers([("alice", [keys["ed25519"].line, keys["rsa"].line]), ("bob", [keys["other"].line]),
                            ("carol", [])], NS)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 3
    assert lines[0] == f'alice namespaces="{NS}" ' + " ".join(keys["ed25519"].line.split()[:2])
    assert lines[2].startswith(f'bob namespaces="{NS}" ssh-ed25519 ')
    (tmp_path / "allowed").write_text(text)
    sig = tmp_path / "m.sig"
    sig.write_text(sign(MSG, keys["other"].path, NS))
    found = subprocess.run(["ssh-keygen", "-Y", "find-principals", "-f", str(tmp_path / "allowed"), "-s", str(sig),
                            "-n", NS], capture_output=True, text=True, timeout=30)
    assert found.stdout.split() == ["bob"]
    as_alice = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "alice",
                               "-n", NS, "-s", str(sig)], input=MSG, capture_output=True, timeout=30)
    assert as_alice.returncode != 0


@pytest.mark.parametrize("principal", ["", "a b", "a,b", "a*", "!a", '"a"', "#a", "a\tb"])
def test_allowed_signers_refuses_principals_it_cannot_write(keys: dict[str, Key], principal: str) -> None:
    with pytest.raises(ValueError):
        allowed_signers([(principal, [keys["ed25519"].line])], NS)


def test_allowed_signers_refuses_a_bad_namespace(keys: dict[str, Key]) -> None:
    with pytest.raises(ValueError):
        allowed_signers([("alice", [keys["ed25519"].line])], 'a"b')


# --- parsing ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("armored", [
    "",
    "not a signature",
    "-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n",
    "-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----\n",
    armor(b"SSHSIX" + struct.pack(">I", 1)),
    armor(b"SSHSIG" + struct.pack(">I", 1) + struct.pack(">I", 1000) + b"short"),
    armor(b"SSHSIG" + struct.pack(">I", 1) + s(s("ssh-ed25519") + s(b"\x00" * 31)) + s(NS) + s(b"") + s("sha512")
          + s(s("ssh-ed25519") + s(b"\x00" * 64))),
    armor(b"SSHSIG" + struct.pack(">I", 1) + s(s("ssh-ed25519") + s(b"\x00" * 32)) + s("a\x00b") + s(b"")
          + s("sha512") + s(s("ssh-ed25519") + s(b"\x00" * 64))),
    armor(b"SSHSIG" + struct.pack(">I", 1) + s(s("ssh-ed25519") + s(b"\x00" * 32)) + s(NS) + s(b"") + s("sha512")
          + s(s("ssh-ed25519") + s(b"\x00" * 63))),
    armor(b"SSHSIG" + struct.pack(">I", 1) + s(s("ecdsa-sha2-nistp256") + s("nistp256") + s(b"\x04" + b"\x01" * 64))
          + s(NS) + s(b"") + s("sha512") + s(s("ecdsa-sha2-nistp256") + s(mpint(1) + mpint(1))))
])
def test_malformed_signatures(armored: str) -> None:
    with pytest.raises(BadSignature) as exc:
        parse_signature(armored)
    assert exc.value.reason is Reason.MALFORMED
    assert "\n" not in str(exc.value)


def test_unsupported_key_type() -> None:
    armored = armor(b"SSHSIG" + struct.pack(">I", 1) + s(s("ssh-dss") + mpint(5)) + s(NS) + s(b"") + s("sha512")
                    + s(s("ssh-dss") + s(b"\x00" * 40)))
    with pytest.raises(BadSignature) as exc:
        parse_signature(armored)
    assert exc.value.reason is Reason.UNSUPPORTED


def test_parse_tolerates_surrounding_whitespace_and_crlf(keys: dict[str, Key]) -> None:
    armored = sign(MSG, keys["ed25519"].path, NS)
    assert verify(MSG, "\n  " + armored.replace("\n", "\r\n") + "\n\n", NS, [keys["ed25519"].line])


def test_checks_run_in_order(keys: dict[str, Key]) -> None:
    """Namespace, then hash algorithm, then key, then the signature itself."""
    other = signed(keys, "other")
    allowed = [keys["ed25519"].line]
    for armored, message, expected in (
        (rebuild(other, namespace="elsewhere", hashalg="md5"), b"x", Reason.NAMESPACE),
        (rebuild(other, hashalg="md5"), b"x", Reason.HASH_ALGORITHM),
        (other, b"x", Reason.KEY_NOT_ALLOWED),
        (signed(keys, "ed25519"), b"x", Reason.INVALID),
    ):
        with pytest.raises(BadSignature) as exc:
            verify(message, armored, NS, allowed)
        assert exc.value.reason is expected


@pytest.mark.parametrize("line", [
    "", "ssh-ed25519", "ssh-ed25519 not-base64!", "ssh-dss AAAAB3NzaC1kc3M=",
    "ecdsa-sha2-nistp256 " + base64.b64encode(s("ssh-ed25519") + s(b"\x00" * 32)).decode(),
])
def test_bad_allowed_key_lines(keys: dict[str, Key], line: str) -> None:
    armored = sign(MSG, keys["ed25519"].path, NS)
    with pytest.raises(KeyFormatError):
        verify(MSG, armored, NS, [keys["ed25519"].line, line])
    with pytest.raises(ValueError):
        fingerprint(line)


def test_small_rsa_key_refused() -> None:
    n = (1 << 1023) + 1  # 1024 bits is the least OpenSSH takes; 1023 is refused
    with pytest.raises(KeyFormatError):
        fingerprint(line_of(s("ssh-rsa") + mpint(65537) + mpint(n >> 1)))


# --- ssh-keygen as the signer -----------------------------------------------------------------------

def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(SigningError) as exc:
        sign(MSG, tmp_path / "nope", NS)
    assert "no such key file" in str(exc.value) and "\n" not in str(exc.value)


def test_passphrase_key_without_agent_fails_fast(tmp_path: Path) -> None:
    key = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-t", "ed25519", "-N", "pw", "-f", str(key), "-q"], check=True, timeout=30,
                   stdin=subprocess.DEVNULL)
    for message in (MSG, b"pw\n" + MSG):  # bare ssh-keygen would take the message's first line as the passphrase
        start = time.monotonic()
        with pytest.raises(SigningError) as exc:
            sign(message, key, NS)
        assert time.monotonic() - start < 5
        assert "\n" not in str(exc.value) and "passphrase" in str(exc.value)


def test_ssh_keygen_missing(keys: dict[str, Key], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SigningError) as exc:
        sign(MSG, keys["ed25519"].path, NS)
    assert "ssh-keygen was not found" in str(exc.value)
    with pytest.raises(KeyGenerationError):
        generate_key(tmp_path / "k")


def test_a_hanging_ssh_keygen_times_out(keys: dict[str, Key], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ssh-keygen"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    start = time.monotonic()
    with pytest.raises(SigningError) as exc:
        sign(MSG, keys["ed25519"].path, NS, timeout=0.5)
    assert time.monotonic() - start < 5
    assert "no answer" in str(exc.value)


def test_generate_key(tmp_path: Path) -> None:
    line = generate_key(tmp_path / "demo", comment="alice (rehearsal key)")
    assert line.startswith("ssh-ed25519 ") and line.endswith(" alice (rehearsal key)")
    assert (tmp_path / "demo").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "demo.pub").read_text().strip() == line
    with pytest.raises(KeyGenerationError, match="already exists"):
        generate_key(tmp_path / "demo")
    with pytest.raises(KeyGenerationError):
        generate_key(tmp_path / "dsa", "dsa")
    with pytest.raises(KeyGenerationError):
        generate_key(tmp_path / "no-such-dir" / "k")


# --- ssh-agent --------------------------------------------------------------------------------------

def ssh_add(sock: str, key: Path, askpass: Path | None = None) -> None:
    env = {**os.environ, "SSH_AUTH_SOCK": sock}
    if askpass is not None:
        env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force")
    subprocess.run(["ssh-add", "-q", str(key)], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                   check=True, timeout=30, start_new_session=True)


def test_sign_through_the_agent(agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "agent-key"
    line = generate_key(key, comment="in the agent")
    ssh_add(agent, key)
    key.unlink()  # only the agent holds the private half now
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    armored = sign(MSG, key.with_name("agent-key.pub"), NS)
    assert verify(MSG, armored, NS, [line]).fingerprint == fingerprint(line)
    assert keygen_accepts(tmp_path, MSG, armored, NS, [line])


def test_passphrase_key_through_the_agent(agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-t", "ecdsa", "-b", "256", "-N", "pw", "-f", str(key), "-q"], check=True,
                   timeout=30, stdin=subprocess.DEVNULL)
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho pw\n")
    askpass.chmod(0o755)
    ssh_add(agent, key, askpass)
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    armored = sign(MSG, key, NS)  # the private key file, still encrypted: the agent signs
    assert verify(MSG, armored, NS, [(tmp_path / "locked.pub").read_text()]).key_type == "ecdsa-sha2-nistp256"


def test_agent_without_the_key(agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "absent"
    generate_key(key)
    key.unlink()
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    with pytest.raises(SigningError) as exc:
        sign(MSG, key.with_name("absent.pub"), NS)
    assert "\n" not in str(exc.value) and "absent.pub" in str(exc.value)
