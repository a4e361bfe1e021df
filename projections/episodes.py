"""Finding clients: episodes listed by client reference, and a reference resolved to its episode.

The client reference lives in the episodes view (sealed like the other
clinical identifiers when the store is encrypted), so listing thousands of
episodes reads one table instead of loading every episode. Rows projected
before the column existed hold none; for those the store is asked. A
reference resolved through the view is checked against the episode's own
verified state before anything is shown, so an edited view cannot point a
reader at another client's record.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import PlainSerializer, RootModel

from iop_episodes.application import problems
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import canonical_decimal
from iop_episodes.domain.values import Model
from iop_episodes.domain.weeks import zone
from projections.escaping import visible
from projections.localtime import shown
from projections.rows import EpisodeRow
from projections.sealing import PREFIX
from projections.views import EpisodeViews

Status = Literal["assessed", "active", "discharged"]


def _number(hours: Decimal) -> int | float:
    return int(hours) if hours == hours.to_integral_value() else float(hours)


JsonHours = Annotated[Decimal, PlainSerializer(_number, return_type=int | float, when_used="json")]
"""Hours as a JSON number (``12``, ``9.5``), not a string."""


class EpisodeListing(Model):
    """One episode as ``iop episodes --json`` lists it."""

    episode_id: UUID
    client_ref: str | None
    """None only when the reference is sealed and no key was given."""
    client_ref_sealed: bool
    status: Status
    level: str | None
    weekly_hours: JsonHours | None
    assessed_at: datetime
    plan_started_at: datetime | None
    discharged_at: datetime | None


class ClientNotFound(errors.EpisodeNotFound):
    """No episode has this client reference."""


class AmbiguousClient(problems.UsageProblem):
    """A client reference that matches more than one episode (a usage error)."""


class ViewDisagrees(problems.IntegrityProblem):
    """The episodes view names a client the episode's own entries do not."""


def _local(text: str | None, timezone: str) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(zone(timezone)).replace(microsecond=0)


def _listing(service: EpisodeService, row: EpisodeRow, timezone: str) -> EpisodeListing:
    client_ref, assessed_at = row.client_ref, row.assessed_at
    if client_ref is None or assessed_at is None:  # projected before the columns existed
        first = service.episode(UUID(row.episode_id), version=1)
        client_ref, assessed_at = first.client_ref, first.assessed_at.isoformat()
    sealed = client_ref.startswith(PREFIX)  # still sealed: the views were opened without a key
    return EpisodeListing(
        episode_id=UUID(row.episode_id),
        client_ref=None if sealed else client_ref,
        client_ref_sealed=sealed,
        status=row.status,  # the projector writes only these three
        level=row.level,
        weekly_hours=Decimal(row.weekly_hours) if row.weekly_hours else None,
        assessed_at=datetime.fromisoformat(assessed_at)
        .astimezone(zone(timezone))
        .replace(microsecond=0),
        plan_started_at=_local(row.plan_started_at, timezone),
        discharged_at=_local(row.discharged_at, timezone),
    )


def list_episodes(
    service: EpisodeService,
    views: EpisodeViews,
    timezone: str,
    *,
    client: str | None = None,
    status: Status | None = None,
) -> list[EpisodeListing]:
    """Episodes ordered by client reference, then assessment time."""
    found = [_listing(service, row, timezone) for row in views.episodes()]
    chosen = [
        listing
        for listing in found
        if (client is None or listing.client_ref == client)
        and (status is None or listing.status == status)
    ]
    return sorted(chosen, key=lambda e: (e.client_ref or "", e.assessed_at, str(e.episode_id)))


def resolve_episode(service: EpisodeService, views: EpisodeViews, reference: str | UUID) -> UUID:
    """An episode id as given, or the one episode of a client reference."""
    if isinstance(reference, UUID):
        return reference
    try:
        return UUID(reference)
    except ValueError:
        pass
    timezone = service.program_timezone
    matches = list_episodes(service, views, timezone, client=reference)
    if not matches:
        msg = f"no episode for client reference {reference!r} (iop episodes lists them)"
        raise ClientNotFound(msg)
    if len(matches) > 1:
        listed = "; ".join(
            f"{m.episode_id} ({m.status}, assessed {shown(m.assessed_at, timezone)})"
            for m in matches
        )
        msg = (
            f"client reference {reference!r} matches {len(matches)} episodes, "
            f"give one episode id: {listed}"
        )
        raise AmbiguousClient(msg)
    episode_id = matches[0].episode_id
    # The client reference is the first entry's alone: read just that entry (its link
    # checked), so that a damaged later entry is for the command (verify) to report.
    first = next(service.history(episode_id), None)
    stored = None if first is None else first.payload.get("client_ref")
    if stored != reference:
        msg = (
            f"the episodes view names client {reference!r} for episode {episode_id} but its "
            f"entries say {stored!r}: the view was changed; run iop audit verify"
        )
        raise ViewDisagrees(msg)
    return episode_id


def episodes_table(listings: list[EpisodeListing], timezone: str) -> str:
    """One line per episode, times in ``timezone`` with their offset."""
    counts: dict[str, int] = {}
    for listing in listings:
        counts[listing.status] = counts.get(listing.status, 0) + 1
    summary = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    lines = [
        (
            f"{len(listings)} {'episode' if len(listings) == 1 else 'episodes'} "
            f"({summary or 'none'}); times in {timezone}"
        ),
        (
            f"{'client':<16}  {'status':<10}  {'level':>5}  {'hours':>5}  {'assessed':<22}  "
            f"{'plan started':<22}  {'discharged':<22}  episode"
        ),
    ]
    for e in listings:
        client = "(sealed)" if e.client_ref_sealed else visible(e.client_ref or "-")
        hours = canonical_decimal(e.weekly_hours) if e.weekly_hours is not None else "-"
        lines.append(
            f"{client:<16}  {e.status:<10}  {visible(e.level or '-'):>5}  {hours:>5}  "
            f"{shown(e.assessed_at, timezone):<22}  {shown(e.plan_started_at, timezone):<22}  "
            f"{shown(e.discharged_at, timezone):<22}  {e.episode_id}"
        )
    return "\n".join(lines)


class EpisodeList(RootModel[list[EpisodeListing]]):
    """``iop episodes --json``: one object per episode."""
