"""Contract tests: each reach into eventsourcing's internals (infrastructure.compat) still holds.

When one of these fails after a library upgrade, re-derive the named compat
item from the library's new code before anything else.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
import weakref
from copy import deepcopy
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    ConnectionPoolClosedError,
    ConnectionUnavailableError,
    DatetimeAsISO,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    OperationalError,
    StoredEvent,
    Tracking,
    UUIDAsHex,
)
from eventsourcing.sqlite import (
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
)

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import commands
from iop_episodes.domain.episode import Episode
from iop_episodes.infrastructure import compat
from iop_episodes.infrastructure.postgres import CopyingPostgresApplicationRecorder
from iop_episodes.infrastructure.sqlite import (
    LeanSQLiteAggregateRecorder,
    LeanSQLiteApplicationRecorder,
)
from iop_episodes.testing import factories
from tests.conftest import START, require_postgres


def test_the_library_still_creates_sqlite_connections_as_the_caching_pool_copies() -> None:
    """Item 1: the library's _create_connection is the body StatementCachingPool repeats."""
    fingerprint = compat.source_fingerprint(SQLiteConnectionPool._create_connection)
    assert fingerprint == compat.LIBRARY_CREATE_CONNECTION_SHA256, (
        "eventsourcing changed SQLiteConnectionPool._create_connection: re-derive "
        "compat.StatementCachingPool._create_connection from the new body and update "
        "LIBRARY_CREATE_CONNECTION_SHA256"
    )


def _connection_traits(pool: SQLiteConnectionPool) -> tuple[Any, ...]:
    connection = pool.get_connection(is_writer=True)
    raw = connection._sqlite_conn  # the raw connection, to compare its settings
    traits = (
        raw.isolation_level,
        raw.row_factory,
        raw.execute("PRAGMA journal_mode").fetchone()[0],
        pool.is_journal_mode_wal,
    )
    pool.put_connection(connection)
    pool.close()
    return traits


def test_caching_connections_are_set_up_as_the_librarys_are(tmp_path: Path) -> None:
    """Item 1: same isolation level, row factory and WAL journal as the library's pool."""
    ours = compat.StatementCachingPool(db_name=str(tmp_path / "ours.db"))
    theirs = SQLiteConnectionPool(db_name=str(tmp_path / "theirs.db"))
    traits = _connection_traits(ours)
    assert traits == _connection_traits(theirs)
    assert traits[2] == "wal"


def test_a_datastore_pool_can_be_replaced_before_it_connects(tmp_path: Path) -> None:
    """Item 2: use_pool keeps every setting of the datastore's own pool."""
    datastore = SQLiteDatastore(str(tmp_path / "x.db"), lock_timeout=7, pool_size=3)
    before = datastore.pool
    compat.use_pool(datastore, compat.StatementCachingPool)
    after = datastore.pool
    assert isinstance(after, compat.StatementCachingPool)
    settings = ("db_name", "lock_timeout", "pool_size", "max_overflow", "pool_timeout")
    assert [getattr(after, name) for name in settings] == [
        getattr(before, name) for name in settings
    ]


class Thing(Aggregate):
    class Named(Aggregate.Event):
        name: str

    @staticmethod
    def noop() -> None: ...


def test_events_are_built_as_the_librarys_mapper_builds_them() -> None:
    """Item 3: the library's mapper decodes an event into the same instance dict."""
    thing = Thing()
    thing.trigger_event(Thing.Named, name="x")
    event = thing.collect_events()[-1]
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper: Mapper[Any] = Mapper(transcoder=transcoder)
    decoded = mapper.to_domain_event(mapper.to_stored_event(event))
    built = compat.construct_event(Thing.Named, dict(vars(decoded)))
    assert vars(decoded) == vars(event)
    assert type(built) is Thing.Named
    assert built == decoded


