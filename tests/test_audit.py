"""The auditor's history: order, links, late entries, as-of replay and exports."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain.episode import Episode
from iop_episodes.domain.state import EpisodeState
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from projections import audit
from projections.audit import FIELDS
from projections.runner import ViewRunner
from tests.conftest import START
from tests.program import Program
from tests.strategies import histories


def corrected_history(service: EpisodeService, clock: SimulatedClock):
    episode_id = active_episode(service, clock)
    session_time = advance(clock, hours=1)
    service.record_session(factories.session(episode_id, session_time))
    advance(clock, days=2)
    service.record_session(factories.session(episode_id, session_time, minutes=60))
    service.correct_entry(factories.correction(episode_id, clock.now(), target_version=4))
    runner = ViewRunner(service)
    runner.catch_up()
    return episode_id, runner


def test_history_is_in_version_order_with_corrections_linked_both_ways(service, clock):
    """The correction points at v4 and v4 lists the correction."""
    episode_id, runner = corrected_history(service, clock)
    entries = audit.history(runner.views, str(episode_id))
    assert [e.event_type for e in entries] == [
        "Assessed",
        "PlanCreated",
        "SessionAttended",
        "SessionAttended",
        "EntryCorrected",
    ]
    assert entries[4].corrects == 4
    assert entries[3].corrected_by == (5,)
    assert entries[2].corrected_by == ()


def test_entries_recorded_over_a_day_late_are_flagged(service, clock):
    """The session charted two days after it happened is a late entry."""
    episode_id, runner = corrected_history(service, clock)
    late = [e.version for e in audit.history(runner.views, str(episode_id)) if e.late]
    assert late == [4]


def test_a_late_entry_is_one_recorded_more_than_a_day_after_it_happened(service, clock):
    """Exactly 24 hours is on time; a second more is late."""
    episode_id = active_episode(service, clock)
    happened = advance(clock, hours=1)
    advance(clock, hours=24)
    on_time = service.record_session(factories.session(episode_id, happened))
    advance(clock, seconds=1)
    late = service.record_session(factories.session(episode_id, happened, minutes=60))
    entries = {e.originator_version: e for e in service.history(episode_id)}
    assert not entries[on_time.version].is_late_entry
    assert entries[late.version].is_late_entry


def test_entries_carry_actor_times_payload_and_chain(service, clock):
    """Each entry says who recorded what, when it happened and when it was recorded."""
    episode_id, runner = corrected_history(service, clock)
    entry = audit.history(runner.views, str(episode_id))[2]
    stored = list(service.history(episode_id))[2]
    assert (entry.actor_id, entry.actor_role) == ("c.adams", "counselor")
    assert entry.payload == stored.payload
    assert entry.chain == stored.chain
    assert entry.recorded_at.endswith("Z")


def test_history_up_to_a_version_or_a_recorded_time(service, clock):
    """--version and --as-of cut the history where the store's replay does."""
    episode_id, runner = corrected_history(service, clock)
    assert len(audit.history(runner.views, str(episode_id), version=3)) == 3
    first_two = START + timedelta(hours=1)
    assert [e.version for e in audit.history(runner.views, str(episode_id), as_of=first_two)] == [
        1,
        2,
    ]


def test_jsonl_export_has_one_object_per_entry_in_a_stable_field_order(service, clock):
    """Every line is JSON with the documented fields in the documented order."""
    episode_id, runner = corrected_history(service, clock)
    lines = audit.to_jsonl(audit.history(runner.views, str(episode_id))).splitlines()
    assert len(lines) == 5
    assert all(list(json.loads(line)) == list(FIELDS) for line in lines)


@given(history=histories(clients=2, max_steps=25))
def test_state_as_of_a_version_or_time_equals_the_state_built_from_that_prefix(history):
    """Replaying to version v, or to a recorded time, equals folding the first entries."""
    clock = SimulatedClock(START)
    with EpisodeService("memory://", clock=clock) as service:
        program = Program(service, clock, clients=2)
        program.apply(history)
        for episode_id in program.episodes:
            entries = list(service.history(episode_id))
            episode = None
            for version, entry in enumerate(entries, start=1):
                episode = entry.mutate(episode)
                assert isinstance(episode, Episode)
                expected = EpisodeState.of(episode)
                assert service.episode(episode_id, version=version) == expected
                later = [e for e in entries[version:] if e.timestamp == entry.timestamp]
                if not later:  # the last entry recorded at that moment
                    assert service.episode(episode_id, as_of=entry.timestamp) == expected
