"""Signing and key generation through the real ssh-keygen (SPEC section 7).

An operator's key is a private key file, or a public key file whose private half is in ssh-agent, exactly
as `ssh-keygen -Y sign -f` takes it (so agent and hardware keys work): `sign` runs ssh-keygen and never
reads key material itself; `generate_key` has it write a new key pair. ssh-keygen runs without a
terminal, is never left to prompt, and is killed with its process group on a timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .sshkey import KeyGenerationError, SigningError, SshsigError, _parse_key_line
from .sshsig import HASH_ALGORITHMS, BadSignature, parse_signature

KEYGEN_TYPES = ("ed25519", "ecdsa", "rsa")


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


__all__ = ["KEYGEN_TYPES", "generate_key", "sign", "sign_many"]
