"""Appending to the hash chain, whatever stores it (the file log `log.AuditLog`, or the PostgreSQL store).

SPEC section 3: the fields every entry gets from its place in the chain (`complete`: ``seq``, ``ts``,
``prevHash``, ``hash``), the compare-and-append check that an append extends the head its caller judged
against (`extends`, `StaleHead`), the log's timestamps (`utc_timestamp`), and `Unsealed`, which a ``seal``
raises when an entry needs a signature its writer does not hold yet.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from ..clock import now_utc, utc
from ..errors import BadInput, IntegrityFailure
from .canonical import canonical_bytes
from .review import GENESIS_HASH

__all__ = ["StaleHead", "Unsealed", "complete", "extends", "utc_timestamp"]


class StaleHead(IntegrityFailure):
    """The log's head is not the one the caller judged against (another writer got there first)."""


def utc_timestamp(now: datetime | None = None) -> str:
    """``now`` (default: the current time) as ``2026-11-22T13:40:00.123456Z``."""
    return utc(now or now_utc())


class Unsealed(Exception):
    """An entry needs a signature its writer does not hold yet; raised by a ``seal``, nothing written."""

    def __init__(self, entry: dict[str, Any]) -> None:
        super().__init__(f"entry seq {entry.get('seq')} is not signed yet")
        self.entry = entry


def extends(prev: dict[str, Any] | None, after: tuple[int, str] | None, where: str) -> None:
    """Compare-and-append: StaleHead unless the log's head `prev` is the head `after` the caller judged against
    (None: no check)."""
    if after is None:
        return
    now = (prev["seq"], prev["hash"]) if prev else (0, GENESIS_HASH)
    if now != tuple(after):
        raise StaleHead(f"{where}: the head is seq {now[0]}, not seq {after[0]} that this change was judged "
                        "against (another writer got there first)")


def complete(fields: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
    """The entry ``fields`` make after ``prev`` (``None``: first): ``seq``, ``ts`` unless given,
    ``prevHash`` and ``hash`` filled; its ``signature`` is for the caller to add."""
    entry = dict(fields)
    entry.setdefault("ts", utc_timestamp())
    entry["seq"] = prev["seq"] + 1 if prev else 1
    entry["prevHash"] = prev["hash"] if prev else GENESIS_HASH
    try:
        body = canonical_bytes(entry)
    except ValueError as exc:
        raise BadInput(f"audit entry cannot be recorded: {exc}") from None
    entry["hash"] = hashlib.sha256(body).hexdigest()
    return entry

