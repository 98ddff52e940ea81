"""The env-files `slotgen render` keeps on this host, remembered so that a rollback can engage them itself.

SPEC section 10: when the state database cannot be reached, `rollback --env E`
on a host still engages the kill-switch in the file that host's runtime reads.
`render` records each file it writes in a small per-user list (under
`$XDG_STATE_HOME/slotgen/render/`, keyed by the workspace and environment), and
a rollback of a database-backed environment engages every file listed there
with the same lock-free write as the file backend's controls (and first of
all, before the CLI is even imported). Cheap to import: the rollback's entry
point reads it before anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def _registry(workspace_root: Path, env: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    digest = hashlib.sha256(str(Path(workspace_root).resolve()).encode()).hexdigest()[:12]
    return Path(base) / "slotgen" / "render" / digest / f"{env}.json"


def rendered(workspace_root: Path, env: str) -> list[Path]:
    """The env-files render has written for this environment on this host (that still exist)."""
    try:
        doc = json.loads(_registry(workspace_root, env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    paths = [Path(p) for p in doc.get("outputs", []) if isinstance(p, str)] if isinstance(doc, dict) else []
    return [p for p in paths if p.exists() or p.is_symlink()]


def remember(workspace_root: Path, env: str, output: Path) -> None:
    """Add `output` to the list (best effort: a rollback without it still engages the database)."""
    target = _registry(workspace_root, env)
    known = [str(p) for p in rendered(workspace_root, env)]
    path = str(Path(output).absolute())
    if path in known:
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"outputs": [*known, path]}), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        pass


def engage(workspace_root: Path, env: str) -> list[tuple[Path, bool, str]]:
    """Engage the kill-switch in every rendered file of `env` on this host: [(path, engaged, how or problem)]."""
    from .controls_file import KillSwitchNotEngaged, engage_kill_switch

    out = []
    for path in rendered(workspace_root, env):
        try:
            _, how, _ = engage_kill_switch(path, env)
            out.append((path, True, how))
        except (KillSwitchNotEngaged, OSError) as exc:
            out.append((path, False, str(exc)))
    return out
