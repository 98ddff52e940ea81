"""The one loader for shipped data: schemas, runbooks, allowlists, sample jobs.

In a checkout the data lives in the repo's top-level folders; an installed
wheel carries the same folders under `slotgen_ops/_data/`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent


@cache
def data_root() -> Path:
    """The folder holding `schemas/`, `runbooks/` and `allowlists/`."""
    installed = _PACKAGE / "_data"
    if (installed / "schemas").is_dir():
        return installed
    checkout = _PACKAGE.parent
    if (checkout / "schemas").is_dir():
        return checkout
    raise RuntimeError(f"slotgen data folders not found under {installed} or {checkout}")


def data_path(*parts: str) -> Path:
    """Path of a shipped data file, e.g. data_path("schemas", "job.schema.json")."""
    return data_root().joinpath(*parts)


@cache
def schema(name: str) -> dict[str, Any]:
    """A shipped JSON schema by short name: "job" -> schemas/job.schema.json."""
    with data_path("schemas", f"{name}.schema.json").open(encoding="utf-8") as fh:
        return json.load(fh)
