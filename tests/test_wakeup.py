"""The runner wakes on PostgreSQL's NOTIFY and falls back to polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from projections.runner import ViewRunner
from projections.wakeup import Notified, Polling, wakeup_for

POLL = 5.0  # seconds: far longer than a notified runner should take


def caught_up_within(runner: ViewRunner, head: int, seconds: float) -> float | None:
    """Seconds until the runner's views reach ``head``, or None if they do not in time."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if runner.views.position() >= head:
            return time.monotonic() - started
        time.sleep(0.01)
    return None


@pytest.fixture
def running(postgres_url, clock) -> Iterator[tuple[EpisodeService, ViewRunner]]:
    with EpisodeService(postgres_url, clock=clock) as service:
        runner = ViewRunner(service)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop, POLL))
        thread.start()
        try:
            yield service, runner
        finally:
            stop.set()
            thread.join(timeout=POLL + 5)


def test_a_runner_on_postgres_projects_a_new_event_long_before_its_next_poll(running, clock):
    """Each of five commands is in the views well under a second later, the poll being 5 s."""
    service, runner = running
    episode_id = active_episode(service, clock)
    assert caught_up_within(runner, service.recorder.max_notification_id() or 0, POLL) is not None
    time.sleep(0.3)  # the runner is now waiting, not catching up
    for minutes in (60, 90, 120, 60, 90):
        service.record_session(
            factories.session(episode_id, advance(clock, hours=1), minutes=minutes)
        )
        lag = caught_up_within(runner, service.recorder.max_notification_id() or 0, 1.0)
        assert lag is not None, "not projected within a second: the runner did not wake"


def test_postgres_wakeup_listens_and_other_stores_poll(postgres_url, sqlite_url):
    """PostgreSQL gets a LISTEN wakeup; SQLite and memory poll."""
    with EpisodeService(postgres_url) as service, wakeup_for(service) as wakeup:
        assert isinstance(wakeup, Notified)
    for url in (sqlite_url, "memory://"):
        with EpisodeService(url) as service, wakeup_for(service) as wakeup:
            assert isinstance(wakeup, Polling)


class BrokenConnection:
    """A listening connection whose server has gone away."""

    def notifies(self, **_: object) -> Iterator[object]:
        msg = "server closed the connection unexpectedly"
        raise OSError(msg)


def test_a_lost_listening_connection_falls_back_to_the_poll_interval():
    """The wait still returns after its interval, and later waits poll."""
    wakeup = Notified(BrokenConnection())
    started = time.monotonic()
    wakeup.wait(threading.Event(), 0.3)
    assert 0.25 <= time.monotonic() - started < 2
    assert wakeup.listening is False


class QuietConnection:
    """A listening connection on which nothing is ever notified."""

    def notifies(self, *, timeout: float, **_: object) -> Iterator[object]:
        time.sleep(timeout)
        return iter(())


def test_a_listening_runner_stops_promptly_when_told():
    """Setting stop ends a wait on a quiet channel long before its interval."""
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    wakeup = Notified(QuietConnection())
    started = time.monotonic()
    wakeup.wait(stop, POLL)
    assert time.monotonic() - started < 1
    assert wakeup.listening is True
