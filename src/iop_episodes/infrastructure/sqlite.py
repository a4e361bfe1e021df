"""The library's SQLite persistence, with connections that keep their prepared statements.

eventsourcing 9.5 opens SQLite connections with a statement cache of one,
so every command prepared its ``BEGIN`` and ``INSERT`` again (about 35 µs
of CPU on this project's benchmark machine, a fifth of a command). This
factory is the library's ``SQLiteFactory`` whose pool caches more
(``compat.StatementCachingPool``) and whose application recorder writes a
command's rows in one lean transaction (``compat.insert_immediately``), on
one pooled connection kept for the store's writes (``compat.KeptWriter``,
shared with the snapshot recorder); nothing else changes (WAL mode, lock
timeout, the pool's writer lock, the errors raised).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteDatastore,
    SQLiteFactory,
)
from eventsourcing.utils import Environment, EnvType

from iop_episodes.infrastructure.compat import (
    KeptWriter,
    StatementCachingPool,
    insert_immediately,
    kept_writer,
    use_pool,
)


def _rows(stored_events: Sequence[StoredEvent]) -> list[tuple[Any, ...]]:
    """The library's insert parameters of each stored event."""
    return [
        (
            s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
            s.originator_version,
            s.topic,
            s.state,
        )
        for s in stored_events
    ]


class LeanSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """The library's recorder, writing a command's or a roster's rows in one lean transaction.

    ``compat.insert_immediately``: one ``executemany`` of the library's own
    statement between ``BEGIN IMMEDIATE`` and ``COMMIT``, on a pooled
    connection, errors mapped as the library maps them. Where the pool
    allows (``compat.KeptWriter``), that connection is kept for the next write.
    """

    def __init__(self, datastore: SQLiteDatastore, *args: Any, **kwargs: Any) -> None:
        super().__init__(datastore, *args, **kwargs)
        self._kept: KeptWriter | None = kept_writer(datastore)

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> Sequence[int] | None:
        rows = _rows(stored_events)
        if not rows:
            return []
        if self._kept is None or self._kept.pool is not self.datastore.pool:
            last = insert_immediately(self.datastore, self.insert_events_statement, rows)
        else:
            last = self._kept.insert(self.insert_events_statement, rows)
        # Under the write lock each insert takes the largest rowid plus one,
        # so the rows' positions in the log run up to the last one.
        return list(range(last - len(rows) + 1, last + 1))

    def insert_events_with(
        self,
        stored_events: Sequence[StoredEvent],
        snapshots: SQLiteAggregateRecorder,
        stored_snapshots: Sequence[StoredEvent],
    ) -> bool:
        """Insert the events and, in their transaction, the snapshots; whether those are stored.

        Snapshots only speed loading up: one that cannot be written (or a
        snapshot recorder on another writer) leaves the events stored alone.
        """
        kept = self._kept
        shared = isinstance(snapshots, LeanSQLiteAggregateRecorder) and snapshots.kept is kept
        if kept is None or kept.pool is not self.datastore.pool or not shared:
            self.insert_events(stored_events)
            return False
        optional = (snapshots.insert_events_statement, _rows(stored_snapshots))
        return kept.insert_with(self.insert_events_statement, _rows(stored_events), optional)[1]


class LeanSQLiteAggregateRecorder(SQLiteAggregateRecorder):
    """The library's snapshot recorder, writing on the store's kept connection where it has one."""

    def __init__(self, datastore: SQLiteDatastore, *args: Any, **kwargs: Any) -> None:
        super().__init__(datastore, *args, **kwargs)
        self._kept: KeptWriter | None = kept_writer(datastore)

    @property
    def kept(self) -> KeptWriter | None:
        """The store's kept writer this recorder writes on (None: the library's path)."""
        return self._kept

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if self._kept is None or self._kept.pool is not self.datastore.pool:
            return super().insert_events(stored_events, **kwargs)
        rows = _rows(stored_events)
        if rows:
            self._kept.insert(self.insert_events_statement, rows)
        return None


class StatementCachingSQLiteFactory(SQLiteFactory):
    application_recorder_class = LeanSQLiteApplicationRecorder
    aggregate_recorder_class = LeanSQLiteAggregateRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        use_pool(self.datastore, StatementCachingPool)
