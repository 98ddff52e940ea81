"""Approved allowlists: files under the workspace's allowlists/ (SPEC section 5)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import BadInput, Refused
from ..runtime.allowlist_file import read_allowlist_strict

_APPROVED_RE = re.compile(r"^allowlists/[A-Za-z0-9][A-Za-z0-9._-]*\.json$")


def check_approved_allowlist(workspace, runbook, value: str) -> None:
    """Step 3 takes an approved file, enabled, within the minimal-cohort limit."""
    if not _APPROVED_RE.match(value):
        raise Refused(f"{value!r} is not an approved allowlist: give a file under the workspace's allowlists/, "
                      "relative to the workspace (e.g. allowlists/slot-generation-allowlist.v1.json)")
    path: Path = workspace.root / value
    if not path.is_file():
        raise BadInput(f"{path}: allowlist file not found")
    allowlist = read_allowlist_strict(path)
    if not allowlist.enabled:
        raise Refused(f"{value}: allowlist {allowlist.version} is disabled (enabled: false); step 3 enables a cohort")
    limit = runbook.minimalCohort
    if len(allowlist.rules) > limit.maxRules or allowlist.cohort_size > limit.maxCombinations:
        raise Refused(f"{value}: {len(allowlist.rules)} rule(s) admitting {allowlist.cohort_size} combination(s) is "
                      f"wider than the minimal cohort ({limit.maxRules} rule(s), {limit.maxCombinations} combination(s))")


def default_allowlist(workspace) -> str | None:
    """The approved allowlist `next` suggests: the only one, or the shipped v1 file."""
    folder: Path = workspace.allowlists_dir
    files = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
    if "slot-generation-allowlist.v1.json" in files:
        return "allowlists/slot-generation-allowlist.v1.json"
    return f"allowlists/{files[0]}" if len(files) == 1 else None
