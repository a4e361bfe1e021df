"""What the hour schedule says: weeks, targets, corrections, program rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain.catalog import Level, band
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from projections.runner import ViewRunner
from projections.schedule import (
    episode_schedule,
    program_schedule,
    step_down_candidates,
)


@pytest.fixture
def runner(service: EpisodeService) -> ViewRunner:
    return ViewRunner(service)


def weeks_of(runner: ViewRunner, episode_id, now: datetime) -> dict[str, object]:
    runner.catch_up()
    schedule = episode_schedule(runner.views, str(episode_id), now)
    assert schedule is not None
    return {week.week: week for week in schedule.weeks}


@pytest.mark.parametrize(
    ("plan_day", "late_sunday", "week"),
    [
        # Clocks go back on Sunday 1 November 2026: 23:30 EST is 04:30Z Monday.
        (
            datetime(2026, 10, 26, 14, tzinfo=UTC),
            datetime(2026, 11, 2, 4, 30, tzinfo=UTC),
            "2026-W44",
        ),
        # Clocks go forward on Sunday 8 March 2026: 23:30 EDT is 03:30Z Monday.
        (
            datetime(2026, 3, 2, 14, tzinfo=UTC),
            datetime(2026, 3, 9, 3, 30, tzinfo=UTC),
            "2026-W10",
        ),
    ],
)
def test_late_sunday_session_lands_in_its_local_iso_week(plan_day, late_sunday, week):
    """A session at 23:30 on a daylight-saving Sunday counts for that local week."""
    clock = SimulatedClock(plan_day)
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        episode_id = active_episode(service, clock)
        clock.set(late_sunday + timedelta(hours=1))
        service.record_session(factories.session(episode_id, late_sunday, minutes=90))
        weeks = weeks_of(ViewRunner(service), episode_id, clock.now())
        assert weeks[week].sessions == 1
        assert weeks[week].attended_hours == Decimal("1.5")
        next_monday_week = max(weeks)
        assert next_monday_week > week
        assert weeks[next_monday_week].sessions == 0


def test_voided_session_no_longer_counts_and_amended_counts_as_amended(service, clock, runner):
    """Corrections change the hours attended; the originals stay in the audit view."""
    episode_id = active_episode(service, clock)
    now = advance(clock, hours=1)
    kept = service.record_session(factories.session(episode_id, now, minutes=180)).version
    voided = service.record_session(factories.session(episode_id, now, minutes=60)).version
    service.correct_entry(factories.correction(episode_id, now, target_version=voided))
    service.correct_entry(
        factories.correction(
            episode_id,
            now,
            target_version=kept,
            action="amend",
            amended={"modality": "individual", "minutes": 120},
        )
    )
    (week,) = weeks_of(runner, episode_id, now).values()
    assert week.attended_hours == 2
    assert week.hours_by_modality == {"individual": 2}
    assert week.sessions == 1
    assert len(runner.views.audit(str(episode_id))) == 6


def test_amended_screen_is_reclassified(service, clock, runner):
    """A screen amended from an unexpected positive to negative stops counting against."""
    episode_id = active_episode(service, clock)
    now = advance(clock, hours=1)
    version = service.record_screen(
        factories.screen(episode_id, now, results={"opiates": "positive"})
    ).version
    assert next(iter(weeks_of(runner, episode_id, now).values())).unexpected_positive_screens == 1
    service.correct_entry(
        factories.correction(
            episode_id,
            now,
            target_version=version,
            action="amend",
            amended={"panel": "10-panel", "results": {"opiates": "negative"}},
        )
    )
    (week,) = weeks_of(runner, episode_id, now).values()
    assert (week.unexpected_positive_screens, week.negative_screens) == (0, 1)


def test_prescribed_buprenorphine_positive_is_not_unexpected(service, clock, runner):
    """A client on buprenorphine who tests positive for it has a negative screen."""
    episode_id = active_episode(service, clock)
    now = advance(clock, hours=1)
    service.record_screen(factories.screen(episode_id, now))
    (week,) = weeks_of(runner, episode_id, now).values()
    assert (week.negative_screens, week.unexpected_positive_screens) == (1, 0)


def test_targets_follow_the_taper(service, clock, runner):
    """A step-down lowers the target from its own week on, and the taper records it."""
    episode_id = active_episode(service, clock)
    service.step_down(
        factories.step_down(
            episode_id,
            advance(clock, days=14),
            actor=factories.SCHEDULER,
            policy={"id": "iop-taper", "version": 1},
        )
    )
    runner.catch_up()
    schedule = episode_schedule(runner.views, str(episode_id), advance(clock, days=7))
    assert schedule is not None
    assert [w.target_hours for w in schedule.weeks] == [12, 12, 9, 9]
    (step,) = schedule.taper
    assert (step.from_hours, step.to_hours, step.decided_by_role, step.policy) == (
        12,
        9,
        "scheduler",
        "iop-taper@1",
    )
    assert schedule.weeks[0].partial
    assert not schedule.weeks[1].partial


def test_compliance_is_attended_over_target(service, clock, runner):
    """Nine of twelve hours is 75% compliance."""
    episode_id = active_episode(service, clock)
    now = advance(clock, hours=1)
    for _ in range(3):
        service.record_session(factories.session(episode_id, now, minutes=180))
    (week,) = weeks_of(runner, episode_id, now).values()
    assert (week.attended_hours, week.target_hours, week.compliance) == (
        9,
        12,
        Decimal("0.75"),
    )


def test_program_schedule_lists_active_clients_filterable_by_level(service, clock, runner):
    """One row per client active that week, highest level first, filterable."""
    iop = active_episode(service, clock)
    outpatient = active_episode(service, clock, weekly_hours=9, modality_hours={})
    discharged = active_episode(service, clock)
    unplanned = service.assess(factories.assessment(clock.now(), client_ref="MRN-9")).episode_id
    service.step_down(factories.step_down(outpatient, advance(clock, days=7), to_weekly_hours=6))
    service.discharge(factories.discharge(discharged, advance(clock, days=7)))
    runner.catch_up()
    week = "2026-W13"  # the week after the discharge
    rows = program_schedule(runner.views, week)
    assert [(r.episode_id, r.level) for r in rows] == [
        (str(iop), "2.1"),
        (str(outpatient), "1"),
    ]
    assert [r.episode_id for r in program_schedule(runner.views, week, level="1")] == [
        str(outpatient)
    ]
    assert str(unplanned) not in {r.episode_id for r in rows}
    for row in rows:
        assert band(Level(row.level), "adult").admits(row.weekly_hours)


def test_step_down_candidates_come_with_their_last_weeks(service, clock, runner):
    """The job's query: active episodes and N complete weeks of evidence, no aggregates."""
    episode_id = active_episode(service, clock)
    for _ in range(14):
        service.record_session(factories.session(episode_id, advance(clock, days=2), minutes=240))
    runner.catch_up()
    ((found, standing, weeks),) = step_down_candidates(runner.views, clock.now(), 3)
    assert found == str(episode_id)
    assert standing.weekly_hours == 12
    assert [w.week for w in weeks] == ["2026-W11", "2026-W12", "2026-W13"]
    assert all(w.attended_hours >= 12 for w in weeks)
