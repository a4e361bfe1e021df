"""Medicare IOP certification: who certified what, and when it lapses.

A physician certifies that the client needs at least 9 hours a week; the
certification must be renewed at most 60 days after the last one. A local
day is covered when the last certification on or before it is at most 60
days old (day 60 is covered, day 61 has lapsed). Care on a lapsed day is
accepted and flagged, never blocked.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

RECERTIFY_WITHIN_DAYS = 60
MEDICARE_MIN_CERTIFIED_HOURS = Decimal(9)


def last_certified(day: date, certified_on: Iterable[str]) -> date | None:
    """The latest certification date on or before ``day`` (ISO dates in, a date out)."""
    dates = [date.fromisoformat(value) for value in certified_on]
    earlier = [value for value in dates if value <= day]
    return max(earlier) if earlier else None


def lapsed_on(day: date, certified_on: Iterable[str]) -> bool:
    """Whether care on this local day falls outside every certification."""
    dates = list(certified_on)
    if not dates:
        return False  # not a certified (Medicare) episode
    last = last_certified(day, dates)
    return last is None or (day - last).days > RECERTIFY_WITHIN_DAYS


def recertification_due(certified_on: Iterable[str]) -> date | None:
    """The last local day the latest certification covers; None when there is none."""
    dates = [date.fromisoformat(value) for value in certified_on]
    return max(dates) + timedelta(days=RECERTIFY_WITHIN_DAYS) if dates else None
