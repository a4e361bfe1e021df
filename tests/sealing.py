"""Seal stored entries as the service does when it holds the integrity key.

The service seals each entry it writes once ``IOP_INTEGRITY_KEY`` is set;
these tests need sealed stores on SQLite and PostgreSQL whichever way the
rows were written, so this adds the ``_seal`` member to every row that has
none (rows already sealed are left alone, so it is safe after the service
sealed them itself).
"""

from __future__ import annotations

from iop_episodes.domain.canonical import split_sealed, stored_form
from iop_episodes.infrastructure.keys import IntegrityKey
from tests import tamper

TEST_KEY = IntegrityKey(bytes(range(32)))
OTHER_KEY = IntegrityKey(bytes(range(1, 33)))


def _rows(url: str) -> list[tuple[object, int, bytes]]:
    if url.startswith("sqlite"):
        import sqlite3  # noqa: PLC0415
        from contextlib import closing  # noqa: PLC0415

        with closing(sqlite3.connect(tamper._sqlite_path(url))) as conn:
            query = f"SELECT originator_id, originator_version, state FROM {tamper.SQLITE_TABLE}"  # noqa: S608
            return [(a, b, bytes(c)) for a, b, c in conn.execute(query)]
    dsn, schema = tamper._postgres(url)
    with tamper.psycopg.connect(dsn) as conn:
        query = f"SELECT originator_id, originator_version, state FROM {schema}.{tamper.POSTGRES_TABLE}"  # noqa: S608
        return [(a, b, bytes(c)) for a, b, c in conn.execute(query)]  # type: ignore[arg-type]


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
