"""The step-down sweep: once per episode per week, whatever happens to it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import Candidate, run_stepdown_sweep
from iop_episodes.entrypoints.scheduler import SweepJob, parse_cron, run_key
from iop_episodes.infrastructure.sweeplock import MemorySweepGuard
from iop_episodes.testing.helpers import due_program
from projections.candidates import ScheduleCandidates
from projections.runner import ViewRunner
from projections.schedule import step_down_candidates


def step_downs(service: EpisodeService, episode_ids: list[UUID]) -> dict[UUID, list[str]]:
    return {
        e: [
            x.payload["to_weekly_hours"]
            for x in service.history(e)
            if type(x).__name__ == "StepDown"
        ]
        for e in episode_ids
    }


@pytest.fixture
def due(service, clock) -> list[UUID]:
    return due_program(service, clock, episodes=6)


def test_sweep_steps_down_every_due_episode_with_evidence(service, clock, due):
    """Each due episode drops 12 -> 9, recorded by the scheduler with policy and evidence."""
    summary = run_stepdown_sweep(service, ScheduleCandidates(service), clock.now())
    assert summary.counts["stepped-down"] == 6
    assert step_downs(service, due) == {e: ["9"] for e in due}
    entry = next(x for x in service.history(due[0]) if type(x).__name__ == "StepDown")
    assert entry.actor == {"id": "stepdown-scheduler", "role": "scheduler"}
    assert entry.payload["policy"] == {"id": "iop-taper", "version": 1}
    assert len(entry.payload["evidence"]) == 4
    assert entry.command_id == f"stepdown:{due[0]}:2026-W15:iop-taper@1"


def test_the_same_week_twice_records_nothing_the_second_time(service, clock, due):
    """Running the sweep again as of the same week adds no step-down."""
    as_of = clock.now()
    run_stepdown_sweep(service, ScheduleCandidates(service), as_of)
    again = run_stepdown_sweep(service, ScheduleCandidates(service), as_of + timedelta(hours=5))
    assert again.counts["stepped-down"] == 0
    assert step_downs(service, due) == {e: ["9"] for e in due}


def test_a_sweep_stopped_half_way_then_rerun_steps_each_down_once(service, clock, due):
    """Interrupted after three episodes, the rerun finishes the rest and doubles none."""
    stop = threading.Event()
    source = ScheduleCandidates(service)

    class StopAfterThree:
        def candidates(self, as_of: datetime, weeks: int) -> list[Candidate]:
            found = source.candidates(as_of, weeks)
            original = service.step_down
            count = [0]

            def counting(cmd):  # type: ignore[no-untyped-def]
                receipt = original(cmd)
                count[0] += 1
                if count[0] == 3:
                    stop.set()
                return receipt

            service.step_down = counting  # type: ignore[method-assign]
            return found

    first = run_stepdown_sweep(service, StopAfterThree(), clock.now(), stop=stop)
    assert first.interrupted
    assert first.counts["stepped-down"] == 3
    rerun = run_stepdown_sweep(service, source, clock.now())
    assert rerun.counts["stepped-down"] == 3
    assert step_downs(service, due) == {e: ["9"] for e in due}


def test_dry_run_decides_and_records_nothing(service, clock, due):
    """--dry-run reports the decisions and stores no event."""
    summary = run_stepdown_sweep(service, ScheduleCandidates(service), clock.now(), dry_run=True)
    assert summary.counts["stepped-down"] == 6
    assert step_downs(service, due) == {e: [] for e in due}


@pytest.mark.usefixtures("due")
def test_an_error_on_one_episode_never_stops_the_sweep(service, clock):
    """A candidate the store does not know is an error; the others still step down."""
    source = ScheduleCandidates(service)

    class WithAGhost:
        def candidates(self, as_of: datetime, weeks: int) -> list[Candidate]:
            found = source.candidates(as_of, weeks)
            ghost = Candidate(UUID(int=1), found[0].standing, found[0].weeks)
            return [ghost, *found]

    summary = run_stepdown_sweep(service, WithAGhost(), clock.now())
    assert summary.counts["error"] == 1
    assert summary.counts["stepped-down"] == 6
    assert "EpisodeNotFound" in summary.outcomes[0].reason


@pytest.mark.usefixtures("due")
def test_a_projection_behind_the_store_is_not_trusted(service, clock):
    """If the schedule has not seen a newer step-down, the store's episode decides: hold."""
    runner = ViewRunner(service)
    runner.catch_up()
    stale = step_down_candidates(runner.views, clock.now(), 4)
    run_stepdown_sweep(service, ScheduleCandidates(service), clock.now())

    class Frozen:
        def candidates(self, _as_of: datetime, _weeks: int) -> list[Candidate]:
            return [Candidate(UUID(e), s, w) for e, s, w in stale]

    later = run_stepdown_sweep(service, Frozen(), clock.now())
    assert later.counts["held"] == 6
    assert all("since the last change" in o.reason for o in later.outcomes)


def test_cron_fires_twice_in_the_repeated_hour_and_the_second_sweep_records_nothing():
    """1:30 happens twice on 1 November 2026 in New York; one step-down each."""
    tz = ZoneInfo("America/New_York")
    clock = SimulatedClock(datetime(2026, 9, 21, 13, tzinfo=UTC))  # Monday, week 39
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        due = due_program(service, clock, episodes=4)
        trigger = parse_cron("30 1 * * *", "America/New_York")
        first = trigger.get_next_fire_time(None, datetime(2026, 10, 31, 12, tzinfo=tz))
        second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
        assert first.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
        assert second.astimezone(UTC) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
        job = SweepJob(service, ScheduleCandidates(service), MemorySweepGuard())
        results = []
        for fire in (first, second):
            clock.set(fire.astimezone(UTC))
            results.append(job())
        assert [r.counts["stepped-down"] for r in results if r] == [4, 0]
        assert step_downs(service, due) == {e: ["9"] for e in due}


@pytest.mark.usefixtures("due")
def test_a_run_already_swept_is_skipped_by_the_guard(service, clock):
    """The guard's log lets one process sweep each run; the next call says why not."""
    guard = MemorySweepGuard()
    job = SweepJob(service, ScheduleCandidates(service), guard)
    assert job.run(run_key(clock.now())) is not None
    assert job.run(run_key(clock.now())) is None
