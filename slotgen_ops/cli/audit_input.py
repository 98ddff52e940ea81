"""What `audit show` and `audit report` read besides the log: the break-glass journal, each entry marked
folded into the log or not."""

from __future__ import annotations

from ..errors import SlotgenError


def break_glass_items(environment) -> list[dict]:
    """Every readable break-glass journal entry of `environment`, oldest first:
    ``{"journal": path, "folded": bool, "entry": entry}``."""
    from ..changes.breakglass import BreakGlassJournal

    found = BreakGlassJournal(environment).entries()
    if not found:
        return []
    try:
        head = environment.log.head()
        folded = set((head or {}).get("state", {}).get("breakGlassFolded") or [])
    except SlotgenError:
        folded = set()
    return [{"journal": str(path), "folded": entry.get("hash") in folded, "entry": entry} for path, entry in found]
