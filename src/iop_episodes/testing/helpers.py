"""Episodes in given states, for tests, harnesses and embedders."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import notifications
from iop_episodes.testing import factories


def stored_count(service: EpisodeService) -> int:
    return sum(1 for _ in notifications(service))


def advance(clock: SimulatedClock, **delta: float) -> datetime:
    """Move the clock forward and return the new now."""
    clock.advance(timedelta(**delta))
    return clock.now()


def open_episode(service: EpisodeService, clock: SimulatedClock, **assessment: Any) -> UUID:
    return service.assess(factories.assessment(clock.now(), **assessment)).episode_id


def active_episode(service: EpisodeService, clock: SimulatedClock, **plan: Any) -> UUID:
    episode_id = open_episode(service, clock)
    service.create_plan(factories.plan(episode_id, advance(clock, hours=1), **plan))
    return episode_id


def planned_episodes(
    service: EpisodeService, clock: SimulatedClock, count: int, client_prefix: str
) -> list[UUID]:
    """``count`` episodes, each assessed and given the default plan a minute later."""
    ids = []
    for n in range(count):
        episode_id = open_episode(service, clock, client_ref=f"{client_prefix}{n:05d}")
        service.create_plan(factories.plan(episode_id, advance(clock, minutes=1)))
        ids.append(episode_id)
    return ids


def due_program(
    service: EpisodeService, clock: SimulatedClock, episodes: int, weeks: int = 5
) -> list[UUID]:
    """Planned episodes (12 h) with ``weeks`` full weeks of attendance and clean screens.

    The clock must stand on a Monday morning; it ends on the Monday after.
    """
    ids = [
        service.assess(factories.assessment(clock.now(), client_ref=f"MRN-D{n:05d}")).episode_id
        for n in range(episodes)
    ]
    monday = advance(clock, minutes=30)
    for episode_id in ids:
        service.create_plan(factories.plan(episode_id, monday, modality_hours={}))
    for week in range(weeks):
        for day in (0, 2, 4):
            moment = monday + timedelta(weeks=week, days=day, hours=3)
            clock.set(max(clock.now(), moment + timedelta(hours=4)))
            service.record_roster([factories.session(e, moment, minutes=240) for e in ids])
            if day == 2:
                for episode_id in ids:
                    service.record_screen(factories.screen(episode_id, moment))
    clock.set(monday + timedelta(weeks=weeks))
    return ids
