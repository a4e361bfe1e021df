"""The views' tables and statements, shared by SQLite and PostgreSQL.

Both dialects take the same SQL but for placeholders and table qualifiers:
times are canonical UTC strings (they sort as times), hours are canonical
decimal strings, flags are integers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Any, Protocol

from projections.rows import AuditRow, EntryRow, EpisodeRow, StepDownRow
from projections.sealing import SEALED_COLUMNS, Sealer

TABLES = {
    "episodes": EpisodeRow,
    "entries": EntryRow,
    "step_downs": StepDownRow,
    "audit": AuditRow,
}


class Cursor(Protocol):
    def execute(self, statement: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, statement: Any, params: Any, /) -> Any: ...

    def fetchall(self) -> Any: ...

    def fetchone(self) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    placeholder: str  # "?" or "%s"
    prefix: str  # "iop_" or "schema.iop_"
    sealer: Sealer = field(default_factory=Sealer)

    def values(self, row: Any) -> tuple[Any, ...]:
        """A row's column values for writing, sensitive ones sealed."""
        sealed = SEALED_COLUMNS.get(type(row).__name__, frozenset())
        if self.sealer.cipher is None or not sealed:
            return _values(row)
        return tuple(
            self.sealer.seal(value) if name in sealed else value
            for name, value in zip(_names(type(row)), _values(row), strict=True)
        )

    def row(self, row_type: type[Any], record: Any) -> Any:
        """A row read back, sensitive columns opened."""
        row = _row(row_type, record)
        sealed = SEALED_COLUMNS.get(row_type.__name__)
        if not sealed or self.sealer.cipher is None:
            return row
        return replace(row, **{name: self.sealer.open(getattr(row, name)) for name in sealed})

    def table(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def sql(self, statement: str) -> str:
        """Statements are written with ``?`` and ``{name}`` table slots."""
        named = statement.format(**{name: self.table(name) for name in (*TABLES, "activity")})
        return named.replace("?", self.placeholder)


def create_statements(dialect: Dialect) -> list[str]:
    statements = [
        """CREATE TABLE IF NOT EXISTS {episodes} (
            episode_id TEXT PRIMARY KEY, status TEXT NOT NULL, age_group TEXT NOT NULL,
            program_timezone TEXT NOT NULL, level TEXT, weekly_hours TEXT,
            plan_weekly_hours TEXT, modality_hours TEXT NOT NULL, medications TEXT NOT NULL,
            plan_started_at TEXT, last_change_at TEXT, discharged_at TEXT,
            discharge_reason INTEGER, version INTEGER NOT NULL,
            certifications TEXT NOT NULL, screens_per_week INTEGER NOT NULL,
            aftercare INTEGER NOT NULL, payer TEXT NOT NULL, client_ref TEXT,
            assessed_at TEXT)""",
        """CREATE TABLE IF NOT EXISTS {entries} (
            episode_id TEXT NOT NULL, version INTEGER NOT NULL, week TEXT NOT NULL,
            item TEXT NOT NULL, minutes INTEGER NOT NULL, voided INTEGER NOT NULL,
            PRIMARY KEY (episode_id, version))""",
        """CREATE TABLE IF NOT EXISTS {activity} (
            episode_id TEXT NOT NULL, week TEXT NOT NULL, item TEXT NOT NULL,
            count INTEGER NOT NULL, minutes INTEGER NOT NULL,
            PRIMARY KEY (episode_id, week, item))""",
        """CREATE TABLE IF NOT EXISTS {step_downs} (
            episode_id TEXT NOT NULL, version INTEGER NOT NULL, occurred_at TEXT NOT NULL,
            week TEXT NOT NULL, from_hours TEXT NOT NULL, to_hours TEXT NOT NULL,
            to_level TEXT NOT NULL, actor_id TEXT NOT NULL, actor_role TEXT NOT NULL,
            reason TEXT NOT NULL, policy TEXT, PRIMARY KEY (episode_id, version))""",
        """CREATE TABLE IF NOT EXISTS {audit} (
            episode_id TEXT NOT NULL, version INTEGER NOT NULL, event_type TEXT NOT NULL,
            occurred_at TEXT NOT NULL, recorded_at TEXT NOT NULL, actor_id TEXT NOT NULL,
            actor_role TEXT NOT NULL, command_id TEXT, payload TEXT NOT NULL,
            chain TEXT NOT NULL, corrects_version INTEGER, late INTEGER NOT NULL,
            PRIMARY KEY (episode_id, version))""",
    ]
    return [dialect.sql(statement) for statement in statements]


ADDED_COLUMNS = {"episodes": ("client_ref", "assessed_at")}
"""Columns added after a table's first release: old tables gain them, NULL in old rows."""


def added_column_statements(dialect: Dialect, existing: dict[str, set[str]]) -> list[str]:
    """``ALTER TABLE`` for each added column a table of ``existing`` lacks."""
    return [
        dialect.sql(f"ALTER TABLE {{{table}}} ADD COLUMN {column} TEXT")
        for table, columns in ADDED_COLUMNS.items()
        for column in columns
        if column not in existing.get(table, {column})
    ]


def _columns(row_type: type[Any]) -> list[str]:
    return [field.name for field in fields(row_type)]


_NAMES: dict[type[Any], tuple[str, ...]] = {}
_GETTERS: dict[type[Any], tuple[Callable[[Any], tuple[Any, ...]], tuple[int, ...]]] = {}


def _names(row_type: type[Any]) -> tuple[str, ...]:
    names = _NAMES.get(row_type)
    if names is None:
        names = _NAMES[row_type] = tuple(field.name for field in fields(row_type))
    return names


def _values(row: Any) -> tuple[Any, ...]:
    """Column values in order, flags as integers (without astuple's deep copies)."""
    plan = _GETTERS.get(type(row))
    if plan is None:
        names = _names(type(row))
        flags = tuple(i for i, f in enumerate(fields(type(row))) if f.type == "bool")
        plan = _GETTERS[type(row)] = (attrgetter(*names), flags)
    getter, flags = plan
    values: tuple[Any, ...] = getter(row)
    if not flags:
        return values
    listed = list(values)
    for index in flags:
        listed[index] = int(listed[index])
    return tuple(listed)


def _upsert(table: str, row_type: type[Any], keys: Sequence[str]) -> str:
    columns = _columns(row_type)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return (
        f"INSERT INTO {{{table}}} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


def _insert(table: str, row_type: type[Any]) -> str:
    columns = _columns(row_type)
    return (
        f"INSERT INTO {{{table}}} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    )


UPSERT_EPISODE = _upsert("episodes", EpisodeRow, ["episode_id"])
UPSERT_ENTRY = _upsert("entries", EntryRow, ["episode_id", "version"])
INSERT_STEP_DOWN = _insert("step_downs", StepDownRow)
INSERT_AUDIT = _insert("audit", AuditRow)
ADD_ACTIVITY = (
    "INSERT INTO {activity} (episode_id, week, item, count, minutes) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (episode_id, week, item) DO UPDATE SET "
    "count = {activity}.count + excluded.count, minutes = {activity}.minutes + excluded.minutes"
)


def _row(row_type: type[Any], record: Any) -> Any:
    present = set(record.keys())  # a table older than its added columns lacks them
    values = {name: record[name] for name in _columns(row_type) if name in present}
    for column in fields(row_type):
        if column.type == "bool":
            values[column.name] = bool(values[column.name])
    return row_type(**values)


class SqlViewTransaction:
    """``ViewTransaction`` that buffers a batch in memory and writes it with ``executemany``.

    Reads fall through to the open database transaction on a miss, so rows
    written by earlier batches are seen; ``flush`` writes everything this
    batch changed, before the tracking row, in the same transaction.
    """

    def __init__(self, cursor: Cursor, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.episodes: dict[str, EpisodeRow | None] = {}
        self.changed_episodes: set[str] = set()
        self.entries: dict[tuple[str, int], EntryRow | None] = {}
        self.changed_entries: set[tuple[str, int]] = set()
        self.activity: dict[tuple[str, str, str], list[int]] = {}
        self.step_downs: list[StepDownRow] = []
        self.audit: list[AuditRow] = []

    def prefetch(self, episode_ids: Iterable[str]) -> None:
        """Read the batch's episodes in one query."""
        wanted = sorted(set(episode_ids) - set(self.episodes))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            self.cursor.execute(
                self.dialect.sql(
                    "SELECT * FROM {episodes} WHERE episode_id IN "
                    f"({', '.join('?' for _ in chunk)})"
                ),
                tuple(chunk),
            )
            found = {
                r["episode_id"]: self.dialect.row(EpisodeRow, r) for r in self.cursor.fetchall()
            }
            for episode_id in chunk:
                self.episodes[episode_id] = found.get(episode_id)

    def episode(self, episode_id: str) -> EpisodeRow | None:
        if episode_id not in self.episodes:
            self.prefetch([episode_id])
        return self.episodes[episode_id]

    def save_episode(self, row: EpisodeRow) -> None:
        self.episodes[row.episode_id] = row
        self.changed_episodes.add(row.episode_id)

    def entry(self, episode_id: str, version: int) -> EntryRow | None:
        key = (episode_id, version)
        if key not in self.entries:
            self.cursor.execute(
                self.dialect.sql("SELECT * FROM {entries} WHERE episode_id = ? AND version = ?"),
                key,
            )
            record = self.cursor.fetchone()
            self.entries[key] = None if record is None else self.dialect.row(EntryRow, record)
        return self.entries[key]

    def save_entry(self, row: EntryRow) -> None:
        key = (row.episode_id, row.version)
        self.entries[key] = row
        self.changed_entries.add(key)

    def add_activity(self, episode_id: str, week: str, item: str, count: int, minutes: int) -> None:
        totals = self.activity.setdefault((episode_id, week, item), [0, 0])
        totals[0] += count
        totals[1] += minutes

    def add_step_down(self, row: StepDownRow) -> None:
        self.step_downs.append(row)

    def add_audit(self, row: AuditRow) -> None:
        self.audit.append(row)

    def flush(self) -> None:
        seal = self.dialect.values
        writes: list[tuple[str, list[tuple[Any, ...]]]] = [
            (UPSERT_EPISODE, [seal(self.episodes[k]) for k in sorted(self.changed_episodes)]),
            (UPSERT_ENTRY, [seal(self.entries[k]) for k in sorted(self.changed_entries)]),
            (ADD_ACTIVITY, [(*key, c, m) for key, (c, m) in sorted(self.activity.items())]),
            (INSERT_STEP_DOWN, [seal(row) for row in self.step_downs]),
            (INSERT_AUDIT, [seal(row) for row in self.audit]),
        ]
        for statement, rows in writes:
            if rows:
                self.cursor.executemany(self.dialect.sql(statement), rows)


class SqlQueries:
    """Read queries, the same for both dialects."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def episodes(self, cursor: Cursor, episode_ids: Iterable[str] | None) -> list[EpisodeRow]:
        statement = "SELECT * FROM {episodes}"
        params: tuple[Any, ...] = ()
        if episode_ids is not None:
            ids = list(episode_ids)
            if not ids:
                return []
            statement += f" WHERE episode_id IN ({', '.join('?' for _ in ids)})"
            params = tuple(ids)
        cursor.execute(self.dialect.sql(statement + " ORDER BY episode_id"), params)
        return [self.dialect.row(EpisodeRow, record) for record in cursor.fetchall()]

    def activity(
        self, cursor: Cursor, episode_id: str | None, weeks: Sequence[str] | None
    ) -> list[tuple[str, str, str, int, int]]:
        statement = "SELECT episode_id, week, item, count, minutes FROM {activity} WHERE 1 = 1"
        params: list[Any] = []
        if episode_id is not None:
            statement += " AND episode_id = ?"
            params.append(episode_id)
        if weeks is not None:
            if not weeks:
                return []
            statement += f" AND week IN ({', '.join('?' for _ in weeks)})"
            params.extend(weeks)
        cursor.execute(self.dialect.sql(statement + " ORDER BY episode_id, week, item"), params)
        return [
            (r["episode_id"], r["week"], r["item"], r["count"], r["minutes"])
            for r in cursor.fetchall()
        ]

    def step_downs(self, cursor: Cursor, episode_id: str | None) -> list[StepDownRow]:
        statement = "SELECT * FROM {step_downs}"
        params: tuple[Any, ...] = ()
        if episode_id is not None:
            statement += " WHERE episode_id = ?"
            params = (episode_id,)
        cursor.execute(self.dialect.sql(statement + " ORDER BY episode_id, version"), params)
        return [self.dialect.row(StepDownRow, record) for record in cursor.fetchall()]

    def audit(self, cursor: Cursor, episode_id: str) -> list[AuditRow]:
        cursor.execute(
            self.dialect.sql("SELECT * FROM {audit} WHERE episode_id = ? ORDER BY version"),
            (episode_id,),
        )
        return [self.dialect.row(AuditRow, record) for record in cursor.fetchall()]

    def audit_links(self, cursor: Cursor) -> dict[str, list[tuple[int, str]]]:
        cursor.execute(
            self.dialect.sql(
                "SELECT episode_id, version, chain FROM {audit} ORDER BY episode_id, version"
            )
        )
        links: dict[str, list[tuple[int, str]]] = {}
        for record in cursor.fetchall():
            links.setdefault(record["episode_id"], []).append((record["version"], record["chain"]))
        return links

    def audit_count(self, cursor: Cursor) -> int:
        cursor.execute(self.dialect.sql("SELECT COUNT(*) AS entries FROM {audit}"))
        return int(cursor.fetchall()[0]["entries"])

    def dump(self, cursor: Cursor) -> dict[str, list[tuple[Any, ...]]]:
        """Every row, sensitive columns opened, so two dumps compare by content."""
        tables = {}
        for name, key in KEYS.items():
            cursor.execute(self.dialect.sql(f"SELECT * FROM {{{name}}} ORDER BY {key}"))
            records = cursor.fetchall()
            if name in TABLES:
                tables[name] = [_values(self.dialect.row(TABLES[name], r)) for r in records]
            else:
                tables[name] = [
                    tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in records
                ]
        return tables


KEYS = {
    "episodes": "episode_id",
    "entries": "episode_id, version",
    "activity": "episode_id, week, item",
    "step_downs": "episode_id, version",
    "audit": "episode_id, version",
}


def clear_statements(dialect: Dialect) -> list[str]:
    return [dialect.sql(f"DELETE FROM {{{name}}}") for name in (*TABLES, "activity")]


VIEW_TABLES = (*TABLES, "activity")


def drop_statements(dialect: Dialect) -> list[str]:
    return [f"DROP TABLE IF EXISTS {dialect.table(name)}" for name in VIEW_TABLES]


def swap_statements(live: Dialect, shadow: Dialect, *, rename_key_indexes: bool) -> list[str]:
    """Drop each live table and give its shadow its name (and, on PostgreSQL, its key's)."""
    statements = []
    for name in VIEW_TABLES:
        live_table, shadow_table = live.table(name), shadow.table(name)
        bare = live_table.rsplit(".", 1)[-1]
        statements += [f"DROP TABLE {live_table}", f"ALTER TABLE {shadow_table} RENAME TO {bare}"]
        if rename_key_indexes:
            schema = live_table[: -len(bare)]  # "schema." or ""
            shadow_bare = shadow_table.rsplit(".", 1)[-1]
            statements.append(f"ALTER INDEX {schema}{shadow_bare}_pkey RENAME TO {bare}_pkey")
    return statements
