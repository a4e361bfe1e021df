"""Calendar arithmetic in the program's timezone: ISO weeks and ages."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local(moment: datetime, timezone: str) -> datetime:
    return moment.astimezone(zone(timezone))


def iso_week(moment: datetime, timezone: str) -> str:
    """The ISO week, such as ``2026-W48``, of a moment on the program's clock."""
    return week_name(local(moment, timezone))


def week_name(moment: datetime | date) -> str:
    """The ISO week, such as ``2026-W48``, of a local moment or day."""
    year, week, _ = moment.isocalendar()
    return f"{year:04d}-W{week:02d}"


def week_start(week: str, timezone: str) -> datetime:
    """Monday 00:00 local time of an ISO week such as ``2026-W48``."""
    year, number = week.split("-W")
    monday = date.fromisocalendar(int(year), int(number), 1)
    return datetime(monday.year, monday.month, monday.day, tzinfo=zone(timezone))


def next_week(week: str) -> str:
    year, number = week.split("-W")
    monday = date.fromisocalendar(int(year), int(number), 1) + timedelta(days=7)
    iso_year, iso_number, _ = monday.isocalendar()
    return f"{iso_year:04d}-W{iso_number:02d}"


def age_on(birth_date: date, day: date) -> int:
    had_birthday = (day.month, day.day) >= (birth_date.month, birth_date.day)
    return day.year - birth_date.year - (0 if had_birthday else 1)


def previous_weeks(week: str, count: int) -> list[str]:
    """The ``count`` complete weeks before ``week``, oldest first."""
    year, number = week.split("-W")
    monday = date.fromisocalendar(int(year), int(number), 1)
    names = []
    for back in range(count, 0, -1):
        iso_year, iso_number, _ = (monday - timedelta(weeks=back)).isocalendar()
        names.append(f"{iso_year:04d}-W{iso_number:02d}")
    return names
