"""The environment's policy files, pinned by their digests (SPEC section 8).

`slotgen.yaml`, `operators.yaml`, the runbook, every file under `allowlists/`
and `runbooks/` (sub-folders included), the sample jobs and
`environments/STATE-URL` (which database the environments live in: a redirect
is policy, SPEC section 14) decide what a change may do, so a change judged under one
policy must not run under another. Their SHA-256 digests are recorded in the
audit log at `init` and at each accepted policy change (`config accept`), with
the roster in force (so roles are checked against the accepted roster, never
against an edited file); every entry carries the digest of the policy in
force. Reading only; never prints.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import IntegrityFailure
from ..files.atomic import read_bounded
from .paths import STATE_MARKER
from .yamlfile import safe_load

MARKER_FILE = f"environments/{STATE_MARKER}"  # which database the environments live in (`state migrate`)
FIXED = ("slotgen.yaml", "operators.yaml", MARKER_FILE)
FOLDERS = ("allowlists", "runbooks")  # every file below them, at any depth
DIGEST_BOUND = 256 << 20  # a policy file larger than this is not read: its digest says "unreadable"


def policy_paths(root: Path) -> list[str]:
    """Workspace-relative paths of every policy file there is now (sorted)."""
    root = Path(root)
    found = {name for name in FIXED if os.path.lexists(root / name)}  # whatever is there: a FIFO is an edit too
    for folder in FOLDERS:
        found.update(_files_below(root, folder))
    for extra in _configured(root):
        if (root / extra).is_file():
            found.add(extra)
    return sorted(found)


def _files_below(root: Path, folder: str) -> set[str]:
    """Every file below `root/folder` (anything but a folder), at any depth, through symlinked folders too (each
    real folder once): a policy file in a sub-folder is as much policy as one at the top."""
    base = root / folder
    out: set[str] = set()
    seen: set[str] = set()
    for here, dirs, files in os.walk(base, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        for name in files:  # anything but a folder: a FIFO or a dangling link where a file was is an edit too
            out.add(str((Path(here) / name).relative_to(root)))
    return out


def _configured(root: Path) -> list[str]:
    """The runbook and sample jobs slotgen.yaml names, when they live outside the usual folders."""
    from ..files.atomic import UnsafeFile
    from .yamlfile import YAML_BOUND

    try:
        config = safe_load(read_bounded(root / "slotgen.yaml", YAML_BOUND).decode("utf-8")) or {}
        runbook = str(config.get("runbook") or "runbooks/beta-enable.yaml")
        book = safe_load(read_bounded(root / runbook, YAML_BOUND).decode("utf-8")) or {}
        samples = str(Path(runbook).parent / str((book.get("verification") or {}).get("sampleJobs") or ""))
    except (OSError, UnsafeFile, UnicodeDecodeError, yaml.YAMLError, AttributeError, TypeError):
        return []
    return [p for p in (runbook, samples) if p and not p.startswith("..")]


def digests(root: Path) -> dict[str, str]:
    """{path: SHA-256 hex} of every policy file as it is now."""
    from ..files.atomic import UnsafeFile

    out = {}
    for rel in policy_paths(root):
        try:  # never blocks on a FIFO, never reads a device without end (SPEC section 14)
            out[rel] = hashlib.sha256(read_bounded(Path(root) / rel, DIGEST_BOUND)).hexdigest()
        except (OSError, UnsafeFile):
            out[rel] = "unreadable"
    return out


def digest_of(files: dict[str, str]) -> str:
    """One digest for the whole policy: SHA-256 of the sorted {path: digest} map as canonical JSON."""
    return hashlib.sha256(json.dumps(files, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def snapshot(root: Path, roster: dict[str, Any] | None, identity: str | None = None) -> dict[str, Any]:
    """What an entry records when a policy is accepted: the digests, their digest, the roster in force
    and the identity mode (signed or declared, SPEC section 7) its entries are checked under."""
    files = digests(root)
    return {"digest": digest_of(files), "files": files, "roster": roster, "identity": identity}


def drift(accepted: dict[str, Any] | None, root: Path) -> list[dict[str, Any]]:
    """How the policy files differ from the accepted ones: [{file, change, accepted, now}]."""
    before = (accepted or {}).get("files") or {}
    now = digests(root)
    out = []
    for rel in sorted(set(before) | set(now)):
        if before.get(rel) == now.get(rel):
            continue
        change = "added" if rel not in before else "removed" if rel not in now else "changed"
        out.append({"file": rel, "change": change, "accepted": before.get(rel), "now": now.get(rel)})
    return out


_CHANGES = {"changed": "changed since accepted", "added": "added, not in the accepted policy",
            "removed": "removed, was accepted"}


def describe(changes: list[dict[str, Any]]) -> str:
    """Each file that differs and how: 'runbooks/beta-enable.yaml (changed since accepted)'."""
    return ", ".join(f"{c['file']} ({_CHANGES.get(c['change'], c['change'])})" for c in changes)


def remedy(changes: list[dict[str, Any]], env: str) -> str:
    """The two ways out of a drift: accept the files as they stand, or put them back as accepted."""
    undo = []
    for c in changes:
        if c["file"] == MARKER_FILE and c["change"] == "added":
            undo.append(f"remove {c['file']} (if 'slotgen state migrate' wrote it, accept it instead: without it "
                        "the workspace reads its files again)")
        elif c["change"] == "added":
            undo.append(f"remove {c['file']}")
        elif c["change"] == "removed":
            undo.append(f"put {c['file']} back as accepted (sha256 {str(c['accepted'])[:12]}…)")
        else:
            undo.append(f"restore {c['file']} as accepted (sha256 {str(c['accepted'])[:12]}…)")
    return (f"to keep the edit: 'slotgen approve --env {env} --config --decision-record REF' by an approver, then "
            f"'slotgen config accept --env {env} --decision-record REF --approval ID' by an engineering-owner; "
            f"to undo it: {', '.join(undo)}")


def require_pinned(state: dict[str, Any], root: Path, env: str) -> None:
    """IntegrityFailure (exit 4) naming each policy file that differs from its accepted digest, and the way out."""
    accepted = state.get("policy")
    if not isinstance(accepted, dict) or not accepted.get("files"):
        raise IntegrityFailure(f"environment {env!r} has no accepted policy in its audit log; "
                               f"'slotgen config status --env {env}' shows the files")
    changes = drift(accepted, root)
    if changes:
        raise IntegrityFailure(f"policy files differ from what was accepted for {env}: {describe(changes)} "
                               f"('slotgen config status --env {env}' shows them); {remedy(changes, env)} "
                               "(rollback still works)")


def accepted_roster(state: dict[str, Any] | None):  # -> roster.Roster | None
    """The roster the audit log accepted (None if it has none, or one that no longer validates)."""
    from .roster import Roster

    roster_doc = ((state or {}).get("policy") or {}).get("roster")
    try:
        return Roster.from_doc(roster_doc) if roster_doc else None
    except ValueError:
        return None


def accepted_actor(state: dict[str, Any], actor: Any) -> Any:
    """The actor (`authority.Actor`) as the policy accepted *before* any pending edit sees them: its
    roster (roles and keys) and its identity mode (SPEC sections 7 and 8)."""
    policy = state.get("policy") if isinstance(state.get("policy"), dict) else {}
    return actor.against(accepted_roster(state), policy.get("identity") or "signed")
