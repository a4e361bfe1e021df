"""Issue 12: rules judged in clinical time (occurred_at, in the program's timezone)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.domain.episode import TIMELINE, Episode
from iop_episodes.domain.weeks import zone
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from projections.runner import ViewRunner
from projections.schedule import episode_schedule
from tests.conftest import START, refused

NEW_YORK = zone("America/New_York")


@pytest.fixture
def service(clock: SimulatedClock) -> Iterator[EpisodeService]:
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as app:
        yield app


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


# ---- discharge and late entries ---------------------------------------------


def discharged_episode(service: EpisodeService, clock: SimulatedClock) -> tuple[UUID, datetime]:
    episode_id = active_episode(service, clock)
    session_at = advance(clock, days=2)
    service.record_session(factories.session(episode_id, session_at))
    discharged_at = advance(clock, days=1)
    service.discharge(factories.discharge(episode_id, discharged_at))
    advance(clock, days=3)
    return episode_id, discharged_at


def test_a_session_before_the_discharge_is_accepted_after_it_and_flagged_late(service, clock):
    """Late documentation of care that happened before the discharge is normal practice."""
    episode_id, discharged_at = discharged_episode(service, clock)
    receipt = service.record_session(
        factories.session(episode_id, discharged_at - timedelta(hours=2))
    )
    entry = list(service.history(episode_id))[receipt.version - 1]
    assert (type(entry).__name__, entry.is_late_entry) == ("SessionAttended", True)


def test_care_at_the_discharge_moment_is_accepted_and_one_microsecond_after_is_refused(
    service, clock
):
    """The boundary: at the discharge is before it; anything after it is refused."""
    episode_id, discharged_at = discharged_episode(service, clock)
    service.record_screen(factories.screen(episode_id, discharged_at))
    error = refused(
        service,
        errors.EpisodeDischarged,
        lambda: service.record_session(
            factories.session(episode_id, discharged_at + timedelta(microseconds=1))
        ),
    )
    assert "occurred after it" in str(error)


def test_a_discharge_dated_before_recorded_care_is_refused_naming_it(service, clock):
    """A discharge cannot be backdated before sessions already on record."""
    episode_id = active_episode(service, clock)
    first = advance(clock, days=1)
    service.record_session(factories.session(episode_id, first))
    second = advance(clock, days=1)
    service.record_session(factories.session(episode_id, second))
    error = refused(
        service,
        errors.DischargeBeforeCare,
        lambda: service.discharge(factories.discharge(episode_id, first + timedelta(hours=4))),
    )
    assert "version 4 SessionAttended at 2026-03-04T15:00:00.000000Z" in str(error)
    assert "version 3" not in str(error)
    assert error.field == "occurred_at"


def test_a_discharge_after_a_voided_session_ignores_the_void(service, clock):
    """A voided entry did not happen, so it does not hold the discharge back."""
    episode_id = active_episode(service, clock)
    service.record_session(factories.session(episode_id, advance(clock, days=2)))
    service.correct_entry(factories.correction(episode_id, clock.now(), target_version=3))
    service.discharge(factories.discharge(episode_id, clock.now() - timedelta(days=1)))
    assert service.episode(episode_id).status == "discharged"


def test_nothing_is_recorded_as_happening_before_the_assessment(service, clock):
    """Aftercare, discharge and corrections before the assessment are refused."""
    episode_id = active_episode(service, clock)
    before = START - timedelta(minutes=1)
    for call in (
        lambda: service.discharge(factories.discharge(episode_id, before)),
        lambda: service.schedule_aftercare(factories.aftercare(episode_id, before)),
    ):
        error = refused(service, errors.OccurredBeforeStart, call)
        assert "before the assessment" in str(error)


# ---- detox -------------------------------------------------------------------


def severe_episode(service: EpisodeService, clock: SimulatedClock, **assessment: Any) -> UUID:
    asam = {**factories.ASAM, "intoxication_withdrawal": 3}
    return service.assess(factories.assessment(clock.now(), asam=asam, **assessment)).episode_id


def test_detox_completed_on_the_plan_day_is_accepted(service, clock):
    """Detox finished the morning the plan starts is in time."""
    episode_id = severe_episode(service, clock)
    service.create_plan(
        factories.plan(episode_id, advance(clock, hours=1), detox_completed_on=date(2026, 3, 2))
    )
    assert service.episode(episode_id).status == "active"


def test_detox_completed_after_the_plan_start_is_refused(service, clock):
    """A plan dated before its detox finished is refused (the day after is too late)."""
    episode_id = severe_episode(service, clock)
    advance(clock, days=3)
    error = refused(
        service,
        errors.DetoxDateInvalid,
        lambda: service.create_plan(
            factories.plan(
                episode_id, START + timedelta(hours=1), detox_completed_on=date(2026, 3, 3)
            )
        ),
    )
    assert error.field == "detox_completed_on"


def test_detox_completed_in_the_future_is_refused(service, clock):
    """Detox dated tomorrow has not happened yet, at the assessment or the plan."""
    refused(
        service,
        errors.DetoxDateInvalid,
        lambda: service.assess(
            factories.assessment(clock.now(), detox_completed_on=date(2026, 3, 3))
        ),
    )
    episode_id = severe_episode(service, clock)
    refused(
        service,
        errors.DetoxDateInvalid,
        lambda: service.create_plan(
            factories.plan(episode_id, advance(clock, hours=1), detox_completed_on=date(2026, 3, 3))
        ),
    )


# ---- step-downs in clinical order ------------------------------------------------

W10_MONDAY = date(2026, 3, 2)  # 2026-W10


def tapering_episode(service: EpisodeService, clock: SimulatedClock) -> UUID:
    """An 18-hour plan stepped down to 12 in W12, everything recorded on W13's Monday."""
    episode_id = active_episode(service, clock, weekly_hours=18, modality_hours={})
    clock.set(ny(W10_MONDAY + timedelta(weeks=3), 12).astimezone(UTC))
    service.step_down(
        factories.step_down(episode_id, ny(W10_MONDAY + timedelta(weeks=2), 10), to_weekly_hours=12)
    )
    return episode_id


