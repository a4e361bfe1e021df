"""Blue/green rebuild: new views built beside the live ones, switched in one transaction."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import timedelta

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain.weeks import iso_week
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import planned_episodes
from projections.runner import ViewRunner, open_views
from projections.schedule import program_schedule
from tests.cli import iop
from tests.conftest import START


def program(url: str, episodes: int) -> SimulatedClock:
    """``episodes`` planned episodes, each with a few sessions; the views caught up."""
    clock = SimulatedClock(START, tick=timedelta(seconds=1))
    with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
        ids = planned_episodes(service, clock, episodes, "MRN-O")
        service.record_roster([factories.session(i, clock.now(), minutes=60) for i in ids * 3])
        ViewRunner(service).catch_up()
    return clock


class Reader(threading.Thread):
    """Polls the week's schedule and the episode rows, noting the fewest it ever sees."""

    def __init__(self, url: str, week: str) -> None:
        super().__init__()
        self.url, self.week = url, week
        self.stop = threading.Event()
        self.fewest_scheduled: int | None = None
        self.fewest_episodes: int | None = None
        self.reads = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        with EpisodeService(self.url) as service:
            views = open_views(service)
            while not self.stop.is_set():
                try:
                    scheduled = len(program_schedule(views, self.week))
                    episodes = len(views.episodes())
                except Exception as error:  # noqa: BLE001  (any failed read is what we look for)
                    self.errors.append(error)
                    continue
                self.reads += 1
                if self.fewest_scheduled is None or scheduled < self.fewest_scheduled:
                    self.fewest_scheduled = scheduled
                if self.fewest_episodes is None or episodes < self.fewest_episodes:
                    self.fewest_episodes = episodes


class Writer(threading.Thread):
    """Keeps opening and planning episodes while the rebuild runs."""

    def __init__(self, url: str, clock: SimulatedClock) -> None:
        super().__init__()
        self.url, self.clock = url, clock
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        with EpisodeService(self.url, clock=self.clock, timezone="America/New_York") as service:
            while not self.stop.is_set():
                planned_episodes(service, self.clock, 1, f"MRN-W{self.written:03d}")
                self.written += 1


def test_readers_never_see_fewer_episodes_during_an_online_rebuild(durable_url):
    """A reader polling the schedule while writes go on sees old views or new, never fewer rows."""
    clock = program(durable_url, 40)
    week = iso_week(clock.now(), "America/New_York")
    with EpisodeService(durable_url) as service:
        before = len(program_schedule(open_views(service), week))
        assert before == 40
    reader, writer = Reader(durable_url, week), Writer(durable_url, clock)
    reader.start()
    writer.start()
    try:
        with EpisodeService(durable_url) as service:
            runner = ViewRunner(service, batch_size=50)
            for _ in range(2):  # twice: the second reuses the names the first switched
                assert runner.rebuild_online() >= 40 * 5
    finally:
        writer.stop.set()
        writer.join()
        reader.stop.set()
        reader.join()
    assert reader.errors == []
    assert reader.reads > 0
    assert reader.fewest_scheduled is not None
    assert reader.fewest_scheduled >= before
    assert reader.fewest_episodes is not None
    assert reader.fewest_episodes >= before
    assert writer.written > 0


def test_an_online_rebuild_ends_equal_to_a_plain_rebuild(durable_url):
    """After the switch the views hold what rebuilding from scratch gives, and keep catching up."""
    clock = program(durable_url, 12)
    with EpisodeService(durable_url, clock=clock, timezone="America/New_York") as service:
        runner = ViewRunner(service)
        runner.rebuild_online()
        planned_episodes(service, clock, 2, "MRN-L")
        runner.catch_up()
        online = runner.views.dump()
        assert runner.status().lag == 0
        runner.rebuild()
        assert runner.views.dump() == online
        assert len(online["episodes"]) == 14


def test_an_online_rebuild_in_memory_switches_the_views_whole():
    """The in-memory views are replaced at once, by views equal to a rebuild."""
    clock = SimulatedClock(START, tick=timedelta(seconds=1))
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        planned_episodes(service, clock, 5, "MRN-M")
        runner = ViewRunner(service)
        runner.catch_up()
        assert runner.rebuild_online() == 10
        online = runner.views.dump()
        runner.rebuild()
        assert runner.views.dump() == online


def test_the_cli_rebuilds_online(sqlite_url):
    """rebuild --online exits 0 with the views caught up; --online on another action is usage."""
    program(sqlite_url, 3)
    done = iop("projections", "rebuild", "--online", "--store", sqlite_url)
    assert "lag 0" in done.stdout
    wrong = iop("projections", "status", "--online", "--store", sqlite_url, expect=2)
    assert "--online goes with rebuild" in wrong.stderr


def shadow_tables(path: str) -> list[str]:
    with closing(sqlite3.connect(path.removeprefix("sqlite:///"))) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'iop_next_%'")
        return [name for (name,) in rows.fetchall()]


def test_a_rebuild_stopped_part_way_is_cleared_by_the_next(sqlite_url):
    """Shadow tables left half-built are dropped and built again; none remain after a switch."""
    program(sqlite_url, 4)
    with EpisodeService(sqlite_url) as service:
        runner = ViewRunner(service, batch_size=3)
        left = runner.views.begin_shadow()
        ViewRunner(service, left, batch_size=3).catch_up()  # as if stopped before the switch
        assert shadow_tables(sqlite_url)
        runner.rebuild_online()
        assert shadow_tables(sqlite_url) == []
        online = runner.views.dump()
        runner.rebuild()
        assert runner.views.dump() == online
