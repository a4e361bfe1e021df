"""The chained entries: an envelope, a validated payload and a chain link.

Twelve are an episode's; ``Disclosed`` creates a ``Disclosure`` (one per
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
    Payer,
    age_group_at,
)
from iop_episodes.domain.screening import screen_meaning
from iop_episodes.domain.weeks import age_on, iso_week, local, week_name

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
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 2 records the Medicare certification's date and hours."""
        state["payload"]["certified_on"] = None
        state["payload"]["certified_weekly_hours"] = None

    def evolve(self, episode: Episode) -> None:
        details = payloads.PlanCreated.model_validate(self.payload)
        episode.plan_started_at = self.occurred_at
        episode.weekly_hours = details.weekly_hours
        episode.plan_weekly_hours = details.weekly_hours
        certified_on = details.certified_on
        if certified_on is None and episode.payer == Payer.MEDICARE:
            # Version 1 plans were certified on their own day.
            certified_on = local(self.occurred_at, episode.program_timezone).date()
        if certified_on is not None:
            episode.certifications = sorted({*episode.certifications, str(certified_on)})
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

    def evolve(self, episode: Episode) -> None:
        minutes = int(self.payload["minutes"])
        _add_care(self, episode, minutes)
        _attend(episode, self.occurred_at, minutes)


class MedicationDispensed(EpisodeEvent):
    payload_type = payloads.MedicationDispensed
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 2 records the take-home policy; version 1 doses were judged by none."""
        state["payload"]["take_home_policy"] = None

    def evolve(self, episode: Episode) -> None:
        _add_care(self, episode, int(self.payload["take_home_doses"]))


class ScreenResulted(EpisodeEvent):
    payload_type = payloads.ScreenResulted

    def evolve(self, episode: Episode) -> None:
        meaning = screen_meaning(self.payload["results"], episode.medications)
        _add_care(self, episode, 0, meaning)
        _tally(episode, self.occurred_at, meaning=meaning)


class StepDown(EpisodeEvent):
    payload_type = payloads.StepDown

    def evolve(self, episode: Episode) -> None:
        _add_care(self, episode, 0)
        step = [
            self.originator_version,
            canonical_time(self.occurred_at),
            self.payload["to_weekly_hours"],
            self.payload["to_level"],
        ]
        # Tapers are kept in clinical order: a late step-down slots in by occurred_at.
        episode.tapers = sorted([*episode.tapers, step], key=lambda t: (t[1], t[0]))
        latest = episode.tapers[-1]
        episode.weekly_hours = Decimal(latest[2])
        episode.level = Level(latest[3])
        episode.last_step_down_week = iso_week(
            datetime.fromisoformat(latest[1]), episode.program_timezone
        )
        episode.step_downs = len(episode.tapers)


class Recertified(EpisodeEvent):
    payload_type = payloads.Recertified

    def evolve(self, episode: Episode) -> None:
        _add_care(self, episode, 0)
        episode.certifications = sorted({*episode.certifications, self.payload["certified_on"]})


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
        target = int(self.payload["target_version"])
        void = self.payload["action"] == "void"
        if void:
            episode.voided.append(target)
        amended = self.payload["amended"]
        for entry in episode.care:
            if entry[0] != target:
                continue
            moment = datetime.fromisoformat(entry[1])
            if entry[2] == "SessionAttended":
                minutes = 0 if void else int(amended["minutes"])
                _attend(episode, moment, minutes - entry[3])
                entry[3] = minutes
            elif entry[2] == "ScreenResulted":
                _tally(episode, moment, meaning=entry[4], count=-1)
                entry[4] = "" if void else screen_meaning(amended["results"], episode.medications)
                _tally(episode, moment, meaning=entry[4])
            elif entry[2] == "MedicationDispensed" and not void:
                entry[3] = int(amended.get("take_home_doses", 0))


def _attend(episode: Episode, moment: datetime, minutes: int) -> None:
    """Add (or with a negative count, take back) attended minutes on the local day and week.

    The week's minutes are what the step-down policy reads; the day's bound a
    local day to 24 hours. One conversion to local time serves both.
    """
    here = local(moment, episode.program_timezone)
    day = here.date().isoformat()
    episode.minutes_by_day[day] = episode.minutes_by_day.get(day, 0) + minutes
    episode.weekly.setdefault(week_name(here), [0, 0, 0])[0] += minutes


def _tally(episode: Episode, moment: datetime, *, meaning: str, count: int = 1) -> None:
    """Keep the week's screens (what the step-down policy reads)."""
    week = iso_week(moment, episode.program_timezone)
    tally = episode.weekly.setdefault(week, [0, 0, 0])
    if meaning == "negative":
        tally[1] += count
    elif meaning == "unexpected-positive":
        tally[2] += count


def _add_care(event: EpisodeEvent, episode: Episode, quantity: int, meaning: str = "") -> None:
    """Note the entry on the episode's clinical timeline.

    ``[version, occurred_at, type, quantity, meaning]``: quantity is a
    session's minutes or a dose's take-home supply; meaning a screen's.
    """
    episode.care.append(
        [
            event.originator_version,
            canonical_time(event.occurred_at),
            event.type_name(),
            quantity,
            meaning,
        ]
    )


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
        Recertified,
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
