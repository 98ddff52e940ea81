"""The audit log as data and as a file: canonical form, hash chain, review and exports, the Merkle tree,
signed checkpoints, SSH signatures, the timeline and the HTML report. What an entry means is above it."""

from ..lazy import exports

_WHERE = {
    "AuditLog": "log",
    "BadSignature": "sshsig",
    "KeyFormatError": "sshkey",
    "VerifyReport": "review",
    "complete": "append",
    "entry_hash": "canonical",
    "fingerprint": "sshkey",
    "sign": "sshkeygen",
    "verify": "sshsig",
    "verify_lines": "review",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
