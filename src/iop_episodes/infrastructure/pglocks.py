"""PostgreSQL advisory locks, keyed by purpose and store, on their own connection."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def connect(env: dict[str, str]) -> Any:
    import psycopg  # noqa: PLC0415  (the driver is an optional extra)

    return psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        dbname=env["POSTGRES_DBNAME"],
        user=env["POSTGRES_USER"],
        password=env.get("POSTGRES_PASSWORD") or None,
        autocommit=True,
        connect_timeout=10,
    )


def lock_key(env: dict[str, str], purpose: str) -> int:
    """A signed 64-bit key for ``purpose`` on this database and schema."""
    schema = env.get("POSTGRES_SCHEMA") or "public"
    digest = hashlib.sha256(f"iop:{purpose}:{env['POSTGRES_DBNAME']}:{schema}".encode())
    return int.from_bytes(digest.digest()[:8], "big", signed=True)


@contextmanager
def held(env: dict[str, str], purpose: str) -> Iterator[None]:
    """Wait for the lock, hold it for the block (released with the connection)."""
    with connect(env) as conn:
        key = lock_key(env, purpose)
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
