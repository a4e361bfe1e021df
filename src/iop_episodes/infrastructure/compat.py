"""Everything that leans on ``eventsourcing`` beyond its documented API, in one place.

The project pins ``eventsourcing>=9.5,<9.6``. Each item below says why it is
needed, and ``tests/test_compat.py`` holds a contract test per item that
fails with a clear message when the library changes underneath, so a minor
release cannot break one of them silently. Nothing else in the project
touches a private name of the library.

1. ``StatementCachingPool``: the library opens SQLite connections with
   ``cached_statements=True``, which ``sqlite3`` reads as a cache of ONE
   statement, so every command prepared its ``BEGIN`` and ``INSERT`` again.
   The pool overrides the library's private ``_create_connection`` with the
   same body and a larger cache; the contract test pins the library's body
   by a fingerprint of its source, so a change there is seen at once.
2. ``use_pool``: ``SQLiteDatastore`` builds its pool itself; the factory
   swaps in the caching pool before any connection is opened.
3. ``construct_event``: the library's mapper builds a decoded event without
   running its ``__init__`` (``object.__new__`` and the instance dict), and
   so does ours, because a frozen dataclass ``__init__`` per stored entry
   costs more than the rest of decoding.
4. ``position_in`` and ``record_position``: a read model writes its rows and
   its tracking position in ONE transaction; the library's SQL tracking
   recorders expose that only as the protected ``_max_tracking_id`` and
   ``_insert_tracking`` (its own documentation's projection examples use
   them the same way).
5. ``plain_sqlite_cursor``: passes over a whole store read plain tuples
   instead of ``sqlite3.Row`` objects, through the library's own cursor
   wrapper's ``sqlite_cursor`` attribute.
6. ``listening_for_inserts``: the PostgreSQL recorder sends ``NOTIFY`` on
   ``channel_name`` in every transaction that inserts events (its own
   subscriptions LISTEN on it); a projection runner LISTENs on one of the
   datastore's pooled connections to wake as soon as events commit.
7. ``insert_immediately``: the library's SQLite application recorder writes
   each event with its own ``execute`` inside three nested context managers
   and a deferred ``BEGIN``. A command or roster instead takes one of the
   datastore's pooled connections (its lock timeout, WAL mode and
   reader-writer interlock unchanged), begins ``IMMEDIATE``, inserts every
   row with one ``executemany`` of the recorder's own statement (one
   ``execute`` for a single row) and commits,
   through a subclass of the library's ``SQLiteTransaction`` so its rollback
   and its mapping of ``sqlite3`` errors to the library's (``IntegrityError``
   above all: conflicts and retries depend on it) hold.
8. ``copy_events``: the PostgreSQL application recorder inserts a batch with
   ``INSERT ... SELECT FROM unnest(<array of its composite type>)``; a
   2,000-row roster goes four times faster with ``COPY``. The copy runs as
   the recorder's own insert does (its ``lock_table_statements``, then
   ``NOTIFY`` on its ``channel_name``, in one transaction on one of the
   datastore's connections, whose context maps psycopg's errors to the
   library's: a unique violation is still its ``IntegrityError``).
9. ``insert_one``: a single command's event goes in ONE round trip instead of
   six: the recorder's ``lock_table_statements``, its ``NOTIFY`` and an
   ``INSERT ... RETURNING notification_id`` between ``BEGIN`` and ``COMMIT``,
   sent as one query by psycopg's client-side binding cursor (which quotes
   the values itself; the server-side binding that the library uses takes
   one statement per query). Same lock, same notification, same errors
   (the datastore's connection context maps them); a failed query leaves the
   transaction aborted, so it is rolled back before the connection returns.
10. ``KeptWriter``: checking a connection out of the library's pool and back
   for every write costs a third as much CPU as the write itself (a
   Python-level semaphore, two conditions and three locks). Writes are one
   at a time anyway (the pool's writer lock), so one pooled connection is
   kept checked out for a store's writes and used under that same writer
   lock (the pool's private ``_writer_lock``, taken with its
   ``pool_timeout`` as ``get_connection(is_writer=True)`` takes it, with the
   same error on a timeout; the pool's semaphore, which only orders
   checkouts, is not taken). The connection is the pool's own (its lock timeout, WAL
   mode, statement cache); the pool closes it with the others on
   ``close()``, after which a write raises the library's
   ``ConnectionPoolClosedError`` as a checkout would. A write that fails is
   rolled back and mapped as in item 7 and its connection goes back to the
   pool, so the next write takes a fresh one. Only where the checkout
   does nothing more: not an in-memory database (its readers and writers
   exclude each other), no ``max_age`` (a kept connection would never age
   out) and no ``pre_ping``; otherwise item 7's path. A store's event and
   snapshot recorders share one (``kept_writer``), so a command's due
   snapshot goes in its events' transaction, under a savepoint: a snapshot
   that cannot be written rolls back alone (``insert_with``).
"""

