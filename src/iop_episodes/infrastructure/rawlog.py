"""The event log's rows as plain tuples, for passes over a whole store.

The recorder's ``select_notifications`` builds a ``Notification`` and a
``UUID`` for every row, which costs more than checking the row's link. A
pass over millions of rows reads pages of plain tuples here instead, in log
order, through the recorder's own connections. Episode ids come back as
text: 32 hex digits on SQLite, 36 characters on PostgreSQL and in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder

from iop_episodes.infrastructure.compat import from_postgres, plain_sqlite_cursor

if TYPE_CHECKING:
    from eventsourcing.persistence import ApplicationRecorder, Notification
    from eventsourcing.postgres import PostgresApplicationRecorder

Row = tuple[str, int, str, bytes, int]
"""Episode id text, version, topic, state, and the row's position in the log."""

PAGE = 10_000
HEX_DIGITS = "0123456789abcdef"
EVERYTHING = (0, 1)
"""A shard ``(index, count)`` holds the episodes whose id's last hex digit is index modulo count."""


def shard_of(episode_key: str, count: int) -> int:
    """The shard number of an episode id in either text form (both end in the same digit)."""
    return HEX_DIGITS.index(episode_key[-1].lower()) % count


def log_pages(
    recorder: ApplicationRecorder,
    page: int = PAGE,
    shard: tuple[int, int] = EVERYTHING,
    after: int = 0,
) -> Iterator[Sequence[Row]]:
    """Every stored event (of the shard's episodes) past log position ``after``, in log order.

    A page at a time; the shard is chosen in SQL, so a pass over one shard
    reads only its rows.
    """
    if isinstance(recorder, SQLiteApplicationRecorder):
        return _pages(partial(_sqlite_rows, recorder), page, shard, after)
    if from_postgres(recorder):  # psycopg is an optional extra
        postgres = cast("PostgresApplicationRecorder", recorder)
        return _pages(partial(_postgres_rows_after, postgres), page, shard, after)
    return _recorder_pages(recorder, page, shard, after)  # in memory: nothing to save around it


def _pages(
    rows_after: Callable[[int, int, tuple[int, int]], list[Row]],
    page: int,
    shard: tuple[int, int],
    after: int,
) -> Iterator[Sequence[Row]]:
    """Pages of ``rows_after(after, limit, shard)``, each following the last one's position."""
    while True:
        rows = rows_after(after, page, shard)
        yield rows
        if len(rows) < page:
            return
        after = rows[-1][4]


def _sqlite_rows(
    recorder: SQLiteApplicationRecorder, after: int, limit: int, shard: tuple[int, int]
) -> list[Row]:
    index, count = shard
    sharded = (
        ""
        if count == 1
        else f" AND (instr('{HEX_DIGITS}', lower(substr(originator_id, -1))) - 1) % {count:d}"
        f" = {index:d}"
    )
    query = (
        "SELECT originator_id, originator_version, topic, state, rowid"  # noqa: S608  (the recorder's own table name, integers)
        f" FROM {recorder.events_table_name} WHERE rowid > ?{sharded} ORDER BY rowid LIMIT ?"
    )
    with (
        recorder.datastore.transaction(commit=False) as cursor,
        plain_sqlite_cursor(cursor) as plain,
    ):
        plain.execute(query, (after, limit))
        rows: list[Row] = plain.fetchall()
    return rows


