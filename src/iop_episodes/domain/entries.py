"""How a command becomes a chained entry: its fields, its link and stored form, its time.

Shared by every aggregate whose entries are chained (``Episode``,
``Disclosure``), so an entry is built one way whoever records it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from iop_episodes.domain import errors
from iop_episodes.domain.canonical import (
    canonical_time,
    chain_seed,
    entry_bytes,
    next_link,
    stored_form,
)

if TYPE_CHECKING:
    from uuid import UUID

    from iop_episodes.domain import commands, events

CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future an ``occurred_at`` may lie: clocks disagree a little."""


def entry_fields(
    event_class: type[events.EpisodeEvent],
    *,
    episode_id: UUID,
    version: int,
    previous: str,
    cmd: commands.Command,
    received: dict[str, Any],
    payload: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """An event's fields: the entry, its chain link and its stored form, from one dump."""
    digest = cmd.digest(received) if cmd.command_id is not None else None
    canonical = entry_bytes(
        episode_id=episode_id,
        version=version,
        event_type=event_class.type_name(),
        class_version=getattr(event_class, "class_version", 1),
        recorded_at=canonical_time(now),
        occurred_at=received["occurred_at"],
        actor=received["actor"],
        command_id=cmd.command_id,
        command_digest=digest,
        payload=payload,
    )
    link = next_link(previous, canonical)
    return {
        "timestamp": now,
        "occurred_at": cmd.occurred_at,
        "actor": received["actor"],
        "command_id": cmd.command_id,
        "command_digest": digest,
        "payload": payload,
        "chain": link,
        "stored_form": stored_form(link, canonical),
    }


def first_entry(
    event_class: type[events.EpisodeEvent],
    identity: UUID,
    cmd: commands.Command,
    now: datetime,
) -> dict[str, Any]:
    """The fields of an aggregate's first entry: version 1, linked to the id's seed."""
    received = cmd.as_received()
    return entry_fields(
        event_class,
        episode_id=identity,
        version=Aggregate.INITIAL_VERSION,
        previous=chain_seed(identity),
        cmd=cmd,
        received=received,
        payload=cmd.payload_json(received),
        now=now,
    )


def require_not_future(moment: datetime, now: datetime) -> None:
    if moment > now + CLOCK_SKEW:
        raise errors.OccurredInFuture(
            f"occurred_at {canonical_time(moment)} is later than now "
            f"({canonical_time(now)}) plus the {CLOCK_SKEW} clock-skew tolerance"
        )
