"""One sweep per scheduled run, across processes and nodes.

A guard holds a lock for the length of a sweep (a file lock beside a SQLite
store, a PostgreSQL advisory lock otherwise) and keeps a log of the runs it
finished. A process that cannot take the lock, or finds the run already in
the log, skips that run and says why. A process killed mid-sweep releases
the lock with its file descriptor or connection and leaves no log entry, so
the next run sweeps again; the sweep's idempotence makes that safe.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from iop_episodes.domain.canonical import canonical_time
from iop_episodes.infrastructure.pglocks import connect, lock_key
from iop_episodes.infrastructure.settings import Store

NODE = f"{os.uname().nodename}:{os.getpid()}"


class SweepGuard(Protocol):
    @contextmanager
    def hold(self, run_at: datetime) -> Iterator[str | None]:
        """Yield None when this process should sweep ``run_at``, else why not."""
        ...

    def finished(self, run_at: datetime, summary: str) -> None:
        """Record that the run at ``run_at`` is done."""
        ...


class MemorySweepGuard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, str] = {}

    @contextmanager
    def hold(self, run_at: datetime) -> Iterator[str | None]:
        if not self._lock.acquire(blocking=False):
            yield "another sweep holds the lock"
            return
        try:
            done = self._runs.get(canonical_time(run_at))
            yield None if done is None else f"run already swept by {done}"
        finally:
            self._lock.release()

    def finished(self, run_at: datetime, summary: str) -> None:
        del summary
        self._runs[canonical_time(run_at)] = NODE


RUNS_TABLE = """CREATE TABLE IF NOT EXISTS iop_sweep_runs (
    run_at TEXT PRIMARY KEY, node TEXT NOT NULL, summary TEXT NOT NULL)"""


class SQLiteSweepGuard:
    """An exclusive ``flock`` on ``<database>.sweep.lock``, runs logged in the database."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.lock_path = Path(f"{database}.sweep.lock")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.database, timeout=30)
        conn.execute(RUNS_TABLE)
        return conn

    @contextmanager
    def hold(self, run_at: datetime) -> Iterator[str | None]:
        with self.lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield f"another sweep holds {self.lock_path}"
                return
            try:
                yield self._already(run_at)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _already(self, run_at: datetime) -> str | None:
        with closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT node FROM iop_sweep_runs WHERE run_at = ?", (canonical_time(run_at),)
            ).fetchone()
        return None if row is None else f"run already swept by {row[0]}"

    def finished(self, run_at: datetime, summary: str) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT OR IGNORE INTO iop_sweep_runs VALUES (?, ?, ?)",
                (canonical_time(run_at), NODE, summary),
            )


class PostgresSweepGuard:
    """``pg_try_advisory_lock`` on a key derived from the store, runs logged in its schema."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.schema = env.get("POSTGRES_SCHEMA") or "public"
        self.key = lock_key(env, "sweep")

    def _connect(self) -> Any:
        return connect(self.env)

    def _table(self) -> str:
        return f'"{self.schema}".iop_sweep_runs'

    @contextmanager
    def hold(self, run_at: datetime) -> Iterator[str | None]:
        with self._connect() as conn:
            (locked,) = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            if not locked:
                yield f"another sweep holds advisory lock {self.key}"
                return
            try:
                conn.execute(RUNS_TABLE.replace("iop_sweep_runs", self._table()))
                row = conn.execute(
                    f"SELECT node FROM {self._table()} WHERE run_at = %s",  # noqa: S608  (schema from the store URL)
                    (canonical_time(run_at),),
                ).fetchone()
                yield None if row is None else f"run already swept by {row[0]}"
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))

    def finished(self, run_at: datetime, summary: str) -> None:
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO {self._table()} VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",  # noqa: S608  (schema from the store URL)
                (canonical_time(run_at), NODE, summary),
            )


# A memory store lives in its service object; so does its guard.
_memory_guards: weakref.WeakKeyDictionary[object, MemorySweepGuard] = weakref.WeakKeyDictionary()


def guard_for(store: Store, owner: object) -> SweepGuard:
    if store.backend == "sqlite":
        return SQLiteSweepGuard(store.env["SQLITE_DBNAME"])
    if store.backend == "memory":
        return _memory_guards.setdefault(owner, MemorySweepGuard())
    return PostgresSweepGuard(store.env)
