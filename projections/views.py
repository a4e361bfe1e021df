"""The materialised views and their tracking, on memory, SQLite and PostgreSQL.

Each backend is one of the library's tracking recorders extended with the
view tables: a batch of events and the tracking position after it are
written in one transaction, so every event is projected exactly once.
"""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any, Self

from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from iop_episodes.application.service import EpisodeService
from iop_episodes.application.tracking import position_in, record_position
from iop_episodes.domain.events import EpisodeEvent
from projections.projector import project
from projections.rows import AuditRow, EntryRow, EpisodeRow, StepDownRow
from projections.sealing import Sealer
from projections.sql import (
    ADDED_COLUMNS,
    Cursor,
    Dialect,
    SqlQueries,
    SqlViewTransaction,
    added_column_statements,
    clear_statements,
    create_statements,
    drop_statements,
    swap_statements,
)

UPSTREAM = EpisodeService.name
"""The application whose notification log the views follow."""
SHADOW_UPSTREAM = f"{UPSTREAM} (online rebuild)"
"""The tracking name of views being built beside the live ones."""
SHADOW_PREFIX = "next_"
"""Added to the live tables' prefix for the tables of views being built."""

Activity = tuple[str, str, str, int, int]


class ViewsMoved(Exception):
    """Another runner committed batches since this one read the position."""


class EpisodeViews(TrackingRecorder, ABC):
    """Both views plus the position in the episode log they reflect."""

    upstream: str = UPSTREAM
    """The tracking name of the position these views reflect (a rebuild's shadow has its own)."""

    @abstractmethod
    def project(self, events: Sequence[EpisodeEvent], tracking: Tracking, after: int) -> None:
        """Apply the events that follow position ``after`` and record ``tracking``.

        All or nothing. Raises ``ViewsMoved`` when another runner has moved
        the views past ``after`` meanwhile: the caller reads the position again.
        """

    @abstractmethod
    def reset(self) -> None:
        """Forget every row and the tracked position (before a rebuild)."""

    def project_in(
        self,
        cursor: Any,  # noqa: ARG002  (memory has no transactions)
        events: Sequence[EpisodeEvent],
        tracking: Tracking,
        after: int,
    ) -> None:
        """``project`` inside the transaction ``switch_to`` holds (memory has none)."""
        self.project(events, tracking, after)

    def position_in(self, cursor: Any) -> int:  # noqa: ARG002  (memory has no transactions)
        """The tracked position as the transaction ``switch_to`` holds sees it."""
        return self.position()

    @abstractmethod
    def begin_shadow(self) -> Self:
        """Empty views beside these (new tables, a tracking name of their own) to build up."""

    @abstractmethod
    def switch_to(self, shadow: Self, finish: Callable[[Any], int]) -> int:
        """Make ``shadow`` these views, all at once; returns what ``finish`` projected.

        In one transaction that holds off every other batch: ``finish(cursor)``
        brings the shadow up to the head, the shadow's tables take the live
        tables' names, and the live position becomes the shadow's. A reader
        sees the old views or the new, never neither.
        """

    def position(self) -> int:
        return self.max_tracking_id(self.upstream) or 0

    @abstractmethod
    def episodes(self, episode_ids: Iterable[str] | None = None) -> list[EpisodeRow]: ...

    @abstractmethod
    def activity(
        self, episode_id: str | None = None, weeks: Sequence[str] | None = None
    ) -> list[Activity]: ...

    @abstractmethod
    def step_downs(self, episode_id: str | None = None) -> list[StepDownRow]: ...

    @abstractmethod
    def audit(self, episode_id: str) -> list[AuditRow]: ...

    @abstractmethod
    def audit_links(self) -> dict[str, list[tuple[int, str]]]:
        """Every episode's (version, chain) pairs as the audit view holds them."""

    @abstractmethod
    def audit_count(self) -> int:
        """How many entries the audit view holds: one per projected event."""

    @abstractmethod
    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every view table, in key order: for comparing two views."""


class SqlViewsMixin(EpisodeViews, ABC):
    """The parts of the SQLite and PostgreSQL views that are the same."""

    dialect: Dialect
    queries: SqlQueries

    def seal_with(self, sealer: Sealer) -> None:
        """Store sensitive columns encrypted (the store has a cipher)."""
        self.dialect = replace(self.dialect, sealer=sealer)
        self.queries = SqlQueries(self.dialect)

    @abstractmethod
    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Any]: ...

    @abstractmethod
    def _delete_tracking_statement(self) -> tuple[Any, tuple[Any, ...]]: ...

    def project(self, events: Sequence[EpisodeEvent], tracking: Tracking, after: int) -> None:
        with self._transaction(commit=True) as cursor:
            self.project_in(cursor, events, tracking, after)

    def project_in(
        self, cursor: Any, events: Sequence[EpisodeEvent], tracking: Tracking, after: int
    ) -> None:
        """``project`` inside a transaction the caller holds open."""
        moved = self.position_in(cursor)
        if moved != after:
            raise ViewsMoved(f"views at {moved}, batch follows {after}")
        view = SqlViewTransaction(cursor, self.dialect)
        view.prefetch(str(event.originator_id) for event in events)
        for event in events:
            project(event, view)
        view.flush()
        record_position(self, cursor, tracking)

    def position_in(self, cursor: Any) -> int:
        """The tracked position as the caller's open transaction sees it."""
        return position_in(self, cursor, self.upstream)

    def reset(self) -> None:
        with self._transaction(commit=True) as cursor:
            for statement in clear_statements(self.dialect):
                cursor.execute(statement)
            cursor.execute(*self._delete_tracking_statement())

    renames_key_indexes = False
    """PostgreSQL names a primary key's index after its table: a switch renames them too."""

    def begin_shadow(self) -> Self:
        twin = copy.copy(self)  # the same connections, other tables and tracking name
        twin.dialect = replace(self.dialect, prefix=self.dialect.prefix + SHADOW_PREFIX)
        twin.queries = SqlQueries(twin.dialect)
        twin.upstream = SHADOW_UPSTREAM
        with self._transaction(commit=True) as cursor:
            for statement in drop_statements(twin.dialect):  # what a stopped rebuild left
                cursor.execute(statement)
            for statement in create_statements(twin.dialect):
                cursor.execute(statement)
            cursor.execute(*twin._delete_tracking_statement())
        return twin

    def switch_to(self, shadow: Self, finish: Callable[[Any], int]) -> int:
        with self._transaction(commit=True) as cursor:
            projected = finish(cursor)
            position = shadow.position_in(cursor)
            for statement in swap_statements(
                self.dialect, shadow.dialect, rename_key_indexes=self.renames_key_indexes
            ):
                cursor.execute(statement)
            cursor.execute(*self._delete_tracking_statement())
            if position:
                record_position(self, cursor, Tracking(self.upstream, position))
            cursor.execute(*shadow._delete_tracking_statement())
        return projected

    def _read(self, query: Any, *args: Any) -> Any:
        with self._transaction(commit=False) as cursor:
            return query(cursor, *args)

    def episodes(self, episode_ids: Iterable[str] | None = None) -> list[EpisodeRow]:
        rows: list[EpisodeRow] = self._read(self.queries.episodes, episode_ids)
        return rows

    def activity(
        self, episode_id: str | None = None, weeks: Sequence[str] | None = None
    ) -> list[Activity]:
        rows: list[Activity] = self._read(self.queries.activity, episode_id, weeks)
        return rows

    def step_downs(self, episode_id: str | None = None) -> list[StepDownRow]:
        rows: list[StepDownRow] = self._read(self.queries.step_downs, episode_id)
        return rows

    def audit(self, episode_id: str) -> list[AuditRow]:
        rows: list[AuditRow] = self._read(self.queries.audit, episode_id)
        return rows

    def audit_links(self) -> dict[str, list[tuple[int, str]]]:
        links: dict[str, list[tuple[int, str]]] = self._read(self.queries.audit_links)
        return links

    def audit_count(self) -> int:
        count: int = self._read(self.queries.audit_count)
        return count

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        tables: dict[str, list[tuple[Any, ...]]] = self._read(self.queries.dump)
        return tables


