#!/usr/bin/env python3
"""Recompute every hash chain of an iop-episodes store, as a third party would.

It imports nothing from iop-episodes: only the standard library (and psycopg
for PostgreSQL). It follows docs/hash-chain.md step by step, so it doubles as
a check that the document is precise enough. Exit status 1 on any mismatch.

    python scripts/recompute_chains.py sqlite iop.db
    python scripts/recompute_chains.py postgresql postgresql://postgres@host/db [schema]
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from typing import Any

Row = tuple[str, int, str, bytes]


def sqlite_rows(path: str) -> Iterator[Row]:
    conn = sqlite3.connect(path)
    query = (
        "SELECT originator_id, originator_version, topic, state FROM stored_events"
        " ORDER BY originator_id, originator_version"
    )
    for originator_id, version, topic, state in conn.execute(query):
        yield str(uuid.UUID(hex=originator_id)), version, topic, bytes(state)


def postgres_rows(dsn: str, schema: str) -> Iterator[Row]:
    import psycopg  # noqa: PLC0415  (only the PostgreSQL path needs the driver)
    from psycopg import sql  # noqa: PLC0415

    with psycopg.connect(dsn) as conn:
        query = sql.SQL(
            "SELECT originator_id::text, originator_version, topic, state"
            " FROM {}.episodes_events ORDER BY originator_id, originator_version"
        ).format(sql.Identifier(schema))
        for originator_id, version, topic, state in conn.execute(query):
            yield originator_id, version, topic, bytes(state)


def canonical(state: dict[str, Any]) -> bytes:
    """The stored object without its link and seal, as canonical JSON (first recipe)."""
    entry = {key: value for key, value in state.items() if key not in {"_chain", "_seal"}}
    return encode(entry)


def format1_canonical(
    episode_id: str, version: int, event_type: str, state: dict[str, Any]
) -> bytes:
    """Rows the first release stored: the canonical object is rebuilt from the state."""
    return encode(
        {
            "actor": state["actor"],
            "class_version": state.get("class_version", 1),
            "command_id": state["command_id"],
            "episode_id": episode_id,
            "occurred_at": state["occurred_at"]["_data_"],
            "payload": state["payload"],
            "recorded_at": state["timestamp"]["_data_"],
            "type": event_type,
            "version": version,
        }
    )


def encode(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def recompute(rows: Iterator[Row]) -> list[str]:
    problems: list[str] = []
    current, previous, expected = None, "", 1
    for episode_id, version, topic, raw in rows:
        if episode_id != current:
            current, expected = episode_id, 1
            previous = hashlib.sha256(episode_id.encode("ascii")).hexdigest()
        if version != expected:
            problems.append(f"{episode_id} {version}: gap (expected version {expected})")
        expected = version + 1
        state = json.loads(raw)
        event_type = topic.rsplit(":", 1)[-1]
        if "_chain" in state:
            names = (state["episode_id"], state["version"], state["type"])
            if names != (episode_id, version, event_type):
                problems.append(f"{episode_id} {version}: the entry names another row {names}")
            stored_link, entry = state["_chain"], canonical(state)
        else:
            stored_link = state["chain"]
            entry = format1_canonical(episode_id, version, event_type, state)
        link = hashlib.sha256(bytes.fromhex(previous) + entry).hexdigest()
        if link != stored_link:
            problems.append(f"{episode_id} {version}: chain mismatch")
        previous = stored_link
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"sqlite", "postgresql"}:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "sqlite":
        rows = sqlite_rows(argv[1])
    else:
        rows = postgres_rows(argv[1], argv[2] if len(argv) > 2 else "public")
    problems = recompute(rows)
    for problem in problems:
        print(problem)
    print("all chains recomputed: " + ("ok" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
