"""The library's SQLite persistence, with connections that keep their prepared statements.

eventsourcing 9.5 opens SQLite connections with a statement cache of one,
so every command prepared its ``BEGIN`` and ``INSERT`` again (about 35 µs
of CPU on this project's benchmark machine, a fifth of a command). This
factory is the library's ``SQLiteFactory`` whose pool caches more
(``compat.StatementCachingPool``); nothing else changes (WAL mode, lock
timeout, pool sizes).
"""

from __future__ import annotations

from eventsourcing.sqlite import SQLiteFactory
from eventsourcing.utils import Environment, EnvType

from iop_episodes.infrastructure.compat import StatementCachingPool, use_pool


class StatementCachingSQLiteFactory(SQLiteFactory):
    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        use_pool(self.datastore, StatementCachingPool)
