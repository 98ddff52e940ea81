"""The locked bucket function (SPEC section 1).

bucket(jobId) = uint64_big_endian(first 8 bytes of SHA-256(UTF-8 bytes of jobId)) mod 100

Any runtime in any language must compute the same; `schemas/bucket-vectors.json`
publishes pairs to check against. Because a job is included when
bucket < percent, raising the percent never removes an included job.
"""

from __future__ import annotations

from hashlib import sha256

_from_bytes = int.from_bytes


def bucket(job_id: str) -> int:
    """The job's rollout bucket, 0..99."""
    return _from_bytes(sha256(job_id.encode("utf-8")).digest()[:8], "big") % 100