class SQLiteEpisodeViews(SQLiteTrackingRecorder, SqlViewsMixin):
    """Views in the same SQLite file as the events, in tables named ``iop_*``."""

    dialect = Dialect(placeholder="?", prefix="iop_")
    queries = SqlQueries(dialect)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *create_statements(self.dialect),
        ]

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as cursor:
            existing = {}
            for table in ADDED_COLUMNS:
                cursor.execute(f"PRAGMA table_info({self.dialect.table(table)})")
                existing[table] = {record["name"] for record in cursor.fetchall()}
            added = added_column_statements(self.dialect, existing)
            for statement in added:
                cursor.execute(statement)
            if added:  # rows projected before hold no value there: project everything again
                for statement in clear_statements(self.dialect):
                    cursor.execute(statement)
                cursor.execute(*self._delete_tracking_statement())

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Cursor]:
        if not commit:
            with self.datastore.transaction(commit=False) as cursor:
                yield cursor
            return
        # A batch reads before it writes. In a deferred transaction SQLite
        # refuses that upgrade at once ("database is locked") when another
        # process wrote meanwhile; taking the write lock first lets the busy
        # timeout wait for it instead.
        with self.datastore.get_connection(commit=True) as connection:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    def _delete_tracking_statement(self) -> tuple[Any, tuple[Any, ...]]:
        return ("DELETE FROM tracking WHERE application_name = ?", (self.upstream,))