def test_tracking_is_read_and_recorded_inside_the_callers_transaction(tmp_path: Path) -> None:
    """Item 4: position_in and record_position work in one transaction that can roll back."""
    recorder = SQLiteTrackingRecorder(SQLiteDatastore(str(tmp_path / "t.db")))
    recorder.create_table()
    with recorder.datastore.transaction(commit=True) as cursor:
        assert compat.position_in(recorder, cursor, "Up") == 0
        compat.record_position(recorder, cursor, Tracking("Up", 5))
        assert compat.position_in(recorder, cursor, "Up") == 5
    assert recorder.max_tracking_id("Up") == 5

    def record_then_fail() -> None:
        with recorder.datastore.transaction(commit=True) as cursor:
            compat.record_position(recorder, cursor, Tracking("Up", 9))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        record_then_fail()
    assert recorder.max_tracking_id("Up") == 5


def test_plain_cursors_return_tuples(tmp_path: Path) -> None:
    """Item 5: the library's cursor wrapper still exposes its sqlite3 cursor."""
    datastore = SQLiteDatastore(str(tmp_path / "p.db"))
    with datastore.transaction(commit=False) as cursor, compat.plain_sqlite_cursor(cursor) as raw:
        assert isinstance(raw, sqlite3.Cursor)
        raw.execute("SELECT 1, 'a'")
        assert raw.fetchall() == [(1, "a")]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_storing_an_episode_writes_what_the_librarys_save_writes(
    store: str, tmp_path: Path
) -> None:
    """The service's _store (events, cache, due snapshot) stores what Application.save stores.

    On SQLite the snapshot goes in the events' transaction (item 10).
    """
    stored: list[list[Any]] = []
    for use_library_save in (False, True):
        clock = SimulatedClock(START)
        url = (
            "memory://" if store == "memory" else f"sqlite:///{tmp_path / f'{use_library_save}.db'}"
        )
        with EpisodeService(url, clock=clock) as service:
            episode = Episode.assess(
                commands.Assess.model_validate(
                    {**factories.assessment(clock.now()), "program_timezone": "UTC"}
                ),
                episode_id=UUID(int=7),
                now=clock.now(),
            )
            episode.create_plan(
                commands.CreatePlan.model_validate(
                    factories.plan(episode.id, clock.now() + timedelta(hours=1))
                ),
                clock.now() + timedelta(hours=2),
            )
            for day in range(18):  # 20 entries: both snapshot at version 20
                moment = clock.now() + timedelta(days=day, hours=3)
                session = factories.session(episode.id, moment)
                episode.record_session(commands.RecordSession.model_validate(session), moment)
            if use_library_save:
                service.save(deepcopy(episode))
            else:
                service._store(deepcopy(episode))
            events = service.recorder.select_events(episode.id)
            assert service.snapshots is not None
            snapshots = service.snapshots.recorder.select_events(episode.id)
            stored.append([(e.originator_version, e.topic, e.state) for e in (*events, *snapshots)])
    assert stored[0] == stored[1]
    assert len(stored[0]) == 21  # 20 entries and the snapshot at version 20


@pytest.mark.postgres
def test_the_postgres_recorder_still_notifies_its_channel_on_insert(postgres_url: str) -> None:
    """Item 6: a connection listening where the recorder says is notified when events commit."""
    clock = SimulatedClock(START, tick=timedelta(seconds=1))
    with (
        EpisodeService(postgres_url, clock=clock) as listener,
        compat.listening_for_inserts(listener.recorder) as connection,
    ):
        assert connection is not None
        list(connection.notifies(timeout=0.1))  # the channel is per database: others' inserts too
        with EpisodeService(postgres_url, clock=clock) as writer:
            writer.assess(factories.assessment(clock.now()))
        notices = list(connection.notifies(timeout=5, stop_after=1))
        assert notices, "no NOTIFY within 5 s of an insert"
        assert {n.channel for n in notices} == {listener.recorder.channel_name}  # type: ignore[attr-defined]


def test_stores_without_notifications_give_no_listening_connection(tmp_path: Path) -> None:
    """Item 6: SQLite and memory stores have nothing to listen on."""
    for url in (f"sqlite:///{tmp_path / 'n.db'}", "memory://"):
        with EpisodeService(url) as service, compat.listening_for_inserts(service.recorder) as c:
            assert c is None


def _application_recorder(
    tmp_path: Path, lock_timeout: int | None = None, *, kept: bool = True, **pool: Any
) -> Any:
    """A lean recorder writing on a kept connection (item 10) or a checkout per write (item 7)."""
    datastore = SQLiteDatastore(
        str(tmp_path / "lean.db"), lock_timeout=lock_timeout, pre_ping=not kept, **pool
    )
    recorder = LeanSQLiteApplicationRecorder(datastore)
    assert (recorder._kept is not None) == kept
    recorder.create_table()
    return recorder


