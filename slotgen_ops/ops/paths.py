"""Where a workspace and its environments live: names and paths only (stdlib, imported by the fast path)."""

from __future__ import annotations

import os
import re
from pathlib import Path

WORKSPACE_FILE = "slotgen.yaml"
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def workspace_root(explicit: Path | None = None) -> Path | None:
    """--workspace DIR, else $SLOTGEN_WORKSPACE, else the nearest parent holding slotgen.yaml (None: none)."""
    if explicit is None and os.environ.get("SLOTGEN_WORKSPACE"):
        explicit = Path(os.environ["SLOTGEN_WORKSPACE"])
    if explicit is not None:
        return explicit if (explicit / WORKSPACE_FILE).is_file() else None
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / WORKSPACE_FILE).is_file():
            return folder
    return None


#: In environments/: the database a workspace's environments were moved to by `slotgen state migrate`.
STATE_MARKER = "STATE-URL"


def marker_url(environments_dir: Path) -> str | None:
    """The database a migrated workspace's environments moved to (None if they did not)."""
    try:
        text = (Path(environments_dir) / STATE_MARKER).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text if text.startswith(("postgresql://", "postgres://")) else None


def state_url_in_files(root: Path) -> str | None:
    """Where a workspace keeps its environments, read from its files without validating anything (for the
    rollback, which must work when slotgen.yaml does not): slotgen.yaml's `state:` URL, else the marker
    `slotgen state migrate` leaves; None for files."""
    try:
        text = (Path(root) / WORKSPACE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    match = re.search(r"^state:\s*['\"]?(postgres(?:ql)?://[^'\"\s#]+)", text, re.MULTILINE)
    return match.group(1) if match else marker_url(Path(root) / "environments")