def test_a_late_step_down_slots_in_before_a_later_one(service, clock):
    """W12 to 12 recorded, then W11 to 15: accepted, from the 18 in effect; 12 stays current."""
    episode_id = tapering_episode(service, clock)
    receipt = service.step_down(
        factories.step_down(episode_id, ny(W10_MONDAY + timedelta(weeks=1), 10), to_weekly_hours=15)
    )
    stored = list(service.history(episode_id))[receipt.version - 1]
    assert stored.payload["from_weekly_hours"] == "18"
    state = service.episode(episode_id)
    assert (state.weekly_hours, state.step_downs, state.last_step_down_week) == (12, 2, "2026-W12")


def test_the_schedule_follows_the_clinical_order_of_step_downs(service, clock):
    """Week targets read 18, 15, 12 although the W11 step-down was recorded last."""
    episode_id = tapering_episode(service, clock)
    service.step_down(
        factories.step_down(episode_id, ny(W10_MONDAY + timedelta(weeks=1), 10), to_weekly_hours=15)
    )
    runner = ViewRunner(service)
    runner.catch_up()
    schedule = episode_schedule(runner.views, str(episode_id), clock.now())
    assert schedule is not None
    targets = [(w.week, w.target_hours) for w in schedule.weeks]
    assert targets == [("2026-W10", 18), ("2026-W11", 15), ("2026-W12", 12), ("2026-W13", 12)]
    assert (schedule.weekly_hours, schedule.level) == (12, "2.1")


def test_a_late_step_down_in_a_week_that_has_one_is_refused_naming_it(service, clock):
    """One step-down per ISO week, whatever order they were recorded in."""
    episode_id = tapering_episode(service, clock)
    error = refused(
        service,
        errors.StepDownAlreadyThisWeek,
        lambda: service.step_down(
            factories.step_down(
                episode_id, ny(W10_MONDAY + timedelta(weeks=2, days=4), 9), to_weekly_hours=9
            )
        ),
    )
    assert "2026-W12 (version 3" in str(error)


def test_a_step_down_on_the_sunday_before_another_weeks_step_down_is_its_own_week(service, clock):
    """Sunday 23:30 in New York is the week before Monday's step-down (W11 vs W12)."""
    episode_id = tapering_episode(service, clock)
    sunday = ny(W10_MONDAY + timedelta(weeks=2) - timedelta(days=1), 23, 30)
    service.step_down(factories.step_down(episode_id, sunday, to_weekly_hours=15))
    assert service.episode(episode_id).step_downs == 2


def test_a_late_step_down_not_below_the_hours_then_in_effect_is_refused(service, clock):
    """At W11 the plan's 18 hours were in effect: 18 is not lower."""
    episode_id = tapering_episode(service, clock)
    error = refused(
        service,
        errors.StepDownNotLower,
        lambda: service.step_down(
            factories.step_down(
                episode_id, ny(W10_MONDAY + timedelta(weeks=1), 10), to_weekly_hours=18
            )
        ),
    )
    assert "below 18" in str(error)


def test_a_late_step_down_that_would_make_the_taper_go_up_is_refused_naming_the_later_one(
    service, clock
):
    """W11 to 12 (or lower) before the recorded W12 step-down to 12 would read 18 -> 9 -> 12."""
    episode_id = tapering_episode(service, clock)
    for hours in (12, 9):
        error = refused(
            service,
            errors.TaperOutOfOrder,
            lambda hours=hours: service.step_down(
                factories.step_down(
                    episode_id, ny(W10_MONDAY + timedelta(weeks=1), 10), to_weekly_hours=hours
                )
            ),
        )
        assert "version 3" in str(error)
        assert error.field == "to_weekly_hours"


def test_a_snapshot_from_before_the_clinical_timeline_loads_from_the_entries(sqlite_url, clock):
    """Older snapshots lack the timeline; the episode is rebuilt from its events instead."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_id = active_episode(service, clock)
        service.record_session(factories.session(episode_id, advance(clock, hours=1)))
        episode = service.repository.get(episode_id)
        old = Episode.Snapshot.take(episode)
        for timeline in TIMELINE:
            del old.state[timeline]
        assert service.snapshots is not None
        service.snapshots.put([old])
    with EpisodeService(sqlite_url, clock=clock) as fresh:
        loaded = fresh.repository.get(episode_id)
        assert "care" not in loaded.__dict__  # the old snapshot is what the library loads
        later = advance(clock, hours=2)
        error = refused(
            fresh,
            errors.DischargeBeforeCare,
            lambda: fresh.discharge(factories.discharge(episode_id, later - timedelta(hours=3))),
        )
        assert "version 3 SessionAttended" in str(error)
