"""The chained entries: an envelope, a validated payload and a chain link.

Eleven are an episode's; ``Disclosed`` creates a ``Disclosure`` (one per
export) and is chained, sealed and stored exactly like them.

Each event keeps its payload in canonical JSON form (``payload``) and its
stored bytes (``stored_form``: the canonical entry with its chain link), so
what is stored is exactly what the hash chain covers; ``details()`` gives the
payload back as its typed pydantic model. ``apply`` moves the episode's state.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate

from iop_episodes.domain import payloads
from iop_episodes.domain.canonical import canonical_time
from iop_episodes.domain.catalog import (
    SEVERE_WITHDRAWAL_RATING,
    AgeGroup,
    Level,
    age_group_at,
)
from iop_episodes.domain.weeks import age_on, iso_week, local

if TYPE_CHECKING:
    from iop_episodes.domain.episode import Episode
    from iop_episodes.domain.values import Model


LATE_ENTRY_AFTER = timedelta(hours=24)
"""An entry recorded more than this long after it happened is a late entry."""


class EpisodeEvent(Aggregate.Event):
    occurred_at: datetime
    actor: dict[str, str]
    command_id: str | None
    command_digest: str | None
    payload: dict[str, Any]
    chain: str
    stored_form: bytes  # the canonical bytes with the chain link: exactly what is stored

    payload_type: ClassVar[type[Model]]

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    @property
    def is_late_entry(self) -> bool:
        """Recorded more than ``LATE_ENTRY_AFTER`` after it happened (allowed, but flagged)."""
        return self.timestamp - self.occurred_at > LATE_ENTRY_AFTER

    def details(self) -> Model:
        return self.payload_type.model_validate(self.payload)

    def apply(self, aggregate: Episode) -> None:
        aggregate.chain = self.chain
        aggregate.entries.append(self.type_name())
        if self.command_id is not None:
            aggregate.receipts[self.command_id] = [
                self.originator_version,
                self.command_digest,
            ]
        self.evolve(aggregate)

    def evolve(self, episode: Episode) -> None:
        """Change the episode's state; entries that only add history do nothing."""


class Assessed(EpisodeEvent, Aggregate.Created):
    payload_type = payloads.Assessed

    @property
    def age_group(self) -> AgeGroup:
        """The client's age group on the assessment's local day; it holds for the episode."""
        timezone = self.payload["program_timezone"]
        born = date.fromisoformat(self.payload["birth_date"])
        return age_group_at(age_on(born, local(self.occurred_at, timezone).date()))

    def evolve(self, episode: Episode) -> None:
        details = payloads.Assessed.model_validate(self.payload)
        episode.program_timezone = details.program_timezone
        episode.client_ref = details.client_ref
        episode.age_group = self.age_group
        episode.payer = details.payer
        episode.assessed_at = self.occurred_at
        episode.severe_withdrawal = details.asam.intoxication_withdrawal >= SEVERE_WITHDRAWAL_RATING
        episode.detox_completed_on = details.detox_completed_on


class PlanCreated(EpisodeEvent):
    payload_type = payloads.PlanCreated

    def evolve(self, episode: Episode) -> None:
        details = payloads.PlanCreated.model_validate(self.payload)
        episode.plan_started_at = self.occurred_at
        episode.weekly_hours = details.weekly_hours
        episode.level = Level.INTENSIVE_OUTPATIENT
        episode.medications = sorted(details.medications)
        if details.detox_completed_on is not None:
            episode.detox_completed_on = details.detox_completed_on


class SessionAttended(EpisodeEvent):
    payload_type = payloads.SessionAttended
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 2 added ``setting``; every version 1 session was on site."""
        state["payload"]["setting"] = "on_site"


class MedicationDispensed(EpisodeEvent):
    payload_type = payloads.MedicationDispensed


class ScreenResulted(EpisodeEvent):
    payload_type = payloads.ScreenResulted


class StepDown(EpisodeEvent):
    payload_type = payloads.StepDown

    def evolve(self, episode: Episode) -> None:
        episode.weekly_hours = Decimal(self.payload["to_weekly_hours"])
        episode.level = Level(self.payload["to_level"])
        episode.last_step_down_week = iso_week(self.occurred_at, episode.program_timezone)
        episode.step_downs += 1


class Discharged(EpisodeEvent):
    payload_type = payloads.Discharged

    def evolve(self, episode: Episode) -> None:
        episode.discharged_at = self.occurred_at
        episode.discharge_reason = int(self.payload["reason"])


class AftercareScheduled(EpisodeEvent):
    payload_type = payloads.AftercareScheduled


class EntryCorrected(EpisodeEvent):
    payload_type = payloads.EntryCorrected

    def evolve(self, episode: Episode) -> None:
        if self.payload["action"] == "void":
            episode.voided.append(int(self.payload["target_version"]))


class ConsentRecorded(EpisodeEvent):
    payload_type = payloads.ConsentRecorded

    def evolve(self, episode: Episode) -> None:
        # canonical text: the same whether the event was just made or read back
        terms = {**self.payload, "given_at": canonical_time(self.occurred_at)}
        episode.consents = (*episode.consents, (self.originator_version, terms))


class ConsentRevoked(EpisodeEvent):
    payload_type = payloads.ConsentRevoked

    def evolve(self, episode: Episode) -> None:
        revoked = int(self.payload["consent_version"])
        episode.revoked_consents = (*episode.revoked_consents, revoked)


class Disclosed(EpisodeEvent, Aggregate.Created):
    """Creates a ``Disclosure``: the one entry of one export (never edited)."""

    payload_type = payloads.Disclosed


EVENT_TYPES: dict[str, type[EpisodeEvent]] = {
    cls.type_name(): cls
    for cls in (
        Assessed,
        PlanCreated,
        SessionAttended,
        MedicationDispensed,
        ScreenResulted,
        StepDown,
        Discharged,
        AftercareScheduled,
        EntryCorrected,
        ConsentRecorded,
        ConsentRevoked,
        Disclosed,
    )
}
"""Every chained entry type, by name: the mapper, verification and the digest read these."""

EPISODE_ENTRY_TYPES = frozenset(EVENT_TYPES) - {"Disclosed"}
"""The entries of an ``Episode``; a ``Disclosed`` entry is a ``Disclosure``'s."""

CORRECTABLE = frozenset(
    {"SessionAttended", "MedicationDispensed", "ScreenResulted", "AftercareScheduled"}
)
