"""How a runner waits for new events: PostgreSQL's NOTIFY, else the poll interval.

eventsourcing 9.5's PostgreSQL recorder sends ``NOTIFY <channel>`` in every
transaction that inserts events (``channel_name``: the events table's name),
and PostgreSQL delivers it when that transaction commits. A runner that
LISTENs on that channel wakes as soon as new events are visible instead of
at its next poll. The poll interval stays the upper bound: a lost listening
connection is logged and the runner goes on polling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from iop_episodes.application.notify import listening_for_inserts
from iop_episodes.application.service import EpisodeService

LOG = logging.getLogger(__name__)
LISTEN_SLICE = 0.1  # seconds: how often a waiting runner looks at its stop flag


class Wakeup(Protocol):
    def wait(self, stop: threading.Event, seconds: float) -> None:
        """Return when events may have arrived, ``stop`` is set, or ``seconds`` pass."""


class Polling:
    """No notifications: sleep out the interval."""

    def wait(self, stop: threading.Event, seconds: float) -> None:
        stop.wait(seconds)


class Notified:
    """LISTEN on the store's insert channel; polls again if the connection fails."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.listening = True

    def wait(self, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.listening and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                if self._notified(min(LISTEN_SLICE, remaining)):
                    return
            except Exception as error:  # noqa: BLE001  (any driver failure: fall back to polling)
                LOG.warning("lost the NOTIFY connection, polling instead: %s", error)
                self.listening = False
        stop.wait(max(0.0, deadline - time.monotonic()))

    def _notified(self, timeout: float) -> bool:
        arrived = any(True for _ in self.connection.notifies(timeout=timeout, stop_after=1))
        while arrived and any(True for _ in self.connection.notifies(timeout=0, stop_after=1)):
            pass  # drain what queued meanwhile: one catch-up reads it all
        return arrived


@contextmanager
def wakeup_for(service: EpisodeService) -> Iterator[Wakeup]:
    """A ``Notified`` wakeup on PostgreSQL (one pooled connection held), else ``Polling``."""
    with listening_for_inserts(service.recorder) as connection:
        yield Polling() if connection is None else Notified(connection)
