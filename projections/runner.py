"""Keeping the views up to date: catch up, run, rebuild, status.

The runner reads the episode store's notification log from the views'
tracked position, a page at a time, and hands each page to the views as one
transaction. That works on every backend (SQLite has no subscription), and
a crash between two pages loses nothing: the next run starts after the
last committed page.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    PersistenceError,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment

from iop_episodes.application.entrylog import EntryPage, entries_after
from iop_episodes.application.service import EpisodeService
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
REBUILD_BATCH = 5000
"""A rebuild projects bigger batches: fewer transactions and commits over the whole log."""
CREATE_ATTEMPTS = 5
Progress = Callable[[int, int], None]

_memory_views: weakref.WeakKeyDictionary[EpisodeService, MemoryEpisodeViews] = (
    weakref.WeakKeyDictionary()
)


def open_views(
    service: EpisodeService, env: dict[str, str] | None = None, *, create: bool = True
) -> EpisodeViews:
    """The views that follow this service's store, in the same database.

    ``create`` makes their tables when missing; without it, tables that are
    missing show when the views are first read.
    """
    backend = service.store.backend
    if backend == "memory":
        return _memory_views.setdefault(service, MemoryEpisodeViews())
    factory = InfrastructureFactory.construct(
        Environment(
            "EpisodeViews",
            {**(env or service.store.env), "CREATE_TABLE": "y" if create else "n"},
        )
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


class ViewsUntrusted(Exception):
    """The views and their tracked position disagree: only a rebuild repairs them."""


@dataclass(frozen=True)
class Status:
    position: int
    head: int
    projected: int | None = None
    """Entries in the audit view (one per projected event), when counted."""

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)

    @property
    def past_head(self) -> bool:
        """Tracked beyond the last stored event: the views follow another store's log."""
        return self.position > self.head

    @property
    def behind_views(self) -> bool:
        """The views hold more entries than their position covers: it was moved back."""
        return self.projected is not None and self.projected > self.position

    @property
    def needs_rebuild(self) -> bool:
        return self.past_head or self.behind_views


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
        return Status(self.views.position(), head, self.views.audit_count())

    def catch_up(self, progress: Progress | None = None) -> int:
        """Project everything recorded so far; returns how many events.

        Raises ``ViewsUntrusted`` when the tracked position is past the
        store's head, or when the views already hold entries after it.
        """
        done = 0
        head = self.service.recorder.max_notification_id() or 0
        if self.views.position() > head:
            raise ViewsUntrusted(
                f"the views' tracked position {self.views.position()} is past the store's "
                f"last event {head}: they follow another store's log"
            )
        while True:
            after = self.views.position()
            page = self._page_after(after)
            if page is None:
                return done
            try:
                self.views.project(page.entries, Tracking(self.views.upstream, page.end), after)
            except ViewsMoved:
                continue  # another runner projected these; carry on from where it got
            except (IntegrityError, sqlite3.IntegrityError, KeyError) as error:
                raise ViewsUntrusted(
                    f"the views already hold entries after their tracked position {after} "
                    f"({type(error).__name__}): the position was moved back"
                ) from error
            done += page.read
            if progress is not None:
                progress(page.end, max(head, page.end))

    def _page_after(self, after: int) -> EntryPage | None:
        """The entries after ``after``, less any whose seal does not hold: logged, never projected.

        Skipping keeps the views (and the step-down job that reads them)
        going for every other episode; ``iop audit verify`` names the entry.
        """
        page = entries_after(self.service, after, self.batch_size)
        for refused in page.refused if page is not None else ():
            LOG.warning("not projected: %s", refused)
        return page

    def rebuild(self, progress: Progress | None = None) -> int:
        """Forget the views and project the whole log again."""
        self.views.reset()
        batch = max(self.batch_size, REBUILD_BATCH)
        return ViewRunner(self.service, self.views, batch_size=batch).catch_up(progress)

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
                page = self._page_after(after)
                if page is None:
                    return done
                shadow.project_in(cursor, page.entries, Tracking(shadow.upstream, page.end), after)
                done += page.read

        return built + self.views.switch_to(shadow, finish)

    def run(
        self,
        stop: threading.Event,
        poll_seconds: float = 1.0,
        on_catch_up: Callable[[int], None] | None = None,
    ) -> None:
        """Catch up, then keep catching up until ``stop`` is set.

        Between catch-ups the runner waits for the store's NOTIFY on
        PostgreSQL (``projections.wakeup``), for ``poll_seconds`` at most; on
        SQLite and in memory it polls. ``on_catch_up`` hears how many events
        each catch-up that found some projected. A database that is busy or
        briefly unreachable is logged and retried: each batch commits whole,
        so nothing is lost.
        """
        with wakeup_for(self.service) as wakeup:
            while not stop.is_set():
                try:
                    projected = self.catch_up()
                    if projected and on_catch_up is not None:
                        on_catch_up(projected)
                except (OperationalError, InterfaceError) as error:
                    LOG.warning("catch-up paused, retrying: %s", error)
                wakeup.wait(stop, poll_seconds)


def reading_views(service: EpisodeService, notice: Callable[[str], None]) -> EpisodeViews:
    """Views that reflect the whole store, for a command that only reads.

    The stored views when they are current, or can be caught up (a
    read-only service still lets the views' own tables be written when the
    database allows it); otherwise the views are built in memory from the
    store for this command alone, and ``notice`` is told why. Nothing is
    created: no view tables, no files.
    """
    if service.store.backend == "memory":
        views = open_views(service)
        ViewRunner(service, views).catch_up()
        return views
    reason = "the views cannot be read"
    places = [service.store.views_env]  # read-write if the database allows, then read-only
    if service.store.env != service.store.views_env:
        places.append(service.store.env)
    for env in places:
        try:
            views = open_views(service, env, create=False)
            ViewRunner(service, views).catch_up()
        except ViewsUntrusted as error:
            reason = f"{error}; run iop projections rebuild to repair them"
            break
        except (PersistenceError, sqlite3.Error) as error:  # the views' batches use sqlite3 itself
            reason = f"the views cannot be caught up here ({_first_line(error)})"
            continue
        return views
    notice(f"reading the store directly: {reason}")
    views = MemoryEpisodeViews()
    ViewRunner(service, views).catch_up()
    return views


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
