"""The rows the two views are made of, as plain frozen records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

Row = TypeVar("Row")


def evolve(row: Row, **changes: Any) -> Row:
    """A copy of a frozen row with some columns changed.

    ``dataclasses.replace`` runs ``__init__`` through field introspection; a
    projection changes a row for every event, so copy the instance dict.
    """
    copy: Row = object.__new__(type(row))
    copy.__dict__.update(row.__dict__, **changes)
    return copy


@dataclass(frozen=True)
class EpisodeRow:
    """An episode's current hour schedule."""

    episode_id: str
    status: str
    age_group: str
    program_timezone: str
    level: str | None
    weekly_hours: str | None
    plan_weekly_hours: str | None
    modality_hours: str  # canonical JSON object
    medications: str  # canonical JSON array
    plan_started_at: str | None
    last_change_at: str | None
    discharged_at: str | None
    discharge_reason: int | None
    version: int
    certifications: str = "[]"  # canonical JSON array of ISO dates (Medicare)
    screens_per_week: int = 0
    aftercare: int = 0  # aftercare entries scheduled
    payer: str = ""
    # Added after the first release: rows projected before it hold None here
    # (readers then ask the store, see projections.episodes).
    client_ref: str | None = None
    assessed_at: str | None = None


@dataclass(frozen=True)
class EntryRow:
    """One session, dose or screen and what it adds to its week."""

    episode_id: str
    version: int
    week: str
    item: str  # "session:<modality>", "dose" or "screen:<meaning>"
    minutes: int
    voided: bool = False


@dataclass(frozen=True)
class StepDownRow:
    episode_id: str
    version: int
    occurred_at: str
    week: str
    from_hours: str
    to_hours: str
    to_level: str
    actor_id: str
    actor_role: str
    reason: str
    policy: str | None  # "<id>@<version>"


@dataclass(frozen=True)
class AuditRow:
    episode_id: str
    version: int
    event_type: str
    occurred_at: str
    recorded_at: str
    actor_id: str
    actor_role: str
    command_id: str | None
    payload: str  # canonical JSON object
    chain: str
    corrects_version: int | None
    late: bool
