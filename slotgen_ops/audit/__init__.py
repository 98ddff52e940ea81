"""The audit log and everything that proves it (SPEC sections 3, 7 and 9).

- `canonical`: the one serialisation entries are hashed over;
- `log`: the append-only, hash-chained log file (`AuditLog`);
- `review`: reading it back: chain verification, filters, exports;
- `sshsig`: SSH signatures (made by ssh-keygen, verified in-process);
- `merkle`: the log as an RFC 6962 Merkle tree;
- `checkpoint`: signed C2SP checkpoints and the proof a log extends one.

What an entry *means* (state, runbook, who may act) is `slotgen_ops.ops`'s.
"""
