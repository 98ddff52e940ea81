"""Reading the allowlist file the runtime is pointed at. Fails closed, never raises."""

from __future__ import annotations

import json
from pathlib import Path

from ..contract import Allowlist, AllowlistInvalid, AllowlistUnavailable, parse_allowlist


def load_allowlist(path: str | None, base: Path | None = None) -> Allowlist | AllowlistUnavailable:
    """The allowlist at `path` (relative paths resolve against `base`), or why not.

    Missing, unreadable, not JSON or schema-invalid: AllowlistUnavailable, so
    every job is NOT_ALLOWLISTED (SPEC section 1).
    """
    if not path:
        return AllowlistUnavailable("SLOTGEN_AI_ALLOWLIST_PATH is unset")
    file = Path(path)
    if base is not None and not file.is_absolute():
        file = base / file
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AllowlistUnavailable(f"{path}: file not found")
    except (OSError, UnicodeDecodeError) as exc:
        return AllowlistUnavailable(f"{path}: unreadable ({exc.__class__.__name__})")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return AllowlistUnavailable(f"{path}: not JSON ({exc})")
    try:
        return parse_allowlist(doc)
    except AllowlistInvalid as exc:
        return AllowlistUnavailable(f"{path}: {exc}")


def read_allowlist_strict(path: Path) -> Allowlist:
    """For commands that take an allowlist as input (set, init): raise on any problem."""
    from ..errors import BadInput

    state = load_allowlist(str(path))
    if isinstance(state, AllowlistUnavailable):
        raise BadInput(f"allowlist {state.reason}")
    return state
