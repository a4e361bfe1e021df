"""Raw-SQL tampering with a stored history, as an attacker with DB access would."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import psycopg

SQLITE_TABLE = "stored_events"
POSTGRES_TABLE = "episodes_events"


def _sqlite_path(url: str) -> str:
    return urlsplit(url).path[1:]


def _postgres(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    schema = parse_qs(parts.query)["schema"][0]
    return url.split("?", 1)[0], schema


def execute(url: str, sql_sqlite: str, sql_postgres: str, *params: object) -> int:
    """Run one statement on whichever backend the URL names; return rows changed."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(_sqlite_path(url))) as conn:
            cursor = conn.execute(sql_sqlite.format(table=SQLITE_TABLE), params)
            conn.commit()
            return cursor.rowcount
    dsn, schema = _postgres(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(
            sql_postgres.format(table=f"{schema}.{POSTGRES_TABLE}"),  # type: ignore[arg-type]
            params,
        )
        return cursor.rowcount


def key(url: str, episode_id: UUID) -> object:
    return episode_id.hex if url.startswith("sqlite") else episode_id


def replace_text(url: str, episode_id: UUID, version: int, old: str, new: str) -> None:
    changed = execute(
        url,
        "UPDATE {table} SET state = CAST(replace(CAST(state AS TEXT), ?, ?) AS BLOB)"
        " WHERE originator_id = ? AND originator_version = ?",
        "UPDATE {table} SET state = convert_to(replace(convert_from(state, 'UTF8'),"
        " %s, %s), 'UTF8') WHERE originator_id = %s AND originator_version = %s",
        old,
        new,
        key(url, episode_id),
        version,
    )
    assert changed == 1


def delete(url: str, episode_id: UUID, version: int) -> None:
    changed = execute(
        url,
        "DELETE FROM {table} WHERE originator_id = ? AND originator_version = ?",
        "DELETE FROM {table} WHERE originator_id = %s AND originator_version = %s",
        key(url, episode_id),
        version,
    )
    assert changed == 1


def swap(url: str, episode_id: UUID, first: int, second: int) -> None:
    """Exchange two entries' contents, keeping their version numbers."""
    parking = 1_000_000
    for source, target in ((first, parking), (second, first), (parking, second)):
        changed = execute(
            url,
            "UPDATE {table} SET originator_version = ?"
            " WHERE originator_id = ? AND originator_version = ?",
            "UPDATE {table} SET originator_version = %s"
            " WHERE originator_id = %s AND originator_version = %s",
            target,
            key(url, episode_id),
            source,
        )
        assert changed == 1


def insert_copy(url: str, episode_id: UUID, source: int, version: int) -> None:
    """Forge an entry at ``version`` from a copy of entry ``source``."""
    changed = execute(
        url,
        "INSERT INTO {table} (originator_id, originator_version, topic, state)"
        " SELECT originator_id, ?, topic, state FROM {table}"
        " WHERE originator_id = ? AND originator_version = ?",
        "INSERT INTO {table} (originator_id, originator_version, topic, state)"
        " SELECT originator_id, %s, topic, state FROM {table}"
        " WHERE originator_id = %s AND originator_version = %s",
        version,
        key(url, episode_id),
        source,
    )
    assert changed == 1


def shift_up(url: str, episode_id: UUID, start: int, last: int) -> None:
    """Move versions ``start..last`` up by one, making room for a forged entry."""
    for version in range(last, start - 1, -1):
        changed = execute(
            url,
            "UPDATE {table} SET originator_version = ?"
            " WHERE originator_id = ? AND originator_version = ?",
            "UPDATE {table} SET originator_version = %s"
            " WHERE originator_id = %s AND originator_version = %s",
            version + 1,
            key(url, episode_id),
            version,
        )
        assert changed == 1


def retopic(url: str, episode_id: UUID, version: int, topic: str) -> None:
    """Relabel one entry as another type, leaving its state alone."""
    changed = execute(
        url,
        "UPDATE {table} SET topic = ? WHERE originator_id = ? AND originator_version = ?",
        "UPDATE {table} SET topic = %s WHERE originator_id = %s AND originator_version = %s",
        topic,
        key(url, episode_id),
        version,
    )
    assert changed == 1


# ---- beyond the events: snapshots, views, tracking ------------------------------

SNAPSHOT_TABLES = {"sqlite": "stored_snapshots", "postgres": "episodes_snapshots"}
TRACKING_TABLES = {"sqlite": "tracking", "postgres": "episodeviews_tracking"}
VIEW_TABLES = ("iop_episodes", "iop_entries", "iop_activity", "iop_step_downs", "iop_audit")


def backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


def qualified(url: str, table: str) -> str:
    """A table's name as raw SQL must write it: schema-qualified on PostgreSQL."""
    return table if url.startswith("sqlite") else f"{_postgres(url)[1]}.{table}"


def run(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    """One statement with ``?`` placeholders and ``{t:name}``-free text; returns its rows."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(_sqlite_path(url))) as conn:
            cursor = conn.execute(statement, params)
            rows = cursor.fetchall()
            conn.commit()
            return rows
    dsn, _ = _postgres(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def event_rows(url: str, episode_id: UUID) -> list[tuple[int, str, bytes]]:
    """An episode's stored rows (version, topic, state) in version order."""
    table = qualified(url, SQLITE_TABLE if url.startswith("sqlite") else POSTGRES_TABLE)
    rows = run(
        url,
        f"SELECT originator_version, topic, state FROM {table}"
        " WHERE originator_id = ? ORDER BY originator_version",
        key(url, episode_id),
    )
    return [(int(v), str(t), bytes(s)) for v, t, s in rows]  # type: ignore[call-overload]


def set_state(url: str, episode_id: UUID, version: int, state: bytes) -> None:
    changed = execute(
        url,
        "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
        "UPDATE {table} SET state = %s WHERE originator_id = %s AND originator_version = %s",
        state,
        key(url, episode_id),
        version,
    )
    assert changed == 1


def append(url: str, episode_id: UUID, version: int, topic: str, state: bytes) -> None:
    """Insert a row as a new entry of the episode (it goes to the end of the log)."""
    changed = execute(
        url,
        "INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
        "INSERT INTO {table} (originator_id, originator_version, topic, state)"
        " VALUES (%s, %s, %s, %s)",
        key(url, episode_id),
        version,
        topic,
        state,
    )
    assert changed == 1


def snapshot_state(url: str, episode_id: UUID) -> tuple[int, bytes]:
    """The episode's latest stored snapshot: its version and state."""
    table = qualified(url, SNAPSHOT_TABLES[backend(url)])
    rows = run(
        url,
        f"SELECT originator_version, state FROM {table}"
        " WHERE originator_id = ? ORDER BY originator_version DESC",
        key(url, episode_id),
    )
    version, state = rows[0]
    return int(version), bytes(state)  # type: ignore[call-overload, arg-type]


def edit_snapshot(url: str, episode_id: UUID, old: bytes, new: bytes) -> None:
    """Replace text in the episode's latest snapshot, as a raw SQL edit would."""
    version, state = snapshot_state(url, episode_id)
    assert old in state, (old, state)
    table = qualified(url, SNAPSHOT_TABLES[backend(url)])
    run(
        url,
        f"UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
        state.replace(old, new),
        key(url, episode_id),
        version,
    )


def delete_snapshots(url: str, episode_id: UUID) -> None:
    table = qualified(url, SNAPSHOT_TABLES[backend(url)])
    run(url, f"DELETE FROM {table} WHERE originator_id = ?", key(url, episode_id))


def view_rows(url: str, table: str, episode_id: UUID) -> int:
    rows = run(
        url,
        f"SELECT count(*) FROM {qualified(url, table)} WHERE episode_id = ?",
        str(episode_id),
    )
    return int(rows[0][0])  # type: ignore[call-overload]


def edit_view(url: str, table: str, assignment: str, episode_id: UUID, where: str = "") -> None:
    """``UPDATE <view table> SET <assignment>`` on the episode's rows (and ``where``)."""
    condition = f" AND {where}" if where else ""
    run(
        url,
        f"UPDATE {qualified(url, table)} SET {assignment} WHERE episode_id = ?{condition}",
        str(episode_id),
    )


def delete_view_row(url: str, table: str, episode_id: UUID, where: str = "") -> None:
    condition = f" AND {where}" if where else ""
    before = view_rows(url, table, episode_id)
    run(
        url,
        f"DELETE FROM {qualified(url, table)} WHERE episode_id = ?{condition}",
        str(episode_id),
    )
    assert view_rows(url, table, episode_id) < before


def set_tracking(url: str, position: int) -> None:
    """Move the views' tracked position, as a raw SQL edit would."""
    table = qualified(url, TRACKING_TABLES[backend(url)])
    run(url, f"DELETE FROM {table} WHERE application_name = 'Episodes'")
    run(url, f"INSERT INTO {table} VALUES ('Episodes', ?)", position)


def edit_snapshot_and_digest(url: str, episode_id: UUID, old: bytes, new: bytes) -> None:
    """Edit the latest snapshot and give it a freshly computed ``_digest``, as an insider would.

    Without the integrity key a seal cannot be made, so the edited body
    goes into the unkeyed envelope with its SHA-256 recomputed.
    """
    version, state = snapshot_state(url, episode_id)
    body = state[state.index(b'","snapshot":') + len(b'","snapshot":') : -1]
    assert old in body, (old, body)
    body = body.replace(old, new)
    digest = hashlib.sha256(body).hexdigest().encode()
    table = qualified(url, SNAPSHOT_TABLES[backend(url)])
    run(
        url,
        f"UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
        b'{"_digest":"' + digest + b'","snapshot":' + body + b"}",
        key(url, episode_id),
        version,
    )
