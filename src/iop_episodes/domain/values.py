"""Constrained value types shared by commands and event payloads.

Each type validates on the way in and serializes to the canonical JSON form
(see ``canonical``) on the way out, so a payload's ``model_dump(mode="json")``
is exactly what the hash chain covers.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)

from iop_episodes.domain.canonical import canonical_decimal, canonical_time

# Tabs and newlines are ordinary in clinical notes; other control characters
# are never typed by a person and break exports and terminals.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = "must be timezone-aware (naive datetimes are ambiguous)"
        raise ValueError(msg)
    return moment


def _no_control_characters(text: str) -> str:
    if _CONTROL.search(text):
        msg = "must not contain control characters other than tab and newline"
        raise ValueError(msg)
    return text


def _known_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"must be an IANA timezone name such as America/New_York, got {name!r}"
        raise ValueError(msg) from None
    return name


def _not_blank(text: str) -> str:
    if not text.strip():
        msg = "must not be blank"
        raise ValueError(msg)
    return text


def _sorted_values(members: frozenset[StrEnum]) -> list[str]:
    # Set order follows string hashing, which differs between processes;
    # sorting keeps canonical bytes and store digests reproducible.
    return sorted(str(member) for member in members)


def _at_most_two_places(quantity: Decimal) -> Decimal:
    if not quantity.is_finite():
        msg = "must be a finite number"
        raise ValueError(msg)
    if quantity.as_tuple().exponent < -2:  # type: ignore[operator]  # finite checked above
        msg = "must have at most two decimal places"
        raise ValueError(msg)
    return quantity


Instant = Annotated[
    datetime,
    AfterValidator(_aware),
    PlainSerializer(canonical_time, return_type=str, when_used="json"),
]
"""A timezone-aware moment, serialized in canonical UTC form."""

Quantity = Annotated[
    Decimal,
    Field(gt=0, le=100_000),
    AfterValidator(_at_most_two_places),
    PlainSerializer(canonical_decimal, return_type=str, when_used="json"),
]
"""A positive decimal quantity such as hours or milligrams."""

Hours = Annotated[
    Decimal,
    Field(gt=0, le=168),
    AfterValidator(_at_most_two_places),
    PlainSerializer(canonical_decimal, return_type=str, when_used="json"),
]
"""Hours in a week: positive, at most 168, at most two decimal places."""

HoursOrZero = Annotated[
    Decimal,
    Field(ge=0, le=168),
    AfterValidator(_at_most_two_places),
    PlainSerializer(canonical_decimal, return_type=str, when_used="json"),
]
"""Hours in a week that may be zero (attended hours in a week with no sessions)."""

Reference = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"),
]
"""An identifier from another system: letters, digits and ``._:@/-``."""

Timezone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_known_timezone),
]
"""An IANA timezone name: the program's clock for ISO weeks and local days."""

Note = Annotated[
    str,
    StringConstraints(max_length=4000),
    AfterValidator(_no_control_characters),
]
"""Free clinical text, stored verbatim."""

Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4000),
    AfterValidator(_no_control_characters),
    AfterValidator(_not_blank),
]
"""Free text that must be given."""


class Model(BaseModel):
    """Base of every command and payload: frozen, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


SortedOnDump = PlainSerializer(_sorted_values, return_type=list[str], when_used="json")
"""Serializer for enum sets: ``Annotated[frozenset[Topic], SortedOnDump]``."""
