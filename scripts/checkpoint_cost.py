#!/usr/bin/env python3
"""What a checkpoint costs as the log grows: 10^4, 10^5 and 10^6 entries.

    python scripts/checkpoint_cost.py [--sizes 10000 100000 1000000] [--new 100]

For each size it builds a SQLite store of its own in a temporary folder
(valid, sealed, chained entries inserted raw, round robin over episodes of
50 entries, so new entries link from entries signed in long before), then
times: the first checkpoint (one pass over the whole log), a checkpoint
after ``--new`` more entries (the stored frontier plus the new rows only),
a checkpoint with nothing new, and the auditor's full check of the store
against the witness (one pass).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import TypeVar
from uuid import UUID, uuid5

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.checkpoints import make_checkpoint
from iop_episodes.audit.consistency import verify_checkpoints
from iop_episodes.audit.witness import Witness
from iop_episodes.domain.canonical import chain_seed, entry_bytes, next_link, stored_form
from iop_episodes.domain.events import SessionAttended
from iop_episodes.infrastructure.keys import IntegrityKey
from iop_episodes.infrastructure.mapping import TOPICS

KEY = IntegrityKey(b"checkpoint cost measurement key!")
PER_EPISODE = 50
NAMESPACE = UUID("0b6f3f5e-8a0c-4d6e-9a55-5d1f0c2e7b11")
TOPIC = TOPICS[SessionAttended]
T = TypeVar("T")


class Log:
    """Synthetic sealed entries, round robin over episodes, each linked to its predecessor."""

    def __init__(self, episodes: int) -> None:
        self.ids = [uuid5(NAMESPACE, str(n)) for n in range(episodes)]
        self.heads = [chain_seed(episode) for episode in self.ids]
        self.versions = [0] * episodes
        self.written = 0

    def rows(self, count: int) -> Iterator[tuple[str, int, str, bytes]]:
        for _ in range(count):
            n = self.written % len(self.ids)
            self.written += 1
            self.versions[n] += 1
            version = self.versions[n]
            canonical = entry_bytes(
                episode_id=self.ids[n],
                version=version,
                event_type="SessionAttended",
                class_version=2,
                recorded_at="2026-03-02T15:00:00.000000Z",
                occurred_at="2026-03-02T14:00:00.000000Z",
                actor={"id": "c.cost", "role": "counselor"},
                command_id=None,
                command_digest=None,
                payload={"minutes": 60, "modality": "group", "setting": "on_site"},
            )
            link = next_link(self.heads[n], canonical)
            self.heads[n] = link
            state = stored_form(link, canonical, KEY.seal(bytes.fromhex(link)))
            yield self.ids[n].hex, version, TOPIC, state


def insert(database: Path, log: Log, count: int) -> None:
    with closing(sqlite3.connect(database)) as conn, conn:
        conn.executemany(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state)"
            " VALUES (?, ?, ?, ?)",
            log.rows(count),
        )


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def check(what: object, *, holds: bool) -> None:
    if not holds:
        raise SystemExit(f"checkpoint_cost: unexpected result: {what}")


def measure(size: int, new: int, folder: Path) -> dict[str, float]:
    database = folder / f"cost{size}.db"
    url = f"sqlite:///{database}"
    EpisodeService(url).close()  # creates the tables
    log = Log(max(size // PER_EPISODE, 1))
    insert(database, log, size)
    witness = Witness.at(str(folder / f"witness{size}.jsonl"))
    keys = {KEY.key_id: KEY.public_key}
    with EpisodeService(url) as service:
        first, made = timed(lambda: make_checkpoint(service, KEY, witness))
        check(made.refused, holds=made.refused is None)
        insert(database, log, new)
        incremental, made = timed(lambda: make_checkpoint(service, KEY, witness))
        check(made, holds=made.signed_in == new)
        unchanged, _ = timed(lambda: make_checkpoint(service, KEY, witness))
        verify, attestation = timed(lambda: verify_checkpoints(service, witness.lines(), keys))
        check(attestation, holds=attestation.findings == [])
    database.unlink()
    return {"first": first, "incremental": incremental, "unchanged": unchanged, "verify": verify}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--new", type=int, default=100, help="entries added before the timed one")
    args = parser.parse_args()
    print(
        f"{'entries':>10}  {'first (full pass)':>17}  {f'+{args.new} new':>10}  "
        f"{'nothing new':>11}  {'verify vs witness':>17}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            cost = measure(size, args.new, Path(folder))
            print(
                f"{size:>10,}  {cost['first']:>15.2f} s  {cost['incremental'] * 1e3:>7.1f} ms  "
                f"{cost['unchanged'] * 1e3:>8.1f} ms  {cost['verify']:>15.2f} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
