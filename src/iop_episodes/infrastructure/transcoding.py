"""How event state becomes stored bytes: JSON with canonical times.

The library's default writes ``datetime.isoformat()``, which drops the
fraction when it is zero. Writing the canonical form instead means the times
stored in the database are byte for byte the strings the hash chain covers.
"""

from __future__ import annotations

from datetime import date, datetime

from eventsourcing.persistence import Transcoding

from iop_episodes.domain.canonical import canonical_time


class CanonicalDatetime(Transcoding):
    type = datetime
    name = "datetime_iso"  # the library's name, so both spellings decode

    def encode(self, obj: datetime) -> str:
        return canonical_time(obj)

    def decode(self, data: str) -> datetime:
        return datetime.fromisoformat(data)


class DateAsIso(Transcoding):
    """Calendar dates (birth and detox dates) kept in episode snapshots."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)
