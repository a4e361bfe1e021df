"""The library's PostgreSQL persistence, with event writes by ``COPY``.

Loaded only for a ``postgresql://`` store (psycopg is an extra). The
application recorder is the library's, except that it writes a batch of
events with ``COPY`` (``compat.copy_events``) and a single command's event
in one round trip (``compat.insert_one``), under the same table lock,
``NOTIFY`` and error mapping; with the library's database functions
enabled it inserts as the library does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import retry

from iop_episodes.infrastructure.compat import OneRoundTrip, copy_events, insert_one, one_round_trip

_copy_retrying: Callable[[Any, Sequence[StoredEvent]], list[int]] = retry(
    (InterfaceError, OperationalError), max_attempts=10, wait=0.2
)(copy_events)
"""Retried on a lost connection or a lock timeout, as the library's insert is."""

_insert_one_retrying: Callable[[Any, OneRoundTrip, StoredEvent], list[int]] = retry(
    (InterfaceError, OperationalError), max_attempts=10, wait=0.2
)(insert_one)


class CopyingPostgresApplicationRecorder(PostgresApplicationRecorder):
    """The library's recorder, writing a batch with ``COPY`` and one event in one round trip."""

    @cached_property
    def one_round_trip(self) -> OneRoundTrip:
        """Composed once: composing it is a tenth of a command's CPU."""
        return one_round_trip(self)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self.datastore.enable_db_functions or not stored_events:
            inserted: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return inserted
        if len(stored_events) == 1:
            return _insert_one_retrying(self, self.one_round_trip, stored_events[0])
        return _copy_retrying(self, stored_events)


class CopyingPostgresFactory(PostgresFactory):
    application_recorder_class = CopyingPostgresApplicationRecorder
