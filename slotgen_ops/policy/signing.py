"""Signing audit entries with the acting operator's key (SPEC section 7), never under the lock.

An entry's signature is over its `hash`, and the hash covers its `seq`,
`prevHash` and time: what it is signed over is known only once the writer
holds the lock. Signing may wait on ssh-agent, a passphrase-less hardware key
or a touch, none of which may happen under the lock (SPEC section 6). So a
change is made in passes (`Environment.transact`): a pass under the lock
computes every entry it would record without writing any (`Unsealed`), the
lock is released, one `ssh-keygen -Y sign` signs all of them, and the next
pass records them if it computes the same entries, i.e. nothing moved
meanwhile and each entry keeps its time. If something moved, the new entries
are signed and the pass runs again; a change that keeps being overtaken is
refused (exit 3) rather than holding the lock while signing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit import sshkey, sshkeygen, sshsig
from ..errors import Refused

NAMESPACE = "slotgen-audit"
#: How many times a change is computed, signed and computed again before it gives up (exit 3).
MAX_PASSES = 8


@dataclass(frozen=True)
class Signer:
    """One operator's key as `ssh-keygen -Y sign -f` takes it, and the roster keys it must match."""

    operator_id: str
    key_file: Path
    allowed: tuple[str, ...]  # the operator's public key lines in the roster in force

    def sign(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """{hash: signature} for each entry hash, each checked in-process against the roster's keys."""
        try:
            armored = sshkeygen.sign_many([h.encode("ascii") for h in hashes], self.key_file, NAMESPACE)
        except sshkey.SigningError as exc:
            raise Refused(f"cannot sign as {self.operator_id}: {exc}") from None
        out = {}
        for digest, text in zip(hashes, armored):
            try:
                verified = sshsig.verify(digest.encode("ascii"), text, NAMESPACE, self.allowed)
            except sshsig.BadSignature as exc:
                raise Refused(f"the key {self.key_file} did not sign as one of {self.operator_id!r}'s keys in "
                              f"operators.yaml ({exc.detail}); nothing recorded") from None
            out[digest] = signature(verified.fingerprint, text)
        return out


def signature(fingerprint: str, armored: str) -> dict[str, Any]:
    """An entry's `signature` member (SPEC section 7)."""
    return {"namespace": NAMESPACE, "fingerprint": fingerprint, "sshsig": armored}


@dataclass
class Session:
    """What one change carries from pass to pass: the signatures made, and its entries' times."""

    signer: Signer | None
    signatures: dict[str, dict[str, Any]] = field(default_factory=dict)
    stamps: list[str] = field(default_factory=list)

    def sign(self, hashes: list[str]) -> None:
        if self.signer is None:  # pragma: no cover - an unsigned actor's entries never ask
            raise Refused("no signing key: pass --key FILE or set SLOTGEN_SIGNING_KEY")
        self.signatures.update(self.signer.sign([h for h in hashes if h not in self.signatures]))