WRITE_PATHS = pytest.mark.parametrize("path", ["kept", "checkout"])


FIRST_ID = UUID(int=1)


def _row(version: int, originator_id: UUID = FIRST_ID) -> StoredEvent:
    return StoredEvent(originator_id, version, "t", b"{}")


@WRITE_PATHS
def test_a_lean_insert_of_a_taken_version_raises_the_librarys_integrity_error(
    tmp_path: Path, path: str
) -> None:
    """Items 7, 10: a unique violation is the library's IntegrityError and the batch rolls back."""
    recorder = _application_recorder(tmp_path, kept=path == "kept")
    assert recorder.insert_events([_row(1), _row(2)]) == [1, 2]
    with pytest.raises(IntegrityError) as raised:
        recorder.insert_events([_row(1, UUID(int=2)), _row(2)])
    assert not isinstance(raised.value, sqlite3.Error)
    assert [e.originator_version for e in recorder.select_events(UUID(int=2))] == []
    with pytest.raises(IntegrityError):  # a single row takes a path of its own
        recorder.insert_events([_row(2)])
    assert recorder.insert_events([_row(3), _row(1, UUID(int=2))]) == [3, 4]
    assert [n.id for n in recorder.select_notifications(1, 10)] == [1, 2, 3, 4]


@WRITE_PATHS
def test_a_lean_insert_waits_out_the_lock_timeout_then_raises_the_librarys_error(
    tmp_path: Path, path: str
) -> None:
    """Items 7, 10: BEGIN IMMEDIATE on a locked store waits the datastore's timeout, then fails."""
    recorder = _application_recorder(tmp_path, lock_timeout=1, kept=path == "kept")
    holder = sqlite3.connect(tmp_path / "lean.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(OperationalError) as raised:
        recorder.insert_events([_row(1)])
    assert time.monotonic() - started >= 0.9
    assert not isinstance(raised.value, sqlite3.Error)
    holder.rollback()
    assert recorder.insert_events([_row(1)]) == [1]
    holder.close()


def test_the_sqlite_store_writes_through_the_lean_recorder(tmp_path: Path) -> None:
    """Item 7: the service's SQLite recorder is the lean one, on the library's datastore."""
    with EpisodeService(f"sqlite:///{tmp_path / 's.db'}") as service:
        assert isinstance(service.recorder, LeanSQLiteApplicationRecorder)
        assert isinstance(service.recorder.datastore.pool, compat.StatementCachingPool)
        assert service.recorder._kept is not None  # item 10: a file store keeps its writer


def test_a_stores_snapshots_are_written_on_its_events_kept_writer(tmp_path: Path) -> None:
    """Item 10: one kept connection serves both recorders; errors are still the library's."""
    with EpisodeService(f"sqlite:///{tmp_path / 's.db'}") as service:
        assert service.snapshots is not None
        snapshots = service.snapshots.recorder
        assert isinstance(snapshots, LeanSQLiteAggregateRecorder)
        assert snapshots._kept is not None
        assert snapshots._kept is service.recorder._kept
        assert snapshots.insert_events([_row(1)]) is None
        with pytest.raises(IntegrityError) as raised:
            snapshots.insert_events([_row(1)])
        assert not isinstance(raised.value, sqlite3.Error)
        assert [e.originator_version for e in snapshots.select_events(FIRST_ID)] == [1]
        assert service.recorder.insert_events([_row(1)]) == [1]  # the other table, same writer


def test_the_pools_writer_lock_is_the_one_a_writer_checkout_holds(tmp_path: Path) -> None:
    """Item 10: get_connection(is_writer=True) holds _writer_lock until the connection returns."""
    pool = SQLiteConnectionPool(db_name=str(tmp_path / "w.db"))
    writer = pool.get_connection(is_writer=True)
    assert not pool._writer_lock.acquire(blocking=False), (
        "eventsourcing's pool no longer holds _writer_lock for a writer: re-derive "
        "compat.KeptWriter from the new ConnectionPool.get_connection"
    )
    pool.put_connection(writer)
    assert pool._writer_lock.acquire(blocking=False)
    pool._writer_lock.release()
    pool.close()


def test_a_kept_writer_waits_for_a_library_writer_then_raises_the_pools_error(
    tmp_path: Path,
) -> None:
    """Item 10: behind a writer checked out of the pool, a write waits pool_timeout, then fails."""
    recorder = _application_recorder(tmp_path, pool_timeout=0.5)
    pool = recorder.datastore.pool
    holder = pool.get_connection(is_writer=True)
    started = time.monotonic()
    with pytest.raises(ConnectionUnavailableError, match="waiting for return of writer"):
        recorder.insert_events([_row(1)])
    assert time.monotonic() - started >= 0.45
    done: list[Any] = []
    writer = threading.Thread(target=lambda: done.append(recorder.insert_events([_row(1)])))
    writer.start()
    writer.join(0.2)
    assert done == [], "the kept writer did not wait for the pool's writer"
    pool.put_connection(holder)
    writer.join(5)
    assert done == [[1]]


def test_a_kept_writer_uses_one_pooled_connection_until_a_write_fails(tmp_path: Path) -> None:
    """Item 10: one connection stays checked out; a failed write hands it back to the pool."""
    recorder = _application_recorder(tmp_path)
    pool = recorder.datastore.pool
    recorder.insert_events([_row(1)])
    kept = recorder._kept._connection
    assert recorder.insert_events([_row(2), _row(3)]) == [2, 3]
    assert recorder._kept._connection is kept
    assert pool.num_in_use == 1
    with pytest.raises(IntegrityError):
        recorder.insert_events([_row(3)])
    assert pool.num_in_use == 0  # rolled back and returned, as a checkout would be
    assert recorder.insert_events([_row(4)]) == [4]
    assert pool.num_in_use == 1


def test_kept_writes_from_many_threads_get_their_own_log_positions(tmp_path: Path) -> None:
    """Item 10: threads take turns on the kept connection; each write's positions are its rows'."""
    recorder = _application_recorder(tmp_path)
    returned: dict[int, list[int]] = {}

    def write(thread: int) -> None:
        for batch in range(20):
            rows = [_row(2 * batch + 1, UUID(int=thread)), _row(2 * batch + 2, UUID(int=thread))]
            for position, row in zip(
                recorder.insert_events(rows[: 1 + batch % 2]), rows, strict=False
            ):
                returned[position] = [thread, row.originator_version]

    threads = [threading.Thread(target=write, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stored = {
        n.id: [UUID(str(n.originator_id)).int, n.originator_version]
        for n in recorder.select_notifications(1, 1000)
    }
    assert len(stored) == 8 * 30
    assert returned == stored
    assert recorder.datastore.pool.num_in_use == 1


def test_optional_rows_go_in_the_same_transaction_or_roll_back_alone(tmp_path: Path) -> None:
    """Item 10: snapshots beside events; a taken snapshot version rolls back only the snapshots."""
    with EpisodeService(f"sqlite:///{tmp_path / 's.db'}") as service:
        assert service.snapshots is not None
        events, snapshots = service.recorder, service.snapshots.recorder
        assert events.insert_events_with([_row(1)], snapshots, [_row(1)]) is True
        assert events.insert_events_with([_row(2)], snapshots, [_row(1), _row(2)]) is False
        assert [e.originator_version for e in events.select_events(FIRST_ID)] == [1, 2]
        assert [e.originator_version for e in snapshots.select_events(FIRST_ID)] == [1]
        with pytest.raises(IntegrityError):  # a conflict on the events stores neither
            events.insert_events_with([_row(2)], snapshots, [_row(3)])
        assert [e.originator_version for e in snapshots.select_events(FIRST_ID)] == [1]
        assert service.recorder.datastore.pool.num_in_use == 0  # the failed write gave it back
        assert events.insert_events([_row(3)]) == [3]


def test_a_kept_writer_is_closed_with_its_pool(tmp_path: Path) -> None:
    """Item 10: the pool closes the kept connection; a write then fails as a checkout does."""
    recorder = _application_recorder(tmp_path)
    recorder.insert_events([_row(1)])
    kept = recorder._kept._connection
    recorder.datastore.close()
    assert kept.closed
    with pytest.raises(ConnectionPoolClosedError):
        recorder.insert_events([_row(2)])


def test_a_kept_writer_only_where_a_checkout_does_nothing_more(tmp_path: Path) -> None:
    """Item 10: in-memory databases, max_age and pre_ping keep item 7's checkout per write."""
    file = str(tmp_path / "k.db")
    assert compat.KeptWriter.suits(SQLiteConnectionPool(db_name=file))
    assert not compat.KeptWriter.suits(SQLiteConnectionPool(db_name=":memory:"))
    assert not compat.KeptWriter.suits(SQLiteConnectionPool(db_name=file, max_age=60))
    assert not compat.KeptWriter.suits(SQLiteConnectionPool(db_name=file, pre_ping=True))


@pytest.mark.postgres
def test_a_copy_of_a_taken_version_raises_the_librarys_integrity_error(postgres_url: str) -> None:
    """Item 8: COPY returns the rows' log positions; a unique violation rolls the batch back."""
    require_postgres()
    with EpisodeService(postgres_url) as service:
        recorder = service.recorder
        assert isinstance(recorder, CopyingPostgresApplicationRecorder)
        assert recorder.insert_events([_row(1), _row(2)]) == [1, 2]
        with pytest.raises(IntegrityError) as raised:
            recorder.insert_events([_row(1, UUID(int=2)), _row(2)])
        assert not isinstance(raised.value, psycopg.Error)
        assert recorder.select_events(UUID(int=2)) == []
        positions = recorder.insert_events([_row(3), _row(1, UUID(int=2))])
        assert positions == [n.id for n in recorder.select_notifications(3, 10)]
        stored = [(n.originator_version, n.state) for n in recorder.select_notifications(1, 10)]
        assert stored == [(1, b"{}"), (2, b"{}"), (3, b"{}"), (1, b"{}")]


@pytest.mark.postgres
def test_one_event_in_one_round_trip_keeps_the_librarys_errors(postgres_url: str) -> None:
    """Item 9: one event comes back with its position; a taken version is IntegrityError."""
    require_postgres()
    with EpisodeService(postgres_url) as service:
        recorder = service.recorder
        assert recorder.insert_events([_row(1)]) == [1]
        for _ in range(3):  # more failures than the pool has connections: each one is rolled back
            with pytest.raises(IntegrityError) as raised:
                recorder.insert_events([_row(1)])
            assert not isinstance(raised.value, psycopg.Error)
        state = bytes(range(256))  # every byte value survives the client-side quoting
        [position] = recorder.insert_events([StoredEvent(FIRST_ID, 2, "t\u2028'\"", state)])
        [notification] = recorder.select_notifications(position, 1)
        assert (notification.originator_version, notification.topic, notification.state) == (
            2,
            "t\u2028'\"",
            state,
        )


@pytest.mark.postgres
def test_a_copy_waits_for_the_table_lock_as_the_librarys_insert_does(postgres_url: str) -> None:
    """Item 8: a COPY behind another writer's table lock commits after it, in log order."""
    require_postgres()
    with EpisodeService(postgres_url) as service:
        recorder = service.recorder
        recorder.insert_events([_row(1)])
        with recorder.datastore.get_connection() as holder, holder.transaction():
            for statement in recorder.lock_table_statements:
                holder.execute(statement)
            done: list[Any] = []
            writer = threading.Thread(target=lambda: done.append(recorder.insert_events([_row(2)])))
            writer.start()
            writer.join(0.5)
            assert done == [], "the COPY did not wait for the table lock"
        writer.join(10)
        assert done == [[2]]


def test_a_datastore_nobody_holds_is_collected_with_its_kept_writer(tmp_path: Path) -> None:
    """Item 10: the shared writer does not keep its datastore (and open connection) alive."""
    recorder = _application_recorder(tmp_path)
    recorder.insert_events([_row(1)])
    kept = recorder._kept._connection
    datastore, pool = weakref.ref(recorder.datastore), weakref.ref(recorder.datastore.pool)
    del recorder
    gc.collect()
    assert datastore() is None
    assert pool() is None
    assert kept.closed  # the library's datastore closes its pool when collected
