"""The accounting of disclosures (42 CFR Part 2): every Disclosure entry, read from the store.

Each entry is read through ``service.history``, so its link (and seal, with a
key) is checked: a forged disclosure raises ``EntryIntegrityError`` rather
than being listed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.utils import get_topic
from pydantic import ConfigDict, RootModel
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from iop_episodes.audit.integrity import notifications
from iop_episodes.domain.canonical import canonical_time
from iop_episodes.domain.events import Disclosed
from iop_episodes.domain.values import Model
from projections.localtime import shown

if TYPE_CHECKING:
    from iop_episodes.application.service import EpisodeService
    from iop_episodes.domain.episode import Receipt
    from iop_episodes.domain.events import EpisodeEvent

DISCLOSED_TOPIC = get_topic(Disclosed)
ACCOUNTING_YEARS = 3


class DisclosedRecord(TypedDict):
    """One episode's entries in a disclosure, as the Disclosure entry names them."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]  # pydantic reads it; mypy allows only fields

    episode_id: str
    client_ref: str
    from_version: int
    to_version: int
    consent_version: int | None
    """The consent the entries left under; null for a disclosure under an exception."""


class DisclosureRow(Model):
    """One disclosure as the accounting lists it."""

    disclosure_id: str
    disclosed_at: str
    recorded_at: str
    actor_id: str
    actor_role: str
    recipient: str
    purpose: str
    basis: str
    exception: str | None
    format: str
    scope: list[str]
    records: list[DisclosedRecord]
    checkpoint: str | None
    sha256: str
    size_bytes: int


def three_years_before(today: date) -> date:
    """The default start of an accounting: the same day three years earlier (28 Feb for 29)."""
    try:
        return today.replace(year=today.year - ACCOUNTING_YEARS)
    except ValueError:
        return today.replace(year=today.year - ACCOUNTING_YEARS, day=28)


def disclosures(
    service: EpisodeService, *, client: str | None = None, since: datetime | None = None
) -> list[DisclosureRow]:
    """Every disclosure recorded at or after ``since`` (of ``client``'s records), oldest first.

    Raises ``EntryIntegrityError`` naming the disclosure whose entry does not verify.
    """
    rows = []
    for notification in notifications(service):
        if notification.topic != DISCLOSED_TOPIC:
            continue
        identity = UUID(str(notification.originator_id))
        event = next(service.history(identity))  # its link (and seal) checked
        payload = event.payload
        if since is not None and event.occurred_at < since:
            continue
        records = [r for r in payload["records"] if client is None or r["client_ref"] == client]
        if not records:
            continue  # another client's records: an accounting names no one else
        rows.append(row_of(event, records))
    return rows


def row_of(event: EpisodeEvent, records: list[DisclosedRecord] | None = None) -> DisclosureRow:
    """One ``Disclosed`` entry as the accounting lists it (``records``: those to show)."""
    payload = event.payload
    return DisclosureRow(
        disclosure_id=str(event.originator_id),
        disclosed_at=canonical_time(event.occurred_at),
        recorded_at=canonical_time(event.timestamp),
        actor_id=event.actor["id"],
        actor_role=event.actor["role"],
        recipient=payload["recipient"],
        purpose=payload["purpose"],
        basis=payload["basis"],
        exception=payload["exception"],
        format=payload["format"],
        scope=list(payload["scope"]),
        records=list(payload["records"]) if records is None else records,
        checkpoint=payload["checkpoint"],
        sha256=payload["sha256"],
        size_bytes=payload["size_bytes"],
    )


def recorded(service: EpisodeService, receipt: Receipt) -> DisclosureRow:
    """The disclosure an export just recorded, read back from the store."""
    return row_of(next(service.history(receipt.episode_id)))


def to_text(rows: list[DisclosureRow], timezone: str) -> str:
    """Two or more lines per disclosure, its time local to ``timezone`` with the offset."""
    lines = []
    for row in rows:
        basis = row.basis if row.exception is None else f"exception {row.exception}"
        when = shown(row.disclosed_at, timezone)
        lines.append(
            f"{when}  disclosure {row.disclosure_id}  by {row.actor_id} "
            f"({row.actor_role})  to {row.recipient!r}  for {row.purpose!r}  on {basis}  "
            f"{row.format}  {row.size_bytes} bytes sha256 {row.sha256}"
        )
        for record in row.records:
            consent = record["consent_version"]
            under = f"  consent v{consent}" if consent is not None else ""
            lines.append(
                f"    {record['client_ref']}  episode {record['episode_id']}  versions "
                f"{record['from_version']}-{record['to_version']}{under}"
            )
    lines.append(f"{len(rows)} disclosures")
    return "\n".join(lines) + "\n"


class DisclosureList(RootModel[list[DisclosureRow]]):
    """``iop audit disclosures --json``: one object per disclosure, oldest first."""