def _postgres_rows_after(
    recorder: PostgresApplicationRecorder, after: int, limit: int, shard: tuple[int, int]
) -> list[Row]:
    from psycopg import sql  # noqa: PLC0415  (only a PostgreSQL store needs the driver)
    from psycopg.rows import tuple_row  # noqa: PLC0415

    index, count = shard
    sharded = sql.SQL(
        "" if count == 1 else " AND (position(right(originator_id::text, 1) in %s) - 1) %% %s = %s"
    )
    query = sql.SQL(
        "SELECT originator_id::text, originator_version, topic, state, notification_id"
        " FROM {schema}.{table} WHERE notification_id > %s{sharded}"
        " ORDER BY notification_id LIMIT %s"
    ).format(
        schema=sql.Identifier(recorder.datastore.schema),
        table=sql.Identifier(recorder.events_table_name),
        sharded=sharded,
    )
    parameters = (after, limit) if count == 1 else (after, HEX_DIGITS, count, index, limit)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.row_factory = tuple_row  # type: ignore[assignment]  # plain tuples, not dicts
        cursor.execute(query, parameters)
        rows: list[Row] = cursor.fetchall()  # type: ignore[assignment]  # tuple_row set above
    return rows


def rows_after(recorder: ApplicationRecorder, after: int, limit: int) -> list[Row]:
    """Up to ``limit`` stored events that follow log position ``after``, in log order."""
    if isinstance(recorder, SQLiteApplicationRecorder):
        return _sqlite_rows(recorder, after, limit, EVERYTHING)
    if from_postgres(recorder):
        return _postgres_rows_after(
            cast("PostgresApplicationRecorder", recorder), after, limit, EVERYTHING
        )
    return [
        (str(n.originator_id), n.originator_version, n.topic, n.state, n.id)
        for n in recorder.select_notifications(after + 1, limit)
    ]


def notification_pages(
    recorder: ApplicationRecorder, page: int = PAGE, start: int = 1
) -> Iterator[Sequence[Notification]]:
    """The recorder's notifications from ``start``, a page at a time, in log order."""
    while True:
        notifications = recorder.select_notifications(start, page)
        yield notifications
        if len(notifications) < page:
            return
        start = notifications[-1].id + 1


def _recorder_pages(
    recorder: ApplicationRecorder, page: int, shard: tuple[int, int], after: int
) -> Iterator[Sequence[Row]]:
    index, count = shard
    for notifications in notification_pages(recorder, page, after + 1):
        yield [
            (str(n.originator_id), n.originator_version, n.topic, n.state, n.id)
            for n in notifications
            if count == 1 or shard_of(str(n.originator_id), count) == index
        ]


def every_row(recorder: Any, episode_ids: Iterable[str]) -> Iterator[StoredEvent]:
    """Every row an aggregate recorder holds (the snapshots), in episode and version order.

    SQLite and PostgreSQL are read in one query; in memory, each of
    ``episode_ids`` is asked for its rows.
    """
    if isinstance(recorder, SQLiteAggregateRecorder):
        query = (
            "SELECT originator_id, originator_version, topic, state"  # noqa: S608  (the recorder's own table name)
            f" FROM {recorder.events_table_name} ORDER BY originator_id, originator_version"
        )
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(query)
            rows = [(UUID(hex=r[0]), r[1], r[2], bytes(r[3])) for r in cursor.fetchall()]
    elif from_postgres(recorder):
        rows = _postgres_rows(recorder)
    else:
        for episode_id in episode_ids:
            yield from recorder.select_events(UUID(episode_id))
        return
    for originator_id, version, topic, state in rows:
        yield StoredEvent(
            originator_id=originator_id, originator_version=version, topic=topic, state=state
        )


def _postgres_rows(recorder: Any) -> list[tuple[UUID, int, str, bytes]]:
    from psycopg import sql  # noqa: PLC0415  (only a PostgreSQL store needs the driver)

    query = sql.SQL(
        "SELECT originator_id, originator_version, topic, state FROM {schema}.{table}"
        " ORDER BY originator_id, originator_version"
    ).format(
        schema=sql.Identifier(recorder.datastore.schema),
        table=sql.Identifier(recorder.events_table_name),
    )
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(query)
        records = cursor.fetchall()
    return [
        (
            UUID(str(r["originator_id"])),
            r["originator_version"],
            r["topic"],
            bytes(r["state"]),
        )
        for r in records
    ]
