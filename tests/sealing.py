"""Seal stored entries as the service does when it holds the integrity key.

The service seals each entry it writes once ``IOP_INTEGRITY_KEY`` is set;
these tests need sealed stores on SQLite and PostgreSQL whichever way the
rows were written, so this adds the ``_seal`` member to every row that has
none (rows already sealed are left alone, so it is safe after the service
sealed them itself).
"""

from __future__ import annotations

import base64
import sqlite3
from contextlib import closing
from urllib.parse import parse_qs, urlsplit

import psycopg

from iop_episodes.domain.canonical import split_sealed, stored_form
from iop_episodes.infrastructure.keys import IntegrityKey
from tests import tamper

TEST_KEY = IntegrityKey(bytes(range(32)))
OTHER_KEY = IntegrityKey(bytes(range(1, 33)))
TEST_KEY_TEXT = base64.b64encode(TEST_KEY.secret).decode("ascii")
SELECT = "SELECT originator_id, originator_version, state FROM {table}"


UPDATE = "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?"


def _sealed(rows: list[tuple[object, int, bytes]], key: IntegrityKey) -> list[tuple[object, ...]]:
    """(new state, episode, version) for each row that carries no seal yet."""
    updates = []
    for originator_id, version, state in rows:
        link, seal, canonical = split_sealed(bytes(state))
        if seal is None:
            sealed = stored_form(link, canonical, key.seal(bytes.fromhex(link)))
            updates.append((sealed, originator_id, version))
    return updates


def seal_rows(url: str, key: IntegrityKey = TEST_KEY) -> int:
    """Add ``key``'s seal to every unsealed entry, in one transaction; how many were sealed."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(urlsplit(url).path[1:], timeout=30)) as conn, conn:
            table = tamper.SQLITE_TABLE
            updates = _sealed(conn.execute(SELECT.format(table=table)).fetchall(), key)
            conn.executemany(UPDATE.format(table=table), updates)
        return len(updates)
    schema = parse_qs(urlsplit(url).query)["schema"][0]
    table = f"{schema}.{tamper.POSTGRES_TABLE}"
    with psycopg.connect(url.split("?", 1)[0]) as conn, conn.cursor() as cursor:
        rows = cursor.execute(SELECT.format(table=table)).fetchall()  # type: ignore[arg-type]  # a test schema
        updates = _sealed(rows, key)
        cursor.executemany(UPDATE.format(table=table).replace("?", "%s"), updates)  # type: ignore[arg-type]
    return len(updates)


def strip_seal(url: str, episode_id: object, version: int) -> None:
    """Remove one entry's seal, as a writer without the key would store a forged entry."""
    (state,) = [s for e, v, s in _rows_of(url, episode_id) if v == version]
    link, _, canonical = split_sealed(state)
    tamper.execute(
        url,
        "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
        "UPDATE {table} SET state = %s WHERE originator_id = %s AND originator_version = %s",
        stored_form(link, canonical),
        episode_id,
        version,
    )


def _rows_of(url: str, episode_id: object) -> list[tuple[object, int, bytes]]:
    where = " WHERE originator_id = ?"
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(urlsplit(url).path[1:], timeout=30)) as conn:
            query = SELECT.format(table=tamper.SQLITE_TABLE) + where
            rows = conn.execute(query, (episode_id,)).fetchall()
    else:
        schema = parse_qs(urlsplit(url).query)["schema"][0]
        with psycopg.connect(url.split("?", 1)[0]) as conn:
            query = SELECT.format(table=f"{schema}.{tamper.POSTGRES_TABLE}") + where
            rows = conn.execute(query.replace("?", "%s"), (episode_id,)).fetchall()  # type: ignore[arg-type]  # a test schema
    return [(episode, version, bytes(state)) for episode, version, state in rows]
