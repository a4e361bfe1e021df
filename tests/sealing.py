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


def _rows(url: str) -> list[tuple[object, int, bytes]]:
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(urlsplit(url).path[1:])) as conn:
            rows = conn.execute(SELECT.format(table=tamper.SQLITE_TABLE)).fetchall()
    else:
        schema = parse_qs(urlsplit(url).query)["schema"][0]
        with psycopg.connect(url.split("?", 1)[0]) as conn:
            table = f"{schema}.{tamper.POSTGRES_TABLE}"
            rows = conn.execute(SELECT.format(table=table)).fetchall()  # type: ignore[arg-type]  # a test-only schema name
    return [(episode, version, bytes(state)) for episode, version, state in rows]


def seal_rows(url: str, key: IntegrityKey = TEST_KEY) -> int:
    """Add ``key``'s seal to every unsealed entry; how many were sealed."""
    sealed = 0
    for originator_id, version, state in _rows(url):
        link, seal, canonical = split_sealed(state)
        if seal is not None:
            continue
        tamper.execute(
            url,
            "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
            "UPDATE {table} SET state = %s WHERE originator_id = %s AND originator_version = %s",
            stored_form(link, canonical, key.seal(bytes.fromhex(link))),
            originator_id,
            version,
        )
        sealed += 1
    return sealed
