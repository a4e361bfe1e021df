"""Times as people read them: in the program's timezone (or one asked for), with the offset.

The views and the store keep canonical UTC text (``2026-01-08T01:40:00.000000Z``).
People see ``2026-01-07 20:40 -05:00``: the local day, minutes, and the
offset, so a time is never ambiguous and never on the wrong day. Machines
get ISO 8601 with the same offset (``2026-01-07T20:40:00-05:00``).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from iop_episodes.domain.weeks import zone


def checked_timezone(name: str, argument: str = "--timezone") -> str:
    """The name if it is an IANA timezone; otherwise a ValueError naming the argument."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"{argument}: {name!r} is not an IANA timezone name such as America/New_York or UTC"
        raise ValueError(msg) from None
    return name


def moment(value: datetime | str) -> datetime:
    """A stored time (canonical text or an aware datetime) as an aware datetime."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _offset(local: datetime) -> str:
    text = local.strftime("%z")  # -0500
    return f"{text[:3]}:{text[3:]}"


def shown(value: datetime | str | None, timezone: str, missing: str = "-") -> str:
    """``2026-01-07 20:40 -05:00``: local date and minutes with the offset."""
    if value is None:
        return missing
    local = moment(value).astimezone(zone(timezone))
    return f"{local:%Y-%m-%d %H:%M} {_offset(local)}"


def iso(value: datetime | str | None, timezone: str) -> str | None:
    """ISO 8601 in the timezone with its offset, to the second: ``2026-01-07T20:40:00-05:00``."""
    if value is None:
        return None
    return moment(value).astimezone(zone(timezone)).isoformat(timespec="seconds")


def local_day(value: datetime | str, timezone: str) -> str:
    return f"{moment(value).astimezone(zone(timezone)):%Y-%m-%d}"
