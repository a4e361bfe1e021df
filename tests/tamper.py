"""Raw-SQL tampering with a stored history, as an attacker with DB access would."""

from __future__ import annotations

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
