"""Command-line values, each parsed and checked once for every command that takes it.

These are ``argparse`` ``type=`` functions: a bad value raises
``ArgumentTypeError`` and the parser reports it as one line naming the
argument (``argument --week: ...``). ``add_store``, ``add_json`` and
``add_timezone`` add the options every command spells the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from datetime import date, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEK = re.compile(r"(\d{4})-W(\d{2})")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def moment(text: str) -> datetime:
    """An ISO 8601 time with its UTC offset, such as 2026-03-02T14:00-05:00 or ...Z."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{text!r} is not an ISO 8601 time; give one such as 2026-03-02T14:00-05:00"
        raise argparse.ArgumentTypeError(msg) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        timed = text if len(text) > len("2026-03-02") else f"{text}T00:00"  # a day needs a time
        msg = f"{text!r} needs a timezone offset, such as {timed}Z or {timed}-05:00"
        raise argparse.ArgumentTypeError(msg)
    return parsed


def day(text: str) -> date:
    """A calendar day, YYYY-MM-DD, such as 2026-03-02."""
    if DAY.fullmatch(text) is not None:
        with contextlib.suppress(ValueError):  # 2026-02-30 matches but is no day
            return date.fromisoformat(text)
    msg = f"{text!r} is not a day; give one such as 2026-03-02"
    raise argparse.ArgumentTypeError(msg)


def iso_week(text: str) -> str:
    """An ISO week that exists, such as 2026-W48 (2026 has 53 weeks, most years 52)."""
    found = WEEK.fullmatch(text)
    if found is None:
        msg = f"{text!r} is not an ISO week; give one such as 2026-W48"
        raise argparse.ArgumentTypeError(msg)
    year, number = int(found[1]), int(found[2])
    weeks_in_year = date(year, 12, 28).isocalendar()[1]
    if not 1 <= number <= weeks_in_year:
        msg = f"{text!r} does not exist: {year} has weeks W01 to W{weeks_in_year:02d}"
        raise argparse.ArgumentTypeError(msg)
    return text


def timezone(text: str) -> str:
    """An IANA timezone name, such as America/New_York."""
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"{text!r} is not an IANA timezone; give one such as America/New_York or UTC"
        raise argparse.ArgumentTypeError(msg) from None
    return text


def episode_id(text: str) -> UUID:
    """An episode id: a UUID such as 6f1f8c1e-3b7a-5d0e-9a53-2f4c7b1d9e10."""
    try:
        return UUID(text)
    except ValueError:
        msg = f"{text!r} is not an episode id (a UUID)"
        raise argparse.ArgumentTypeError(msg) from None


def positive(text: str) -> int:
    """A whole number of at least 1."""
    try:
        number = int(text)
    except ValueError:
        msg = f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(msg) from None
    if number < 1:
        msg = f"{text!r} must be at least 1"
        raise argparse.ArgumentTypeError(msg)
    return number


def seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        number = float(text)
    except ValueError:
        msg = f"{text!r} is not a number of seconds"
        raise argparse.ArgumentTypeError(msg) from None
    if not number > 0:
        msg = f"{text!r} must be more than 0 seconds"
        raise argparse.ArgumentTypeError(msg)
    return number


def add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        help="store URL: sqlite:///iop.db, postgresql://user@host/db (default: $IOP_STORE "
        "or sqlite:///iop.db)",
    )


def add_as_of(parser: Any, purpose: str) -> None:
    """``--as-of TIME``: an ISO 8601 time with offset (``parser`` may be a group)."""
    parser.add_argument(
        "--as-of", type=moment, metavar="TIME", help=f"{purpose} (ISO 8601 time with offset)"
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of text (iop schema lists the published shapes)",
    )


def add_timezone(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--timezone",
        type=timezone,
        metavar="TZ",
        help=f"IANA timezone {purpose} (default: $IOP_TIMEZONE or America/New_York)",
    )
