"""Catch-up from plain rows gives the same views as decoding the library's notifications."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent, Tracking

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import split_sealed
from iop_episodes.entrypoints.demo import ProgramSimulation, demo_clock
from projections.candidates import ScheduleCandidates
from projections.runner import REBUILD_BATCH, ViewRunner
from projections.views import EpisodeViews
from tests import tamper
from tests.conftest import require_postgres

FORMAT1_STORE = Path(__file__).parent / "fixtures" / "format1_store.json"
INTEGRITY_KEY = base64.b64encode(bytes(range(32))).decode()
CIPHER_KEY = base64.b64encode(bytes(range(32, 64))).decode()
SESSION_TOPIC = "iop_episodes.domain.events:SessionAttended"


def demo(service: EpisodeService, clock: SimulatedClock) -> None:
    candidates = ScheduleCandidates(service)
    ProgramSimulation(service, clock, clients=6, weeks=3, seed=5, candidates=candidates).run()


def add_format1_episode(service: EpisodeService) -> None:
    """Rows the first release wrote (the library's JSON transcoding of each event)."""
    document = json.loads(FORMAT1_STORE.read_text())
    service.recorder.insert_events(
        [
            StoredEvent(
                originator_id=UUID(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=json.dumps(row["state"]).encode(),
            )
            for row in document["events"]
        ]
    )


def add_unsealed_entry(url: str, service: EpisodeService) -> None:
    """An entry without its seal at the head of the demo's first episode (to be skipped)."""
    episode_id = UUID(service.recorder.select_notifications(1, 1)[0].originator_id.hex)
    rows = tamper.event_rows(url, episode_id)
    _, _, state = rows[-1]
    link, _, canonical = split_sealed(state)
    unsealed = b'{"_chain":"' + link.encode() + b'",' + canonical[1:]
    tamper.append(url, episode_id, len(rows) + 1, SESSION_TOPIC, unsealed)


def built_from_notifications(service: EpisodeService, views: EpisodeViews) -> dict[str, list]:
    """Views built the former way: the library's notifications through ``to_domain_event``."""
    shadow = views.begin_shadow()
    after = 0
    while page := service.recorder.select_notifications(after + 1, 500):
        batch = []
        for notification in page:
            try:
                batch.append(service.mapper.to_domain_event(notification))
            except errors.EntryIntegrityError:
                continue
        shadow.project(batch, Tracking(shadow.upstream, page[-1].id), after)
        after = page[-1].id
    return shadow.dump()


def assert_same_views_both_ways(service: EpisodeService) -> None:
    runner = ViewRunner(service)
    runner.rebuild()
    assert runner.status().lag == 0
    rows_way = runner.views.dump()
    assert sum(len(rows) for rows in rows_way.values()) > 100
    assert rows_way == built_from_notifications(service, runner.views)


@pytest.mark.parametrize("form", ["current with format 1", "sealed", "encrypted and compressed"])
def test_views_from_plain_rows_equal_views_from_notifications_on_sqlite(
    form, sqlite_url, monkeypatch
):
    """Every stored form decodes from plain rows to byte-identical views (a bad seal is skipped)."""
    if form == "encrypted and compressed":
        monkeypatch.setenv("IOP_CIPHER_KEY", CIPHER_KEY)
    key = INTEGRITY_KEY if form == "sealed" else None
    clock = demo_clock()
    with EpisodeService(sqlite_url, clock=clock, integrity_key=key) as service:
        demo(service, clock)
        if form == "current with format 1":
            add_format1_episode(service)
        if form == "sealed":
            add_unsealed_entry(sqlite_url, service)
    with EpisodeService(sqlite_url, clock=clock, integrity_key=key) as service:
        assert_same_views_both_ways(service)


@pytest.mark.postgres
def test_views_from_plain_rows_equal_views_from_notifications_on_postgres(postgres_url):
    """PostgreSQL rows (ids as 36 characters) decode to the same views, format 1 included."""
    require_postgres()
    clock = demo_clock()
    with EpisodeService(postgres_url, clock=clock) as service:
        demo(service, clock)
        add_format1_episode(service)
        assert_same_views_both_ways(service)


def test_views_from_plain_rows_equal_views_from_notifications_in_memory():
    """The in-memory store reads its notifications and decodes them the same way."""
    clock = demo_clock()
    with EpisodeService("memory://", clock=clock) as service:
        demo(service, clock)
        add_format1_episode(service)
        runner = ViewRunner(service)
        runner.rebuild()
        rows_way = runner.views.dump()
        shadow = runner.views.begin_shadow()
        page = service.recorder.select_notifications(1, 100_000)
        events = [service.mapper.to_domain_event(n) for n in page]
        shadow.project(events, Tracking(shadow.upstream, page[-1].id), 0)
        assert rows_way == shadow.dump()
        assert len(rows_way["audit"]) == len(page)


def test_a_rebuild_projects_in_batches_of_at_least_5000_events(sqlite_url):
    """A runner of 10-event batches catches up page by page but rebuilds in one batch here."""
    clock = demo_clock()
    with EpisodeService(sqlite_url, clock=clock) as service:
        demo(service, clock)
        head = service.recorder.max_notification_id() or 0
        assert 50 < head < REBUILD_BATCH
        runner = ViewRunner(service, batch_size=10)
        pages: list[int] = []
        runner.rebuild(lambda position, _: pages.append(position))
        assert pages == [head]
        runner.views.reset()
        pages.clear()
        assert runner.catch_up(lambda position, _: pages.append(position)) == head
        assert len(pages) == -(-head // 10)
