"""iop-episodes: the event-sourced core of intensive outpatient programs."""

from iop_episodes.application.clock import Clock, SimulatedClock, SystemClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import commands, errors
from iop_episodes.domain.episode import Episode, Receipt
from iop_episodes.domain.state import EpisodeState

__all__ = [
    "Clock",
    "Episode",
    "EpisodeService",
    "EpisodeState",
    "Receipt",
    "SimulatedClock",
    "SystemClock",
    "commands",
    "errors",
]
