"""Where a store keeps its Merkle frontier and its checkpoints, per backend.

Two tables beside the events: ``iop_merkle_frontier`` (one row: the tree's
size, the log position of its last leaf, and the right-edge subtree roots
as hex joined by commas) and ``iop_checkpoints`` (each checkpoint's size,
time and its canonical JSON line, the same line the witness gets). Neither
is trusted by verification: the frontier only saves rereading the log, and
checkpoints count only as signed.

One process makes a checkpoint at a time (a file lock beside a SQLite
store, an advisory lock on PostgreSQL), and its frontier and checkpoint
rows commit in one transaction, so a crash leaves the previous state.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from iop_episodes.infrastructure.pglocks import connect, held
from iop_episodes.infrastructure.settings import Store

FRONTIER_TABLE = """CREATE TABLE IF NOT EXISTS {prefix}iop_merkle_frontier (
    id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL,
    position BIGINT NOT NULL, nodes TEXT NOT NULL)"""
CHECKPOINTS_TABLE = """CREATE TABLE IF NOT EXISTS {prefix}iop_checkpoints (
    size BIGINT NOT NULL, time TEXT NOT NULL, checkpoint TEXT NOT NULL)"""
CHECKPOINTS_INDEX = """CREATE INDEX IF NOT EXISTS iop_checkpoints_by_size
    ON {prefix}iop_checkpoints (size)"""

ORDER = "ORDER BY size, time, checkpoint"  # oldest first; the latest is last


@dataclass(frozen=True)
class FrontierRow:
    """The tree as of its last checkpoint: leaves, log position of the last, subtree roots."""

    size: int = 0
    position: int = 0
    nodes: tuple[str, ...] = ()


class CheckpointTables(Protocol):
    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off every other checkpoint maker for the block."""
        ...

    def frontier(self) -> FrontierRow: ...

    def commit(self, frontier: FrontierRow, size: int, time: str, checkpoint: str) -> None:
        """Save the new frontier and the checkpoint's line in one transaction."""
        ...

    def checkpoints(self, size: int | None = None) -> list[str]:
        """Every checkpoint line in the store (or of one size), oldest first."""
        ...


def _frontier_row(row: Any) -> FrontierRow:
    if row is None:
        return FrontierRow()
    size, position, nodes = row
    return FrontierRow(int(size), int(position), tuple(nodes.split(",")) if nodes else ())


@dataclass
class MemoryCheckpointTables:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _frontier: FrontierRow = field(default_factory=FrontierRow)
    _lines: list[str] = field(default_factory=list)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock:
            yield

    def frontier(self) -> FrontierRow:
        return self._frontier

    def commit(self, frontier: FrontierRow, size: int, time: str, checkpoint: str) -> None:
        del size, time
        self._frontier = frontier
        self._lines.append(checkpoint)

    def checkpoints(self, size: int | None = None) -> list[str]:
        if size is None:
            return list(self._lines)
        return [line for line in self._lines if json.loads(line)["size"] == size]


class SQLiteCheckpointTables:
    def __init__(self, database: str) -> None:
        self.database = database
        self.lock_path = Path(f"{database}.checkpoint.lock")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.database, timeout=30)
        conn.execute(FRONTIER_TABLE.format(prefix=""))
        conn.execute(CHECKPOINTS_TABLE.format(prefix=""))
        conn.execute(CHECKPOINTS_INDEX.format(prefix=""))
        return conn

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self.lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released with the descriptor, even on a crash
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def frontier(self) -> FrontierRow:
        with closing(self._connect()) as conn:
            return _frontier_row(
                conn.execute("SELECT size, position, nodes FROM iop_merkle_frontier").fetchone()
            )

    def commit(self, frontier: FrontierRow, size: int, time: str, checkpoint: str) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO iop_merkle_frontier VALUES (1, ?, ?, ?)",
                (frontier.size, frontier.position, ",".join(frontier.nodes)),
            )
            conn.execute("INSERT INTO iop_checkpoints VALUES (?, ?, ?)", (size, time, checkpoint))

    def checkpoints(self, size: int | None = None) -> list[str]:
        """Read without creating anything: a reader may hold a read-only copy."""
        where, args = ("", ()) if size is None else ("WHERE size = ?", (size,))
        with closing(sqlite3.connect(self.database, timeout=30)) as conn:
            try:
                rows = conn.execute(f"SELECT checkpoint FROM iop_checkpoints {where} {ORDER}", args)  # noqa: S608  (constants)
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return []  # no checkpoint was ever made here
                raise
            return [line for (line,) in rows]


class PostgresCheckpointTables:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.prefix = f'"{env.get("POSTGRES_SCHEMA") or "public"}".'

    def _connect(self) -> Any:
        conn = connect(self.env)
        conn.execute(FRONTIER_TABLE.format(prefix=self.prefix))
        conn.execute(CHECKPOINTS_TABLE.format(prefix=self.prefix))
        conn.execute(CHECKPOINTS_INDEX.format(prefix=self.prefix))
        return conn

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with held(self.env, "checkpoint"):
            yield

    def frontier(self) -> FrontierRow:
        with self._connect() as conn:
            return _frontier_row(
                conn.execute(
                    f"SELECT size, position, nodes FROM {self.prefix}iop_merkle_frontier"  # noqa: S608  (schema from the store URL)
                ).fetchone()
            )

    def commit(self, frontier: FrontierRow, size: int, time: str, checkpoint: str) -> None:
        with self._connect() as conn, conn.transaction():
            conn.execute(
                f"INSERT INTO {self.prefix}iop_merkle_frontier VALUES (1, %s, %s, %s)"  # noqa: S608  (schema from the store URL)
                " ON CONFLICT (id) DO UPDATE SET size = excluded.size,"
                " position = excluded.position, nodes = excluded.nodes",
                (frontier.size, frontier.position, ",".join(frontier.nodes)),
            )
            conn.execute(
                f"INSERT INTO {self.prefix}iop_checkpoints VALUES (%s, %s, %s)",  # noqa: S608  (schema from the store URL)
                (size, time, checkpoint),
            )

    def checkpoints(self, size: int | None = None) -> list[str]:
        """Read without creating anything: a reader may be a read-only role."""
        where, args = ("", ()) if size is None else ("WHERE size = %s", (size,))
        with connect(self.env) as conn:
            exists = conn.execute(
                "SELECT to_regclass(%s)", (f"{self.prefix}iop_checkpoints",)
            ).fetchone()[0]
            if exists is None:
                return []  # no checkpoint was ever made here
            rows = conn.execute(
                f"SELECT checkpoint FROM {self.prefix}iop_checkpoints {where} {ORDER}",  # noqa: S608  (schema from the store URL)
                args,
            ).fetchall()
            return [line for (line,) in rows]


# A memory store lives in its service object; so do its checkpoint tables.
_memory_tables: weakref.WeakKeyDictionary[object, MemoryCheckpointTables] = (
    weakref.WeakKeyDictionary()
)


def tables_for(store: Store, owner: object) -> CheckpointTables:
    if store.backend == "sqlite":
        return SQLiteCheckpointTables(store.env["SQLITE_DBNAME"])
    if store.backend == "memory":
        return _memory_tables.setdefault(owner, MemoryCheckpointTables())
    return PostgresCheckpointTables(store.env)
