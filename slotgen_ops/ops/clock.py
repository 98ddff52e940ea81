"""The current time, and the one timestamp format the audit log uses (UTC, microseconds, `Z`)."""

from __future__ import annotations

from datetime import datetime, timezone


def utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_utc() -> datetime:
    """The current time. Deliberately no override: a clock hook would be a way around soak and expiry."""
    return datetime.now(timezone.utc)


def until(now: datetime, moment: datetime) -> str:
    """How long from `now` to `moment`, as an operator reads it: "in 29 min", "in 1 h 5 min", "in 40 s"
    (rounded up, so the wait is never longer than said); "now" when it has come."""
    seconds = int(-(-(moment - now).total_seconds() // 1))
    if seconds <= 0:
        return "now"
    if seconds < 60:
        return f"in {seconds} s"
    minutes = -(-seconds // 60)
    if minutes < 60:
        return f"in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"in {hours} h" + (f" {minutes} min" if minutes else "")
