"""Keeping the views up to date: catch up, run, rebuild, status.

The runner reads the episode store's notification log from the views'
tracked position, a page at a time, and hands each page to the views as one
transaction. That works on every backend (SQLite has no subscription), and
a crash between two pages loses nothing: the next run starts after the
last committed page.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    InternalError,
    Notification,
    OperationalError,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment

from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.domain.events import EpisodeEvent
from projections.sealing import Sealer
from projections.views import (
    EpisodeViews,
    MemoryEpisodeViews,
    SQLiteEpisodeViews,
    SqlViewsMixin,
    ViewsMoved,
)
from projections.wakeup import wakeup_for

LOG = logging.getLogger(__name__)
BATCH = 500
CREATE_ATTEMPTS = 5
Progress = Callable[[int, int], None]

_memory_views: weakref.WeakKeyDictionary[EpisodeService, MemoryEpisodeViews] = (
    weakref.WeakKeyDictionary()
)


def open_views(service: EpisodeService) -> EpisodeViews:
    """The views that follow this service's store, in the same database."""
    backend = service.store.backend
    if backend == "memory":
        return _memory_views.setdefault(service, MemoryEpisodeViews())
    factory = InfrastructureFactory.construct(
        Environment("EpisodeViews", {**service.store.env, "CREATE_TABLE": "y"})
    )
    views: SqlViewsMixin
    if backend == "postgresql":
        from projections.pgviews import PostgresEpisodeViews  # noqa: PLC0415  (psycopg is an extra)

        postgres_views = cast("PostgresEpisodeViews", _created(factory, PostgresEpisodeViews))
        postgres_views.lock_with(service.advisory_lock_key("views"))
        views = postgres_views
    else:
        views = cast("SQLiteEpisodeViews", _created(factory, SQLiteEpisodeViews))
    if service.mapper.cipher is not None:
        views.seal_with(Sealer(service.mapper.cipher))
    return views


def _created(factory: InfrastructureFactory[Any], view_class: type[Any]) -> TrackingRecorder:
    """Create the view tables; processes starting together may race to do it.

    The library's first tracking row (its table migration marker) is then
    written twice and the loser sees an IntegrityError: by then the tables
    exist, so the next attempt finds them.
    """
    for attempt in range(CREATE_ATTEMPTS):
        try:
            created: TrackingRecorder = factory.tracking_recorder(view_class)
        except (IntegrityError, OperationalError, InternalError):
            if attempt == CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
        else:
            return created
    raise AssertionError  # unreachable: the loop returns or raises


@dataclass(frozen=True)
class Status:
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class ViewRunner:
    """Projects the episode log into the views, exactly once."""

    def __init__(
        self,
        service: EpisodeService,
        views: EpisodeViews | None = None,
        *,
        batch_size: int = BATCH,
    ) -> None:
        self.service = service
        self.views = views or open_views(service)
        self.batch_size = batch_size

    def status(self) -> Status:
        head = self.service.recorder.max_notification_id() or 0
        return Status(self.views.position(), head)

    def catch_up(self, progress: Progress | None = None) -> int:
        """Project everything recorded so far; returns how many events."""
        done = 0
        head = self.service.recorder.max_notification_id() or 0
        while True:
            after = self.views.position()
            page = self.service.recorder.select_notifications(after + 1, self.batch_size)
            if not page:
                return done
            batch = self._verified(page)
            try:
                self.views.project(batch, Tracking(self.views.upstream, page[-1].id), after)
            except ViewsMoved:
                continue  # another runner projected these; carry on from where it got
            done += len(page)
            if progress is not None:
                progress(page[-1].id, max(head, page[-1].id))

    def _verified(self, page: Sequence[Notification]) -> list[EpisodeEvent]:
        """The page's entries, less any whose seal does not hold: logged, never projected.

        Skipping keeps the views (and the step-down job that reads them)
        going for every other episode; ``iop audit verify`` names the entry.
        """
        batch = []
        for notification in page:
            try:
                event = self.service.mapper.to_domain_event(notification)
            except errors.EntryIntegrityError as error:
                LOG.warning("not projected: %s", error)
                continue
            batch.append(cast("EpisodeEvent", event))
        return batch

    def rebuild(self, progress: Progress | None = None) -> int:
        """Forget the views and project the whole log again."""
        self.views.reset()
        return self.catch_up(progress)

    def rebuild_online(self, progress: Progress | None = None) -> int:
        """Rebuild the views beside the live ones while writes go on, then switch at once.

        New tables are built and caught up from the start of the log while
        the live views go on serving (and being caught up); then one
        transaction that holds off every other batch brings the new tables
        to the head and gives them the live tables' names. Readers see the
        old views or the new, never an empty or half-built one. Returns how
        many events the new views projected.
        """
        shadow = self.views.begin_shadow()
        built = ViewRunner(self.service, shadow, batch_size=self.batch_size).catch_up(progress)

        def finish(cursor: Any) -> int:
            done = 0
            while True:
                after = shadow.position_in(cursor)
                page = self.service.recorder.select_notifications(after + 1, self.batch_size)
                if not page:
                    return done
                batch = [
                    cast("EpisodeEvent", self.service.mapper.to_domain_event(notification))
                    for notification in page
                ]
                shadow.project_in(cursor, batch, Tracking(shadow.upstream, page[-1].id), after)
                done += len(page)

        return built + self.views.switch_to(shadow, finish)

    def run(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Catch up, then keep catching up until ``stop`` is set.

        Between catch-ups the runner waits for the store's NOTIFY on
        PostgreSQL (``projections.wakeup``), for ``poll_seconds`` at most; on
        SQLite and in memory it polls. A database that is busy or briefly
        unreachable is logged and retried: each batch commits whole, so
        nothing is lost.
        """
        with wakeup_for(self.service) as wakeup:
            while not stop.is_set():
                try:
                    self.catch_up()
                except (OperationalError, InterfaceError) as error:
                    LOG.warning("catch-up paused, retrying: %s", error)
                wakeup.wait(stop, poll_seconds)