from __future__ import annotations

import hashlib
import inspect
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from eventsourcing.persistence import (
    ConnectionPoolClosedError,
    ConnectionUnavailableError,
    InterfaceError,
    OperationalError,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteTransaction,
)

STATEMENT_CACHE = 128

LIBRARY_CREATE_CONNECTION_SHA256 = (
    "4635cb356e9ae4ec242c34f322390bc2fa6057f53a2d3e1a1eb70bc114921101"
)
"""SHA-256 of ``SQLiteConnectionPool._create_connection``'s source in eventsourcing 9.5."""

E = TypeVar("E")


def source_fingerprint(function: Any) -> str:
    """SHA-256 of a function's source text, to notice a change in the library."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


# ---- 1 and 2: SQLite connections that keep their prepared statements --------


class StatementCachingPool(SQLiteConnectionPool):
    """The library's pool, with connections that cache ``STATEMENT_CACHE`` statements."""

    def _create_connection(self) -> SQLiteConnection:
        # The body of eventsourcing 9.5's SQLiteConnectionPool._create_connection,
        # with cached_statements=STATEMENT_CACHE instead of True (a cache of one).
        try:
            connection = sqlite3.connect(
                database=self.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,  # transactions are begun explicitly, as the library does
                cached_statements=STATEMENT_CACHE,
                timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
            )
        except (sqlite3.Error, TypeError) as error:
            raise InterfaceError(error) from error
        # Two changes of ours: a read-only connection (mode=ro) leaves the journal
        # mode alone, and a file that refuses the switch (read-only, not a
        # database) raises the library's error type, not sqlite3's.
        read_only = "mode=ro" in self.db_name
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal and not read_only:
            try:
                (mode,) = connection.execute("PRAGMA journal_mode;").fetchone()
                if mode.lower() != "wal":
                    connection.execute("PRAGMA journal_mode=WAL;")
                    self.journal_mode_was_changed_to_wal = True
            except sqlite3.Error as error:
                connection.close()
                raise OperationalError(error) from error
            self.is_journal_mode_wal = True
        connection.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=connection, max_age=self.max_age)


def use_pool(datastore: SQLiteDatastore, pool_class: type[SQLiteConnectionPool]) -> None:
    """Replace a datastore's pool (before it opened a connection) by one of ``pool_class``."""
    library_pool = datastore.pool
    datastore.pool = pool_class(
        db_name=library_pool.db_name,
        lock_timeout=library_pool.lock_timeout,
        pool_size=library_pool.pool_size,
        max_overflow=library_pool.max_overflow,
        pool_timeout=library_pool.pool_timeout,
        max_age=library_pool.max_age,
        pre_ping=library_pool.pre_ping,
    )
    library_pool.close()


# ---- 3: decoded events without __init__ -------------------------------------


