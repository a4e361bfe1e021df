"""Whatever order entries are recorded in, the episode is the one clinical order gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.domain.weeks import zone
from iop_episodes.testing import factories
from projections.runner import ViewRunner
from projections.schedule import episode_schedule
from tests.conftest import START
from tests.strategies import ClinicalEvent, clinical_histories

EPISODE = UUID("5b0c1d2e-0000-4000-8000-000000000012")
NEW_YORK = zone("America/New_York")
RECORDED_AT = START + timedelta(days=60)


def moment(event: ClinicalEvent) -> datetime:
    local = START.astimezone(NEW_YORK) + timedelta(days=event.day)
    return local.replace(hour=event.hour, minute=0).astimezone(UTC)


def command(event: ClinicalEvent) -> tuple[str, dict[str, Any]]:
    at = moment(event)
    if event.kind == "session":
        return "record_session", factories.session(EPISODE, at, minutes=event.detail["minutes"])
    if event.kind == "screen":
        return "record_screen", factories.screen(EPISODE, at, results=event.detail["results"])
    if event.kind == "dose":
        return "dispense_medication", factories.dose(EPISODE, at)
    if event.kind == "step_down":
        return "step_down", factories.step_down(EPISODE, at, to_weekly_hours=event.detail["to"])
    return "discharge", factories.discharge(EPISODE, at)


def record(history: list[ClinicalEvent]) -> tuple[set[int], EpisodeService]:
    """Record the history in the order given; returns which indexes were refused."""
    clock = SimulatedClock(START)
    service = EpisodeService("memory://", clock=clock, timezone="America/New_York")
    clock.set(RECORDED_AT)  # every entry is recorded late, all at one time
    service.assess(factories.assessment(START, episode_id=EPISODE))
    service.create_plan(factories.plan(EPISODE, START + timedelta(hours=1)))
    refused = set()
    for index, event in enumerate(history):
        method, payload = command(event)
        try:
            getattr(service, method)(payload)
        except errors.EpisodeRuleError:
            refused.add(index)
    return refused, service


def outcome(service: EpisodeService) -> tuple[dict[str, Any], Any, Any]:
    state = service.episode(EPISODE).model_dump(exclude={"chain"})
    runner = ViewRunner(service)
    runner.catch_up()
    schedule = episode_schedule(runner.views, str(EPISODE), RECORDED_AT)
    assert schedule is not None
    taper = [(step.week, step.to_hours) for step in schedule.taper]
    return state, schedule.weeks, sorted(taper)


@settings(max_examples=40, deadline=None)
@given(history=clinical_histories(), data=st.data())
def test_any_recording_order_gives_the_clinical_orders_entries_state_and_schedule(history, data):
    """Accepted entries, the episode's state and its weekly schedule do not depend on order."""
    order = data.draw(st.permutations(range(len(history))), label="recording order")
    shuffled = [history[index] for index in order]
    refused_in_order, in_order = record(history)
    refused_shuffled, shuffled_service = record(shuffled)
    assert refused_in_order == set()
    assert {order[index] for index in refused_shuffled} == refused_in_order
    assert outcome(shuffled_service) == outcome(in_order)
    in_order.close()
    shuffled_service.close()
