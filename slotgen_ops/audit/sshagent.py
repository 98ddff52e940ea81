"""Plain Ed25519 signatures (a C2SP signed-note line, SPEC section 14), which ssh-keygen cannot make.

`sign_ed25519` asks ssh-agent for one, as ssh-keygen would use the agent (SSH agent protocol,
SSH_AGENTC_SIGN_REQUEST), and only when the agent does not hold the key reads an unencrypted private key
file in-process, without blocking and within a bound. Every signature made is checked before it is returned.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from .sshkey import (
    _PRIVATE_BEGIN,
    KeyFormatError,
    NotEd25519,
    SigningError,
    _ed25519_key,
    _invalid_signature,
    _parse_key_line,
    _Reader,
    _Short,
    _string,
    ed25519_public,
    public_key_of,
)

_AGENTC_SIGN_REQUEST = 13
_AGENT_SIGN_RESPONSE = 14
_AGENT_FAILURE = 5
_MAX_AGENT_REPLY = 256 * 1024
_MAX_KEY_FILE = 64 * 1024


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


__all__ = ["sign_ed25519"]