def construct_event(cls: type[E], state: dict[str, Any]) -> E:
    """An event of ``cls`` holding ``state`` as its fields, as the library's mapper builds one."""
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", state)
    return event


# ---- 4: rows and tracking position in one transaction -----------------------


def position_in(recorder: TrackingRecorder, cursor: Any, application_name: str) -> int:
    """The tracked position, read inside the caller's transaction (0 when none)."""
    position: int | None = recorder._max_tracking_id(application_name, cursor)  # type: ignore[attr-defined]  # item 4
    return position or 0


def record_position(recorder: TrackingRecorder, cursor: Any, tracking: Tracking) -> None:
    """Record ``tracking`` inside the caller's transaction."""
    recorder._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]  # item 4


# ---- 5: plain rows from SQLite ----------------------------------------------


@contextmanager
def plain_sqlite_cursor(cursor: SQLiteCursor) -> Iterator[sqlite3.Cursor]:
    """The raw ``sqlite3`` cursor behind the library's wrapper, returning plain tuples."""
    raw = cursor.sqlite_cursor
    raw.row_factory = None
    yield raw


# ---- 6: waking on the PostgreSQL recorder's NOTIFY --------------------------


def from_postgres(recorder: Any) -> bool:
    """Whether ``recorder`` is one of the library's PostgreSQL recorders (or extends one).

    Told by module, so that a store without the psycopg extra imports nothing of it.
    """
    return any(cls.__module__ == "eventsourcing.postgres" for cls in type(recorder).__mro__)


@contextmanager
def listening_for_inserts(recorder: Any) -> Iterator[Any | None]:
    """A pooled psycopg connection LISTENing where ``recorder`` NOTIFYs its inserts.

    None for a recorder that sends no notifications (SQLite, memory). The
    connection goes back to the pool without the LISTEN.
    """
    channel = getattr(recorder, "channel_name", None)
    if not from_postgres(recorder) or not isinstance(channel, str):
        yield None
        return
    from psycopg import sql  # noqa: PLC0415  (psycopg is the postgres extra)

    with recorder.datastore.get_connection() as connection:
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        try:
            yield connection
        finally:
            with suppress(Exception):  # a lost connection has nothing to unlisten
                connection.execute("UNLISTEN *")


# ---- 7: one lean SQLite write transaction -----------------------------------


class ImmediateTransaction(SQLiteTransaction):
    """The library's transaction (commit, rollback, error mapping), begun IMMEDIATE."""

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")  # waits out the lock timeout, as an INSERT would
        except sqlite3.Error as error:
            self.__exit__(type(error), error, error.__traceback__)  # raises the library's error
            raise  # unreachable: __exit__ re-raised it mapped
        return cursor


def insert_immediately(
    datastore: SQLiteDatastore, statement: str, rows: Sequence[tuple[Any, ...]]
) -> int:
    """Insert ``rows`` with ``statement`` in one IMMEDIATE transaction; the last rowid."""
    with (
        datastore.get_connection(commit=True) as connection,
        ImmediateTransaction(connection, commit=True) as cursor,
        cursor as raw,
    ):
        if len(rows) == 1:  # a single command: its rowid comes without another statement
            raw.execute(statement, rows[0])
            last: int = raw.lastrowid or 0
        else:  # executemany leaves lastrowid unset
            raw.executemany(statement, rows)
            raw.execute("SELECT last_insert_rowid()")
            last = raw.fetchone()[0]
    return last


# ---- 8: COPY for PostgreSQL event writes -------------------------------------


