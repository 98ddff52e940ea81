"""The audit log as something that can be checked from outside (SPEC section 9).

Owns the pure pieces first: the RFC 6962 Merkle tree over the log's entries
(`merkle`). The log itself still lives in `slotgen_ops.ops.audit` for now.
"""
