"""The job, checked without I/O and without a schema engine.

The gating engine runs on every job, so the check is hand-written and fast;
`schemas/job.schema.json` is the published contract and the tests prove the
two agree on the shipped examples and on generated jobs. One thing only this
check can see: a jobId with no UTF-8 form (a lone surrogate) has no bucket, so
it is rejected here.
"""

from __future__ import annotations

from typing import Any

JOB_STRING_FIELDS: tuple[str, ...] = ("kind", "subject", "level", "board", "specVersion")
JOB_FIELDS: frozenset[str] = frozenset(("jobId", *JOB_STRING_FIELDS, "metadata", "payload"))


def job_problem(job: Any) -> str | None:
    """The first way `job` breaks the job schema, as `field: problem`, or None."""
    # Fast path for the common well-formed job; anything unusual takes the careful walk below.
    if type(job) is dict and len(job) <= 8:
        get = job.get
        job_id = get("jobId")
        if (type(job_id) is str and job_id and job_id.isascii() and type(get("kind")) is str
                and type(get("subject")) is str and type(get("level")) is str and type(get("board")) is str
                and type(get("specVersion")) is str):
            if len(job) == 6:
                return None
            metadata = get("metadata")
            payload = get("payload")
            if (job.keys() <= JOB_FIELDS
                    and (metadata is None and "metadata" not in job
                         or type(metadata) is dict and type(metadata.get("allowAI", False)) is bool)
                    and (payload is None and "payload" not in job or type(payload) is dict)):
                return None
    return _problem(job)


def _problem(job: Any) -> str | None:
    if type(job) is not dict:
        return f"(job): must be a JSON object, got {json_type(job)}"
    job_id = job.get("jobId")
    if job_id is None and "jobId" not in job:
        return "jobId: required field is missing"
    if type(job_id) is not str:
        return f"jobId: must be a string, got {json_type(job_id)}"
    if not job_id:
        return "jobId: must not be empty"
    if not job_id.isascii():
        try:
            job_id.encode("utf-8")
        except UnicodeEncodeError:
            return "jobId: is not valid Unicode text (lone surrogate)"
    for name in JOB_STRING_FIELDS:
        value = job.get(name)
        if type(value) is not str:
            if value is None and name not in job:
                return f"{name}: required field is missing"
            return f"{name}: must be a string, got {json_type(value)}"
    if len(job) > 6:
        for name in job:
            if name not in JOB_FIELDS:
                return f"{name}: unknown field (a job has jobId, kind, subject, level, board, specVersion, metadata, payload)"
        metadata = job.get("metadata")
        if metadata is not None or "metadata" in job:
            if type(metadata) is not dict:
                return f"metadata: must be an object, got {json_type(metadata)}"
            if "allowAI" in metadata and type(metadata["allowAI"]) is not bool:
                return f"metadata.allowAI: must be true or false, got {json_type(metadata['allowAI'])}"
        if "payload" in job and type(job["payload"]) is not dict:
            return f"payload: must be an object, got {json_type(job['payload'])}"
    return None


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