def copy_events(recorder: Any, stored_events: Sequence[Any]) -> list[int]:
    """Insert ``stored_events`` with ``COPY`` as ``recorder`` inserts them; their log positions."""
    from psycopg.sql import SQL, Identifier  # noqa: PLC0415  (psycopg is the postgres extra)

    table = (Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    copy = SQL("COPY {}.{} (originator_id, originator_version, topic, state) FROM STDIN").format(
        *table
    )
    last_id = SQL("SELECT currval(pg_get_serial_sequence(%s, 'notification_id')) AS last")
    qualified = f"{recorder.datastore.schema}.{recorder.events_table_name}"
    with (
        recorder.datastore.get_connection() as connection,
        connection.transaction(),
        connection.cursor() as cursor,
    ):
        for statement in recorder.lock_table_statements:
            cursor.execute(statement, prepare=True)
        cursor.execute(SQL("NOTIFY {}").format(Identifier(recorder.channel_name)))
        with cursor.copy(copy) as rows:
            for s in stored_events:
                rows.write_row((s.originator_id, s.originator_version, s.topic, s.state))
        cursor.execute(last_id, (qualified,))
        last: int = cursor.fetchone()["last"]
    # The table lock lets no other transaction insert meanwhile, so the
    # sequence gave these rows the positions that run up to the last one.
    return list(range(last - len(stored_events) + 1, last + 1))


# ---- 9: one round trip for a single command's event on PostgreSQL -------------


@dataclass(frozen=True)
class OneRoundTrip:
    """The query that writes one event, and how many results come before the INSERT's."""

    query: bytes
    results_before_insert: int


def one_round_trip(recorder: Any) -> OneRoundTrip:
    """``BEGIN``, the recorder's lock statements, its ``NOTIFY``, the INSERT, ``COMMIT``."""
    from psycopg.sql import SQL, Identifier  # noqa: PLC0415  (psycopg is the postgres extra)

    insert = SQL(
        "INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, %s, %s) RETURNING notification_id"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    notify = SQL("NOTIFY {}").format(Identifier(recorder.channel_name))
    before = [SQL("BEGIN"), *recorder.lock_table_statements, notify]
    query = SQL("; ").join([*before, insert, SQL("COMMIT")])
    return OneRoundTrip(query.as_bytes(None), len(before))


def insert_one(recorder: Any, trip: OneRoundTrip, stored_event: Any) -> list[int]:
    """Insert one event as ``recorder`` inserts a batch, in one round trip; its log position."""
    from psycopg import ClientCursor  # noqa: PLC0415  (psycopg is the postgres extra)

    s = stored_event
    with recorder.datastore.get_connection() as connection, ClientCursor(connection) as cursor:
        try:
            cursor.execute(trip.query, (s.originator_id, s.originator_version, s.topic, s.state))
        except BaseException:
            with suppress(Exception):  # a lost connection cannot roll back; its error stands
                connection.rollback()  # the aborted transaction must not go back to the pool
            raise
        for _ in range(trip.results_before_insert):  # to the INSERT's result
            cursor.nextset()
        row = cursor.fetchone()
    if row is None:  # RETURNING gives the row it inserted; this keeps the type honest
        raise OperationalError("the insert returned no notification id")
    return [int(row["notification_id"])]


# ---- 10: one kept connection for a recorder's SQLite writes -------------------


class KeptWriter:
    """Writes rows on one connection kept out of ``pool``, under the pool's writer lock."""

    def __init__(self, pool: SQLiteConnectionPool) -> None:
        self.pool = pool
        self._connection: SQLiteConnection | None = None
        self._cursor: sqlite3.Cursor | None = None  # the kept connection's, reused

    @staticmethod
    def suits(pool: SQLiteConnectionPool) -> bool:
        """Whether a checkout from ``pool`` does nothing a kept connection skips."""
        return not pool.is_sqlite_memory_mode and pool.max_age is None and not pool.pre_ping

    def insert(self, statement: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert ``rows`` with ``statement`` in one IMMEDIATE transaction; the last rowid."""
        return self.insert_with(statement, rows, None)[0]

    def insert_with(
        self,
        statement: str,
        rows: Sequence[tuple[Any, ...]],
        optional: tuple[str, Sequence[tuple[Any, ...]]] | None,
    ) -> tuple[int, bool]:
        """``insert``, and in the same transaction the ``optional`` rows under a savepoint.

        An error inserting the optional rows rolls back only them: the last
        rowid of ``rows`` and whether the optional rows were stored.
        """
        writer_lock = self.pool._writer_lock  # item 10
        if not writer_lock.acquire(timeout=self.pool.pool_timeout):
            msg = "Timed out waiting for return of writer"  # the pool's own message
            raise ConnectionUnavailableError(msg)
        try:
            return self._insert(statement, rows, optional)
        finally:
            writer_lock.release()

    def _insert(
        self,
        statement: str,
        rows: Sequence[tuple[Any, ...]],
        optional: tuple[str, Sequence[tuple[Any, ...]]] | None,
    ) -> tuple[int, bool]:
        if self.pool.closed:
            raise ConnectionPoolClosedError
        cursor = self._cursor
        if cursor is None or self._connection is None or self._connection.closed:
            cursor = self._check_out()
        try:
            cursor.execute("BEGIN IMMEDIATE")  # waits out the lock timeout, as an INSERT would
            if len(rows) == 1:
                cursor.execute(statement, rows[0])
                last: int = cursor.lastrowid or 0
            else:  # executemany leaves lastrowid unset
                cursor.executemany(statement, rows)
                last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
            stored = optional is not None and _insert_optional(cursor, *optional)
            cursor.execute("COMMIT")
        except BaseException as error:
            self._give_back(error)
            raise  # unreachable for sqlite3 errors: _give_back raised them mapped
        return last, stored

    def _check_out(self) -> sqlite3.Cursor:
        if self._connection is not None:  # closed under us: the pool forgets it
            with suppress(Exception):
                self.pool.put_connection(self._connection)
        connection = self.pool.get_connection()  # not as a writer: its lock is held already
        cursor: sqlite3.Cursor = connection.cursor().sqlite_cursor
        self._connection, self._cursor = connection, cursor
        return cursor

    def _give_back(self, error: BaseException) -> None:
        """Roll back, return the connection to the pool, raise ``error`` as the library maps it."""
        connection, self._connection, self._cursor = self._connection, None, None
        assert connection is not None  # noqa: S101  (set by _insert before any statement)
        try:
            SQLiteTransaction(connection, commit=True).__exit__(
                type(error), error, error.__traceback__
            )
        finally:
            with suppress(Exception):  # a closed pool has nothing to take it back
                self.pool.put_connection(connection)


def _insert_optional(
    cursor: sqlite3.Cursor, statement: str, rows: Sequence[tuple[Any, ...]]
) -> bool:
    """Insert ``rows`` under a savepoint; on an error only they are rolled back (False).

    Should SQLite have aborted the whole transaction instead (a full disk,
    an I/O error), ``ROLLBACK TO`` fails and so does the transaction.
    """
    cursor.execute("SAVEPOINT optional_rows")
    try:
        cursor.executemany(statement, rows)
    except sqlite3.Error:
        cursor.execute("ROLLBACK TO optional_rows")
        cursor.execute("RELEASE optional_rows")
        return False
    cursor.execute("RELEASE optional_rows")
    return True


_KEPT: weakref.WeakKeyDictionary[SQLiteDatastore, KeptWriter] = weakref.WeakKeyDictionary()
_KEPT_LOCK = threading.Lock()


def kept_writer(datastore: SQLiteDatastore) -> KeptWriter | None:
    """The one ``KeptWriter`` of ``datastore`` (None where it does not suit), for its recorders.

    Keyed weakly by the datastore (which the writer does not reference), so a
    datastore nobody holds is still collected and its pool closed.
    """
    pool = datastore.pool
    if not KeptWriter.suits(pool):
        return None
    with _KEPT_LOCK:
        writer = _KEPT.get(datastore)
        if writer is None or writer.pool is not pool:
            writer = _KEPT[datastore] = KeptWriter(pool)
        return writer
