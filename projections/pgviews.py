"""The views on PostgreSQL: loaded only for a ``postgresql://`` store (psycopg is an extra)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.postgres import PostgresTrackingRecorder

from projections.sql import (
    Cursor,
    Dialect,
    SqlQueries,
    added_column_statements,
    clear_statements,
    create_statements,
)
from projections.views import SqlViewsMixin


class PostgresEpisodeViews(PostgresTrackingRecorder, SqlViewsMixin):
    """Views beside the events in the store's schema, in tables named ``iop_*``."""

    renames_key_indexes = True

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.dialect = Dialect(placeholder="%s", prefix=f"{self.datastore.schema}.iop_")
        self.queries = SqlQueries(self.dialect)
        self.batch_lock: int | None = None

    def lock_with(self, key: int) -> None:
        """Writing batches take this advisory lock: one at a time per store, across processes."""
        self.batch_lock = key

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as cursor:
            for statement in create_statements(self.dialect):
                cursor.execute(statement)
            # Looked up first: ALTER TABLE locks the table even when it changes nothing.
            cursor.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = %s",
                (self.datastore.schema,),
            )
            existing: dict[str, set[str]] = {}
            for record in cursor.fetchall():
                name = record["table_name"].removeprefix("iop_")
                existing.setdefault(name, set()).add(record["column_name"])
            added = added_column_statements(self.dialect, existing)
            for statement in added:
                cursor.execute(statement)
            if added:  # rows projected before hold no value there: project everything again
                for statement in clear_statements(self.dialect):
                    cursor.execute(statement)
                cursor.execute(*self._delete_tracking_statement())

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Cursor]:
        with self.datastore.transaction(commit=commit) as cursor:
            if commit:  # one writing batch at a time per store, across processes
                if self.batch_lock is None:
                    msg = "PostgreSQL views write only after lock_with() (open_views does it)"
                    raise RuntimeError(msg)
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self.batch_lock,))
            yield cursor

    def _delete_tracking_statement(self) -> tuple[Any, tuple[Any, ...]]:
        table = f"{self.datastore.schema}.{self.tracking_table_name}"
        return (f"DELETE FROM {table} WHERE application_name = %s", (self.upstream,))
