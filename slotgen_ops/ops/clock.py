"""The current time, and the one timestamp format the audit log uses (UTC, microseconds, `Z`)."""

from __future__ import annotations

from datetime import datetime, timezone


def utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_utc() -> datetime:
    """The current time. Deliberately no override: a clock hook would be a way around soak and expiry."""
    return datetime.now(timezone.utc)
