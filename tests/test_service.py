"""The embedding service: idempotent retries, conflicts, rosters and reading."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from pydantic import ValidationError

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import MAX_ATTEMPTS, EpisodeService
from iop_episodes.audit.integrity import verify_episode
from iop_episodes.domain import errors
from iop_episodes.domain.commands import Actor, RecordSession
from iop_episodes.infrastructure.mapping import SNAPSHOT_TOPIC
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance, open_episode, stored_count
from tests.conftest import START


def test_retried_command_returns_the_first_result_and_stores_nothing(service, clock):
    """Same command_id, same command: same receipt, nothing new stored."""
    episode_id = active_episode(service, clock)
    command = factories.session(episode_id, advance(clock, hours=1), command_id="s-1")
    first = service.record_session(command)
    before = stored_count(service)
    advance(clock, minutes=5)
    again = service.record_session(command)
    assert (again.episode_id, again.version, again.replayed) == (
        first.episode_id,
        3,
        True,
    )
    assert stored_count(service) == before


def test_retried_assessment_returns_the_same_episode(service, clock):
    """An assessment retried with its command_id does not open a second episode."""
    command = factories.assessment(clock.now(), command_id="intake-77")
    first = service.assess(command)
    again = service.assess(command)
    assert again.episode_id == first.episode_id
    assert again.replayed
    assert stored_count(service) == 1


def test_reused_command_id_with_other_content_is_refused(service, clock):
    """One command_id names one command; a different one under it is an error."""
    episode_id = active_episode(service, clock)
    now = advance(clock, hours=1)
    service.record_session(factories.session(episode_id, now, command_id="s-1"))
    with pytest.raises(errors.IdempotencyKeyReused) as raised:
        service.record_session(factories.session(episode_id, now, command_id="s-1", minutes=60))
    assert raised.value.field == "command_id"


def test_retry_after_state_moved_on_still_replays(service, clock):
    """A step-down retried after it took effect is replayed, not re-judged."""
    episode_id = active_episode(service, clock)
    command = factories.step_down(episode_id, advance(clock, days=28), command_id="sd-1")
    service.step_down(command)
    assert service.step_down(command).replayed


def test_retry_is_recognised_by_a_fresh_service(sqlite_url, clock):
    """Receipts live in the store, so a restarted service still replays."""
    with EpisodeService(sqlite_url, clock=clock) as first:
        episode_id = active_episode(first, clock)
        command = factories.session(episode_id, advance(clock, hours=1), command_id="s-9")
        first.record_session(command)
    with EpisodeService(sqlite_url, clock=clock) as second:
        assert second.record_session(command).replayed
        assert stored_count(second) == 3


# ---- conflicts between two service instances on one store -----------------------


class RacingClock:
    """A clock that lets a rival write first the next ``times`` it is read.

    The service reads its clock once per attempt, after loading the episode
    and before deciding, so each armed read is a rival winning the race.
    """

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock
        self.races: list[Callable[[], object]] = []

    def arm(self, times: int, rival_write: Callable[[], object]) -> None:
        self.races = [rival_write] * times

    def now(self) -> datetime:
        if self.races:
            self.races.pop()()
        return self.clock.now()


def test_conflict_reloads_and_decides_again(durable_url, clock):
    """A writer that loses the race reloads, re-decides and stores after the rival."""
    racing = RacingClock(clock)
    with (
        EpisodeService(durable_url, clock=racing) as ours,
        EpisodeService(durable_url, clock=clock) as theirs,
    ):
        episode_id = active_episode(ours, clock)
        now = advance(clock, hours=1)
        rival = factories.session(
            episode_id,
            now,
            actor=factories.THERAPIST,
            modality="individual",
            minutes=60,
        )
        racing.arm(1, lambda: theirs.record_session(rival))
        receipt = ours.record_session(factories.session(episode_id, now))
        assert receipt.version == 4
        kinds = [
            e.payload["modality"] for e in ours.history(episode_id) if e.originator_version > 2
        ]
        assert kinds == ["individual", "group"]
        assert verify_episode(ours, episode_id) == []


def test_conflict_on_every_attempt_raises_and_stores_nothing(durable_url, clock):
    """After the bounded retries the command fails with Conflict and stores nothing."""
    racing = RacingClock(clock)
    with (
        EpisodeService(durable_url, clock=racing) as ours,
        EpisodeService(durable_url, clock=clock) as theirs,
    ):
        episode_id = active_episode(ours, clock)
        now = advance(clock, hours=1)
        racing.arm(
            MAX_ATTEMPTS,
            lambda: theirs.record_session(factories.session(episode_id, now, minutes=30)),
        )
        with pytest.raises(errors.Conflict):
            ours.record_session(factories.session(episode_id, now, minutes=90))
        minutes = [e.payload.get("minutes") for e in ours.history(episode_id)][2:]
        assert minutes == [30] * MAX_ATTEMPTS


# ---- rosters ---------------------------------------------------------------------


def test_roster_records_many_episodes_in_one_call(service, clock):
    """A day's attendance for several clients is stored in one transaction."""
    episodes = [
        active_episode(
            service,
            clock,
        )
        for _ in range(3)
    ]
    now = advance(clock, hours=2)
    receipts = service.record_roster(
        [factories.session(e, now, minutes=m) for e in episodes for m in (120, 60)]
    )
    assert [r.version for r in receipts] == [3, 4] * 3
    assert stored_count(service) == 3 * 2 + 6


