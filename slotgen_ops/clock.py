"""Time, in one place: the current time, every timestamp form the product writes, and the one parser.

Forms written (always UTC, always `Z`):

- `utc`: the audit log's, with microseconds: `2026-11-22T13:40:00.123456Z`;
- `utc_millis`: telemetry's, with milliseconds: `2026-11-22T13:40:00.123Z`;
- `utc_display`: what an operator reads, to the second: `2026-11-22T13:40:00Z`;
- `utc_compact`: inside file names: `20261122T134000Z`;
- `readable_utc`: a recorded timestamp in a table: `2026-11-22 13:40:00` (UTC).

`parse_utc` reads any of them back, and any RFC 3339 / ISO 8601 date-time with
`Z` or an offset. Times are compared as datetimes, never as strings: an expiry
written with `+02:00` and a time written with `Z` compare by the instant they
name. A naive datetime (no offset) is taken as UTC, when formatting and when
parsing. Standard library only: every layer may import it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["as_utc", "expired", "now_utc", "parse_utc", "parse_utc_or_none", "readable_utc", "until", "utc",
           "utc_compact", "utc_display", "utc_millis"]

# Extended ISO 8601 / RFC 3339: a date, optionally a time (T or a space), optionally a zone. ASCII digits only.
_MOMENT = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"(?:[Tt ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2})(?:[.,](?P<fraction>[0-9]{1,9}))?)?"
    r"(?P<zone>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)


def now_utc() -> datetime:
    """The current time. Deliberately no override: a clock hook would be a way around soak and expiry."""
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is taken as UTC."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _seconds(m: datetime) -> str:
    # Not strftime: its %Y does not pad years below 1000 on every platform.
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"


def utc(moment: datetime) -> str:
    """The audit log's form: `2026-11-22T13:40:00.123456Z`."""
    m = as_utc(moment)
    return f"{_seconds(m)}.{m.microsecond:06d}Z"


def utc_millis(moment: datetime) -> str:
    """Telemetry's form (schemas/telemetry-event.schema.json): `2026-11-22T13:40:00.123Z` (truncated, not rounded)."""
    m = as_utc(moment)
    return f"{_seconds(m)}.{m.microsecond // 1000:03d}Z"


def utc_display(moment: datetime) -> str:
    """To the second, for people: `2026-11-22T13:40:00Z` (truncated, so never later than the moment)."""
    return f"{_seconds(as_utc(moment))}Z"


def utc_compact(moment: datetime) -> str:
    """For file names: `20261122T134000Z`."""
    m = as_utc(moment)
    return f"{m.year:04d}{m.month:02d}{m.day:02d}T{m.hour:02d}{m.minute:02d}{m.second:02d}Z"


def readable_utc(ts: Any, *, minutes: bool = False) -> str:
    """A recorded timestamp as a table shows it, in UTC: `2026-11-22 13:40:00` (`minutes`: `2026-11-22 13:40`).
    Text that is not a timestamp comes back as it is (the caller escapes it); None as ""."""
    if ts is None:
        return ""
    moment = parse_utc_or_none(ts)
    if moment is None:
        return str(ts)
    shown = _seconds(moment).replace("T", " ")
    return shown[:16] if minutes else shown


def parse_utc(text: Any, *, zoned: bool = False) -> datetime:
    """The moment `text` names, as an aware datetime in UTC.

    Accepts `YYYY-MM-DD`, optionally followed by `THH:MM[:SS[.fraction]]` (a space for the `T` too), then
    `Z` or an offset (`+02:00`, `+0200`, `+02`); no zone means UTC, unless `zoned` (then it is refused). A
    fraction beyond microseconds is cut off. Anything else, a non-string included, raises ValueError.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    match = _MOMENT.fullmatch(text)
    if match is None:
        raise ValueError(f"not a timestamp: {text!r} (expected e.g. 2026-11-22T13:40:00Z)")
    part = match.groupdict()
    zone = part["zone"]
    if zoned and not zone:
        raise ValueError(f"not a timestamp: {text!r} (no Z or offset)")
    tz = timezone.utc
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"not a timestamp: {text!r} (offset out of range)")
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-offset if zone[0] == "-" else offset)
    fraction = (part["fraction"] or "").ljust(6, "0")[:6]
    try:
        moment = datetime(int(part["year"]), int(part["month"]), int(part["day"]), int(part["hour"] or 0),
                          int(part["minute"] or 0), int(part["second"] or 0), int(fraction or 0), tzinfo=tz)
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a timestamp: {text!r} ({exc})") from None


def parse_utc_or_none(text: Any, *, zoned: bool = False) -> datetime | None:
    """`parse_utc(text)`, or None when `text` is not a timestamp."""
    try:
        return parse_utc(text, zoned=zoned)
    except ValueError:
        return None


def expired(expires_at: Any, now: datetime | str) -> bool:
    """Has an expiry passed at `now` (a datetime or a timestamp)? Compared as times, whatever form each was
    written in. An expiry that cannot be read, or that names no zone (`Z` or an offset: the product always
    writes one), counts as expired (fail closed), as does any expiry when `now` cannot be read."""
    moment = parse_utc_or_none(expires_at, zoned=True)
    at = as_utc(now) if isinstance(now, datetime) else parse_utc_or_none(now)
    return moment is None or at is None or moment <= at


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