class MemoryViewTransaction:
    """``ViewTransaction`` over dictionaries, for the in-memory store."""

    def __init__(self, tables: dict[str, dict[Any, Any]]) -> None:
        self.tables = tables

    def episode(self, episode_id: str) -> EpisodeRow | None:
        row: EpisodeRow | None = self.tables["episodes"].get(episode_id)
        return row

    def save_episode(self, row: EpisodeRow) -> None:
        self.tables["episodes"][row.episode_id] = row

    def entry(self, episode_id: str, version: int) -> EntryRow | None:
        row: EntryRow | None = self.tables["entries"].get((episode_id, version))
        return row

    def save_entry(self, row: EntryRow) -> None:
        self.tables["entries"][(row.episode_id, row.version)] = row

    def add_activity(self, episode_id: str, week: str, item: str, count: int, minutes: int) -> None:
        key = (episode_id, week, item)
        old_count, old_minutes = self.tables["activity"].get(key, (0, 0))
        self.tables["activity"][key] = (old_count + count, old_minutes + minutes)

    def add_step_down(self, row: StepDownRow) -> None:
        self.tables["step_downs"][(row.episode_id, row.version)] = row

    def add_audit(self, row: AuditRow) -> None:
        key = (row.episode_id, row.version)
        if key in self.tables["audit"]:
            msg = f"audit entry {key} projected twice"
            raise KeyError(msg)
        self.tables["audit"][key] = row


class MemoryEpisodeViews(EpisodeViews):
    """Views in process memory, beside a ``memory://`` store, with their own tracking."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._positions: dict[str, int] = {}
        self.tables: dict[str, dict[Any, Any]] = self._empty()

    def insert_tracking(self, tracking: Tracking) -> None:
        with self._lock:
            self._track(tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        with self._lock:
            return self._positions.get(application_name)

    def _track(self, tracking: Tracking) -> None:
        known = self._positions.get(tracking.application_name, 0)
        if tracking.notification_id <= known:
            msg = f"tracking position {tracking.notification_id} is not past {known}"
            raise IntegrityError(msg)
        self._positions[tracking.application_name] = tracking.notification_id

    @staticmethod
    def _empty() -> dict[str, dict[Any, Any]]:
        return {name: {} for name in ("episodes", "entries", "activity", "step_downs", "audit")}

    def project(self, events: Sequence[EpisodeEvent], tracking: Tracking, after: int) -> None:
        with self._lock:
            moved = self._positions.get(self.upstream, 0)
            if moved != after:
                raise ViewsMoved(f"views at {moved}, batch follows {after}")
            working = copy.copy({name: dict(table) for name, table in self.tables.items()})
            view = MemoryViewTransaction(working)
            for event in events:
                project(event, view)
            self._track(tracking)
            self.tables = working  # all of the batch, or (on error) none of it

    def reset(self) -> None:
        with self._lock:
            self.tables = self._empty()
            self._positions.pop(self.upstream, None)

    def begin_shadow(self) -> Self:
        twin = type(self)()
        twin.upstream = SHADOW_UPSTREAM
        return twin

    def switch_to(self, shadow: Self, finish: Callable[[Any], int]) -> int:
        with self._lock:
            projected = finish(None)
            self.tables = shadow.tables
            position = shadow.position()
            if position:
                self._positions[self.upstream] = position
            else:
                self._positions.pop(self.upstream, None)
        return projected

    def episodes(self, episode_ids: Iterable[str] | None = None) -> list[EpisodeRow]:
        rows = self.tables["episodes"]
        wanted = sorted(rows) if episode_ids is None else sorted(set(episode_ids) & set(rows))
        return [rows[episode_id] for episode_id in wanted]

    def activity(
        self, episode_id: str | None = None, weeks: Sequence[str] | None = None
    ) -> list[Activity]:
        return [
            (ep, week, item, count, minutes)
            for (ep, week, item), (count, minutes) in sorted(self.tables["activity"].items())
            if (episode_id is None or ep == episode_id) and (weeks is None or week in weeks)
        ]

    def step_downs(self, episode_id: str | None = None) -> list[StepDownRow]:
        return [
            row
            for key, row in sorted(self.tables["step_downs"].items())
            if episode_id is None or key[0] == episode_id
        ]

    def audit(self, episode_id: str) -> list[AuditRow]:
        return [row for key, row in sorted(self.tables["audit"].items()) if key[0] == episode_id]

    def audit_links(self) -> dict[str, list[tuple[int, str]]]:
        links: dict[str, list[tuple[int, str]]] = {}
        for (episode_id, version), row in sorted(self.tables["audit"].items()):
            links.setdefault(episode_id, []).append((version, row.chain))
        return links

    def audit_count(self) -> int:
        return len(self.tables["audit"])

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for name, table in self.tables.items():
            rows = []
            for key, value in sorted(table.items()):
                if name == "activity":
                    rows.append((*key, *value))
                else:  # the columns in field order (astuple deep-copies: slow on a whole store)
                    rows.append(
                        tuple(
                            int(v) if isinstance(v, bool) else v
                            for v in (getattr(value, name) for name in _fields(type(value)))
                        )
                    )
            tables[name] = rows
        return tables


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _fields(row_type: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(row_type)
    if names is None:
        names = _FIELD_NAMES[row_type] = tuple(field.name for field in fields(row_type))
    return names
