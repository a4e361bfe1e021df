"""Small helpers shared by the service-level tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from iop_episodes.clock import SimulatedClock
from iop_episodes.integrity import notifications
from iop_episodes.service import EpisodeService
from tests import factories


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
