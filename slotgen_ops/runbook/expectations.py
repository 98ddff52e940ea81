"""The sample jobs' independent expectations: the path and code each must take, per state of the controls.

`runbooks/sample-expectations.json` (beside the sample jobs; `slotgen init`
copies it into the workspace) is written by `runbooks/gen_sample_expectations.py`,
a standard-library script that re-implements SPEC section 1 without importing
slotgen. Verification holds the runtime to it (check `expected-decisions`), so
the runtime is judged by a second implementation, not only by `decide()`, the
code it runs. A workspace without the file (made before it was shipped) uses the
packaged copy; it covers exactly the jobs and allowlist it was computed from.

Matching is by raw values only, never through the contract's parsing: a state
holds when each control it names has exactly that value (null: unset or empty)
and, when it names an allowlist, the file the path points to has its SHA-256.
A job is covered while its canonical JSON has the SHA-256 the file gives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import ALLOWLIST_VAR

EXPECTATIONS_FILE = "sample-expectations.json"
GENERATOR = "runbooks/gen_sample_expectations.py"


class ExpectationsUnreadable(Exception):
    """The expectations file cannot be read or is not one; the message says which and why."""


@dataclass(frozen=True)
class JobExpectation:
    job_id: str
    sha256: str
    bucket: int
    expected: dict[str, tuple[str, str | None]]  # state id -> (path, code)


@dataclass(frozen=True)
class Expectations:
    source: str                  # where it was read, as shown
    states: list[dict[str, Any]]
    jobs: dict[str, JobExpectation]

    def state_in_force(self, controls: Mapping[str, str | None], root: Path) -> tuple[str | None, str]:
        """(the id of the state the controls are in, or None; why not, when None)."""
        near = ""
        for state in self.states:
            wanted = state["controls"]
            if not all(_holds(controls.get(name), value) for name, value in wanted.items()
                       if not (name == ALLOWLIST_VAR and state.get("allowlistSha256"))):
                continue
            digest = state.get("allowlistSha256")
            if digest:
                path = controls.get(ALLOWLIST_VAR)
                found = _file_sha256(path, root) if path else None
                if found != digest:
                    near = (f"the allowlist {path or '(unset)'} is not the file the expectations were computed "
                            f"with (SHA-256 {digest[:12]}…)")
                    continue
            return state["id"], ""
        return None, near or "the controls in force match none of its states"


def _holds(value: str | None, wanted: str | None) -> bool:
    return value in (None, "") if wanted is None else value == wanted


def _file_sha256(path: str, root: Path) -> str | None:
    file = Path(path)
    if not file.is_absolute():
        file = root / file
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None


def job_sha256(job: Any) -> str:
    """SHA-256 of a job as canonical JSON (keys sorted, no whitespace, UTF-8, no ASCII escaping)."""
    text = json.dumps(job, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def expectations_path(sample_jobs: Path) -> Path:
    """Where the expectations of a sample file are looked for first: beside it."""
    return sample_jobs.parent / EXPECTATIONS_FILE


def load_expectations(sample_jobs: Path, root: Path | None = None) -> Expectations:
    """The expectations beside `sample_jobs`, else the packaged ones; ExpectationsUnreadable if not readable.
    Named relative to `root` (the workspace) when under it."""
    path = expectations_path(sample_jobs)
    try:
        label = str(path.relative_to(root)) if root is not None else str(path)
    except ValueError:
        label = str(path)
    if not path.exists():
        from ..data import data_path

        path = data_path("runbooks", EXPECTATIONS_FILE)
        label = f"{EXPECTATIONS_FILE} as shipped with slotgen"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ExpectationsUnreadable(f"{label}: cannot read it ({exc.__class__.__name__})") from None
    except ValueError as exc:
        raise ExpectationsUnreadable(f"{label}: not JSON ({getattr(exc, 'msg', exc)})") from None
    try:
        return _parse(doc, label)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExpectationsUnreadable(f"{label}: not an expectations file written by {GENERATOR} "
                                     f"({exc.__class__.__name__}: {exc})") from None


def _parse(doc: Any, label: str) -> Expectations:
    states = doc["states"]
    ids = []
    for state in states:
        if not isinstance(state["id"], str) or not isinstance(state["controls"], dict):
            raise ValueError("a state needs an id and controls")
        if not all(isinstance(v, str) or v is None for v in state["controls"].values()):
            raise ValueError(f"state {state['id']}: a control's value is a string or null")
        ids.append(state["id"])
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate state ids")
    jobs: dict[str, JobExpectation] = {}
    for row in doc["jobs"]:
        expected = {}
        for state_id in ids:
            path, code = row["expected"][state_id]
            if path not in ("stub", "openai") or not (code is None or isinstance(code, str)):
                raise ValueError(f"{row['jobId']}: {state_id}: not [path, code]")
            expected[state_id] = (path, code)
        if type(row["bucket"]) is not int or not isinstance(row["jobId"], str) or not isinstance(row["sha256"], str):
            raise ValueError("a job needs jobId, sha256 and bucket")
        jobs[row["jobId"]] = JobExpectation(row["jobId"], row["sha256"], row["bucket"], expected)
    return Expectations(label, list(states), jobs)