def test_roster_with_one_bad_item_stores_none_of_it(service, clock):
    """One refused item refuses the whole roster and names the item."""
    good = active_episode(service, clock)
    unplanned = open_episode(service, clock, client_ref="MRN-0009")
    now = advance(clock, hours=2)
    before = stored_count(service)
    with pytest.raises(errors.PlanRequired) as raised:
        service.record_roster([factories.session(good, now), factories.session(unplanned, now)])
    assert "roster item 1" in raised.value.__notes__[0]
    assert stored_count(service) == before


def test_a_roster_item_that_fails_validation_is_named_by_its_index(service, clock):
    """The roster is validated in one call; the error's location names the item and field."""
    episode_id = active_episode(service, clock)
    now = advance(clock, hours=2)
    before = stored_count(service)
    bad = {**factories.session(episode_id, now), "minutes": 0}
    with pytest.raises(ValidationError) as raised:
        service.record_roster([factories.session(episode_id, now), bad])
    assert [error["loc"] for error in raised.value.errors()] == [(1, "minutes")]
    assert stored_count(service) == before


def test_roster_accepts_typed_commands(service, clock):
    """Typed commands and mappings are interchangeable."""
    episode_id = active_episode(service, clock)
    command = RecordSession(
        episode_id=episode_id,
        actor=Actor(id="c.adams", role="counselor"),
        occurred_at=advance(clock, hours=1),
        modality="group",
        minutes=90,
    )
    assert service.record_roster([command])[0].version == 3


# ---- reading -----------------------------------------------------------------------


def test_state_as_of_a_version_and_a_recorded_time(service, clock):
    """Reading as of version 2 or as of a recorded moment gives the past state."""
    episode_id = active_episode(service, clock)
    after_plan = clock.now()
    service.step_down(factories.step_down(episode_id, advance(clock, days=28)))
    assert service.episode(episode_id).weekly_hours == 9
    assert service.episode(episode_id, version=2).weekly_hours == 12
    assert service.episode(episode_id, as_of=after_plan).version == 2
    with pytest.raises(errors.EpisodeNotFound):
        service.episode(episode_id, as_of=after_plan - timedelta(days=1))


def test_recording_times_come_from_the_injected_clock(service, clock):
    """Every recorded timestamp is the simulated clock's, not the machine's."""
    episode_id = active_episode(service, clock)
    assert [e.timestamp for e in service.history(episode_id)] == [
        clock.now() - timedelta(hours=1),
        clock.now(),
    ]


def test_unknown_episode_is_reported(service):
    """Reading an episode that does not exist raises EpisodeNotFound."""
    with pytest.raises(errors.EpisodeNotFound):
        service.episode(UUID(int=7))


def roster_to_version_20(service: EpisodeService, clock: SimulatedClock, episodes: int) -> list:
    """Active episodes (version 2), then one roster that takes each to version 20."""
    episode_ids = [active_episode(service, clock) for _ in range(episodes)]
    now = advance(clock, hours=1)
    service.record_roster(
        [factories.session(e, now, minutes=30) for e in episode_ids for _ in range(18)]
    )
    return episode_ids


def snapshot_versions(service: EpisodeService, episode_id: UUID) -> list[int]:
    assert service.snapshots is not None
    return [s.originator_version for s in service.snapshots.get(episode_id)]


def test_every_snapshot_a_roster_makes_due_is_stored(sqlite_url):
    """A roster taking twelve episodes past their 20th entry snapshots each at version 20."""
    clock = SimulatedClock(START)
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_ids = roster_to_version_20(service, clock, 12)
        assert [snapshot_versions(service, e) for e in episode_ids] == [[20]] * 12
    with EpisodeService(sqlite_url, clock=clock) as fresh:
        assert {fresh.episode(e).version for e in episode_ids} == {20}


def test_a_snapshot_that_cannot_be_written_costs_only_its_own_episode(sqlite_url, caplog):
    """The roster is stored, the other episodes are snapshotted, the blocked one replays."""
    clock = SimulatedClock(START)
    with EpisodeService(sqlite_url, clock=clock) as service:
        assert service.snapshots is not None
        blocked = active_episode(service, clock)
        service.snapshots.recorder.insert_events(  # a row where its snapshot would go
            [StoredEvent(blocked, 20, SNAPSHOT_TOPIC, b"not a snapshot")]
        )
        others = [active_episode(service, clock) for _ in range(3)]
        now = advance(clock, hours=1)
        receipts = service.record_roster(
            [factories.session(e, now, minutes=30) for e in [blocked, *others] for _ in range(18)]
        )
        assert {receipt.version for receipt in receipts[17::18]} == {20}
        assert [snapshot_versions(service, e) for e in others] == [[20]] * 3
    assert f"snapshot of {blocked} not taken" in caplog.text
    with EpisodeService(sqlite_url, clock=clock) as fresh:
        assert fresh.episode(blocked).version == 20


def test_long_episode_loads_from_a_snapshot(sqlite_url):
    """Crossing each 20th entry snapshots the episode as it stands; loads start there."""
    clock = SimulatedClock(START)
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_id = active_episode(service, clock)
        now = advance(clock, hours=1)
        # 78 short sessions fit in one local day (24 hours at most since issue 12).
        service.record_roster([factories.session(episode_id, now, minutes=5)] * 60)
        for _ in range(18):
            service.record_session(factories.session(episode_id, now, minutes=5))
        assert service.snapshots is not None
        snapshots = list(service.snapshots.get(episode_id))
        assert [s.originator_version for s in snapshots] == [62, 80]
        assert snapshots[0].timestamp == now  # the clock's, not the machine's
    with EpisodeService(sqlite_url, clock=clock) as fresh:
        assert fresh.episode(episode_id).version == 80
        assert (
            fresh.repository.get(episode_id).__dict__["chain"]
            == list(fresh.history(episode_id))[-1].chain
        )
