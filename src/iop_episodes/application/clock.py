"""Clocks the service reads every time it needs "now".

Tests and simulations inject a ``SimulatedClock`` so that every recorded
timestamp, and so every stored byte, is reproducible.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(tz=UTC)


class SimulatedClock:
    """A clock that moves only when told to; each reading can tick a little."""

    def __init__(self, start: datetime, tick: timedelta = timedelta(0)) -> None:
        if start.tzinfo is None:
            msg = "SimulatedClock start must be timezone-aware"
            raise ValueError(msg)
        self._now = start
        self._tick = tick

    def now(self) -> datetime:
        moment = self._now
        self._now += self._tick
        return moment

    def set(self, moment: datetime) -> None:
        if moment < self._now:
            msg = f"a simulated clock does not go back ({moment} < {self._now})"
            raise ValueError(msg)
        self._now = moment

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)
