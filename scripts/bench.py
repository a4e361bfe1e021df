#!/usr/bin/env python3
"""Benchmarks: the engine against the storage under it, as ratios in one run.

Every figure is a ratio against a baseline measured in the same process on
the same machine, so it means the same on a noisy machine. Stores are
temporary. Durability is what the engine ships with, for the engine and its
baselines alike: SQLite in WAL mode with ``synchronous=FULL`` (the library's
settings), PostgreSQL with its server defaults (``synchronous_commit=on``).

    python scripts/bench.py [--quick] [--json] [--postgres URL]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import SNAPSHOT_INTERVAL, EpisodeService
from iop_episodes.application.stepdown import run_stepdown_sweep
from iop_episodes.audit.integrity import notifications, plaintext, verify_store
from iop_episodes.domain import commands
from iop_episodes.domain.canonical import canonical_json, chain_seed, next_link, split_stored
from iop_episodes.domain.commands import RecordSession
from iop_episodes.domain.episode import Episode
from iop_episodes.infrastructure.rawlog import log_pages
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import planned_episodes
from projections.candidates import ScheduleCandidates
from projections.runner import ViewRunner
from projections.sql import Dialect, create_statements

START = datetime(2026, 3, 2, 14, tzinfo=UTC)
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DDL = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, "
    "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
)


@dataclass
class Result:
    id: str
    what: str
    value: float
    target: str
    holds: bool | None
    detail: str

    def row(self) -> str:
        verdict = {True: "holds", False: "MISSED", None: "report"}[self.holds]
        figure = f"{self.value:>8.3f}  {self.target:<12} {verdict:<7}"
        return f"{self.id:<4} {self.what:<64} {figure} {self.detail}"


def timed(work: Callable[[], Any]) -> float:
    gc.collect()
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def best(work_factory: Callable[[], Callable[[], Any]], repeat: int) -> float:
    """Best of ``repeat`` fresh runs: the least disturbed by the machine."""
    return min(timed(work_factory()) for _ in range(repeat))


def service_on(url: str) -> tuple[EpisodeService, SimulatedClock]:
    clock = SimulatedClock(START, tick=timedelta(milliseconds=1))
    return EpisodeService(url, clock=clock, timezone="America/New_York"), clock


def sessions(ids: list[uuid.UUID], clock: SimulatedClock, count: int) -> list[dict[str, Any]]:
    now = clock.now()
    return [factories.session(ids[n % len(ids)], now, minutes=60) for n in range(count)]


def raw_rows(url: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        return conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events"
            " WHERE topic LIKE '%SessionAttended' ORDER BY rowid"
        ).fetchall()


def raw_sqlite(folder: Path, name: str) -> sqlite3.Connection:
    conn = sqlite3.connect(folder / name, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(DDL)
    return conn


# ---- B1 and B2: writes on SQLite --------------------------------------------------


def b1(folder: Path, count: int) -> tuple[Result, float]:
    url = f"sqlite:///{folder / 'b1.db'}"
    service, clock = service_on(url)
    ids = planned_episodes(service, clock, 50, "MRN-B")
    commands = sessions(ids, clock, count)
    engine = timed(lambda: [service.record_session(c) for c in commands])
    service.close()
    rows = raw_rows(url)
    conn = raw_sqlite(folder, "b1raw.db")

    def raw() -> None:
        for row in rows:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO stored_events VALUES (?, ?, ?, ?)", row)
            conn.execute("COMMIT")

    baseline = timed(raw)
    ratio = baseline / engine
    detail = f"{count / engine:,.0f} commands/s vs {count / baseline:,.0f} raw inserts/s"
    return Result(
        "B1",
        "single SessionAttended commands, one transaction each (SQLite)",
        ratio,
        ">= 0.40",
        ratio >= 0.40,
        detail,
    ), count / engine


def b2(folder: Path, episodes: int, per_episode: int) -> Result:
    url = f"sqlite:///{folder / 'b2.db'}"
    service, clock = service_on(url)
    ids = planned_episodes(service, clock, episodes, "MRN-B")
    roster = sessions(ids, clock, episodes * per_episode)
    engine = timed(lambda: service.record_roster(roster))
    service.close()
    rows = raw_rows(url)
    conn = raw_sqlite(folder, "b2raw.db")

    def raw() -> None:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")

    baseline = timed(raw)
    ratio = baseline / engine
    floor = timed(partial(validate_encode_and_hash, roster))
    detail = (
        f"{len(roster)} events, {episodes} episodes: "
        f"{engine * 1000:.1f} ms vs {baseline * 1000:.1f} ms; "
        f"bound {baseline / (floor + baseline):.2f} (validating, encoding and hashing "
        f"take {floor * 1000:.1f} ms before the insert itself)"
    )
    return Result(
        "B2",
        "a day's roster in one call vs executemany in one transaction",
        ratio,
        ">= 0.25",
        ratio >= 0.25,
        detail,
    )


def validate_encode_and_hash(roster: list[dict[str, Any]]) -> None:
    """The least a roster call must do per entry, with nothing else: the B2 bound."""
    for item in roster:
        command = RecordSession.model_validate(item)
        hashlib.sha256(canonical_json(command.as_received())).digest()


# ---- B3: loading long episodes ---------------------------------------------------


def b3(folder: Path) -> Result:
    url = f"sqlite:///{folder / 'b3.db'}"
    service, clock = service_on(url)
    short, long = planned_episodes(service, clock, 2, "MRN-B")
    service.record_roster(sessions([short], clock, 18))
    for _ in range(4):
        service.record_roster(sessions([long], clock, 500))
    service.close()

    def load(episode_id: uuid.UUID) -> Callable[[], Callable[[], Any]]:
        def factory() -> Callable[[], Any]:
            fresh = EpisodeService(url)  # an empty cache: the load reads the store
            return lambda: [fresh.episode(episode_id) for _ in range(20)]

        return factory

    ratio = best(load(long), 5) / best(load(short), 5)
    return Result(
        "B3",
        "load an episode of 2,000 events vs one of 20 (fresh cache)",
        ratio,
        "<= 3",
        ratio <= 3,
        "snapshots every 20 entries",
    )


# ---- B4: projection catch-up ---------------------------------------------------------


def catch_up_ratio(url: str) -> tuple[float, float, float, float]:
    """Ratio, engine and baseline events/s, and the bound set by writing the rows alone."""
    service = EpisodeService(url)

    def decode_only() -> None:
        for notification in notifications(service):
            service.mapper.to_domain_event(notification)

    baseline = best(lambda: decode_only, 3)
    runner = ViewRunner(service)

    def rebuild() -> Callable[[], Any]:
        runner.views.reset()
        return runner.catch_up

    engine = best(rebuild, 3)
    events = service.recorder.max_notification_id() or 0
    writes = write_rows_alone(runner.views.dump(), url) if url.startswith("sqlite") else 0.0
    service.close()
    return baseline / engine, events / engine, events / baseline, baseline / (baseline + writes)


def write_rows_alone(tables: dict[str, list[tuple[Any, ...]]], url: str) -> float:
    """Seconds to insert the finished views' rows into empty tables: the B4 bound."""
    path = Path(url.removeprefix("sqlite:///")).with_suffix(".rows.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    dialect = Dialect("?", "iop_")
    for statement in create_statements(dialect):
        conn.execute(statement)

    def insert() -> None:
        conn.execute("BEGIN")
        for name, rows in tables.items():
            if rows:
                slots = ", ".join("?" for _ in rows[0])
                conn.executemany(f"INSERT INTO {dialect.table(name)} VALUES ({slots})", rows)  # noqa: S608  (our table names)
        conn.execute("COMMIT")

    seconds = timed(insert)
    conn.close()
    return seconds


def demo_store(url: str, clients: int, weeks: int) -> None:
    from iop_episodes.entrypoints.demo import demo_clock, run_demo  # noqa: PLC0415

    clock = demo_clock()
    with EpisodeService(url, clock=clock) as service:
        run_demo(
            service,
            clock,
            clients=clients,
            weeks=weeks,
            seed=5,
            candidates=ScheduleCandidates(service),
        )


def b4(folder: Path, clients: int, weeks: int) -> Result:
    url = f"sqlite:///{folder / 'b4.db'}"
    demo_store(url, clients, weeks)
    ratio, engine_rate, read_rate, bound = catch_up_ratio(url)
    return Result(
        "B4",
        "projection catch-up (both views) vs read and decode alone",
        ratio,
        ">= 0.50",
        ratio >= 0.50,
        f"{engine_rate:,.0f} events/s vs {read_rate:,.0f} events/s; "
        f"bound {bound:.2f} (writing the finished rows alone)",
    )


# ---- B5: the sweep does not slow with history ------------------------------------------


def assessed_in_memory(now: datetime, client_ref: str) -> Episode:
    """An episode opened through the aggregate itself, without a store."""
    assessment = factories.assessment(now, client_ref=client_ref)
    command = commands.Assess.model_validate({**assessment, "program_timezone": "America/New_York"})
    return Episode.assess(command, episode_id=uuid.uuid4(), now=now)


def write_in_batches(
    url: str, episodes: Iterable[Episode], snapshots: list[Any] | None = None
) -> None:
    """Store the episodes' new entries 20,000 at a time, then the snapshots taken meanwhile."""
    service, _ = service_on(url)
    batch: list[Any] = []
    for episode in episodes:
        batch.extend(episode.collect_events())
        if len(batch) >= 20_000:
            service.events.put(batch)
            batch = []
    if batch:
        service.events.put(batch)
    if service.snapshots is not None and snapshots:
        service.snapshots.put(snapshots)
    service.close()


def bulk_due_store(url: str, episodes: int, weeks: int, monday: datetime) -> datetime:
    """Episodes with ``weeks`` full weeks of attendance and clean screens, due now.

    Decided in memory through the aggregate (real rules, real chains), written
    20,000 entries a batch and snapshotted every 20 entries as the service
    does; returns the Monday the sweep runs.
    """
    snapshots: list[Any] = []

    def record(episode: Episode, decide: Any, at: datetime) -> None:
        decide(episode, now=at)
        if episode.version % SNAPSHOT_INTERVAL == 0:
            snapshots.append(Episode.Snapshot.take(episode))

    def due(n: int) -> Episode:
        episode = assessed_in_memory(monday, f"MRN-D{n:06d}")
        plan = commands.CreatePlan.model_validate(
            factories.plan(episode.id, monday, modality_hours={})
        )
        record(episode, partial(Episode.create_plan, cmd=plan), monday)
        for week in range(weeks):
            for day in (0, 2, 4):
                at = monday + timedelta(weeks=week, days=day, hours=3)
                session = commands.RecordSession.model_validate(
                    factories.session(episode.id, at, minutes=240)
                )
                record(episode, partial(Episode.record_session, cmd=session), at)
                if day == 2:
                    screen = commands.RecordScreen.model_validate(factories.screen(episode.id, at))
                    record(episode, partial(Episode.record_screen, cmd=screen), at)
        return episode

    write_in_batches(url, (due(n) for n in range(episodes)), snapshots)
    return monday + timedelta(weeks=weeks)


def b5(folder: Path, episodes: int) -> Result:
    seconds = []
    for weeks, name in ((5, "b5a.db"), (10, "b5b.db")):
        url = f"sqlite:///{folder / name}"
        as_of = bulk_due_store(url, episodes, weeks, START - timedelta(weeks=weeks))
        with EpisodeService(url, timezone="America/New_York") as service:
            source = ScheduleCandidates(service)
            ViewRunner(service).catch_up()
            summary = run_stepdown_sweep(service, source, as_of, dry_run=True)
            if summary.counts["stepped-down"] != episodes:  # the benchmark must sweep real work
                raise RuntimeError(summary.line())
            seconds.append(timed(partial(run_stepdown_sweep, service, source, as_of)))
    ratio = seconds[1] / seconds[0]
    return Result(
        "B5",
        f"step-down sweep, {episodes:,} active episodes: 2x history vs 1x",
        ratio,
        "<= 1.2",
        ratio <= 1.2,
        f"{seconds[0]:.1f} s and {seconds[1]:.1f} s per sweep, every episode stepped down",
    )


# ---- B6: chain verification ------------------------------------------------------------


def b6(folder: Path) -> Result:
    url = f"sqlite:///{folder / 'b4.db'}"  # the demo store B4 built
    service = EpisodeService(url)
    canonical: list[tuple[str, bytes]] = []
    previous: dict[str, str] = {}
    for record in notifications(service):
        link, entry = split_stored(plaintext(service, record))
        key = str(record.originator_id)
        canonical.append((previous.get(key, chain_seed(uuid.UUID(key))), entry))
        previous[key] = link

    def hashes_only() -> None:
        for link, data in canonical:
            next_link(link, data)

    def rows_only() -> None:
        for page in log_pages(service.recorder):
            for _ in page:
                pass

    engine = best(lambda: lambda: verify_store(service), 3)
    baseline = best(lambda: hashes_only, 3)
    fetch = best(lambda: rows_only, 3)
    service.close()
    ratio = baseline / engine
    return Result(
        "B6",
        "verify every chain of a store vs hashlib over the same bytes",
        ratio,
        ">= 0.50",
        ratio >= 0.50,
        f"{len(canonical) / engine:,.0f} entries/s vs {len(canonical) / baseline:,.0f}; "
        f"bound {baseline / (baseline + fetch):.2f} (reading the rows alone)",
    )


# ---- B7: PostgreSQL ------------------------------------------------------------------


def b7(count: int, clients: int, weeks: int, server: str) -> list[Result]:
    import psycopg  # noqa: PLC0415

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{server}?schema={schema}"
    try:
        service, clock = service_on(url)
        ids = planned_episodes(service, clock, 50, "MRN-B")
        commands = sessions(ids, clock, count)
        engine = timed(lambda: [service.record_session(c) for c in commands])
        service.close()
        with psycopg.connect(server, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT originator_id, originator_version, topic, state"  # noqa: S608
                f" FROM {schema}.episodes_events WHERE topic LIKE '%%SessionAttended'"
            ).fetchall()
            conn.execute(f"CREATE TABLE {schema}.raw (LIKE {schema}.episodes_events INCLUDING ALL)")
            started = time.perf_counter()
            for row in rows:
                with conn.transaction():
                    conn.execute(
                        f"INSERT INTO {schema}.raw"  # noqa: S608
                        " (originator_id, originator_version, topic, state)"
                        " VALUES (%s, %s, %s, %s)",
                        row,
                    )
            baseline = time.perf_counter() - started
        writes = Result(
            "B7a",
            "B1 on PostgreSQL vs raw psycopg inserts",
            baseline / engine,
            "report",
            None,
            f"{count / engine:,.0f} vs {count / baseline:,.0f} per s",
        )
        demo_store(url, clients, weeks)
        ratio, engine_rate, read_rate, _ = catch_up_ratio(url)
        reads = Result(
            "B7b",
            "B4 on PostgreSQL vs read and decode alone",
            ratio,
            "report",
            None,
            f"{engine_rate:,.0f} events/s vs {read_rate:,.0f} events/s",
        )
        return [writes, reads]
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


# ---- B8: against a plain eventsourcing application -----------------------------------


class Counter(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.sessions: list[int] = []

    @event("SessionAttended")
    def attend(self, minutes: int) -> None:
        self.sessions.append(minutes)


class PlainApplication(Application[uuid.UUID]):
    def register(self, name: str) -> uuid.UUID:
        counter = Counter(name)
        self.save(counter)
        return counter.id

    def attend(self, counter_id: uuid.UUID, minutes: int) -> None:
        counter: Counter = self.repository.get(counter_id)
        counter.attend(minutes)
        self.save(counter)


def b8(folder: Path, count: int, ours: float) -> Result:
    db = folder / "b8.db"
    app = PlainApplication(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    )
    ids = [app.register(f"c{n}") for n in range(50)]
    plain = count / timed(lambda: [app.attend(ids[n % 50], 60) for n in range(count)])
    app.close()
    return Result(
        "B8",
        "our B1 vs a plain eventsourcing Application (defaults)",
        ours / plain,
        "report",
        None,
        f"{ours:,.0f} vs {plain:,.0f} commands/s",
    )


# ---- memory of a large rebuild (full run only) -------------------------------------------


def bulk_store(url: str, events: int, per_episode: int = 100) -> None:
    """A large valid store fast: episodes decided in memory, written 20,000 entries a batch."""
    clock = SimulatedClock(START, tick=timedelta(milliseconds=1))

    def sessions_only(n: int) -> Episode:
        now = clock.now()
        episode = assessed_in_memory(now, f"MRN-M{n:07d}")
        episode.create_plan(
            commands.CreatePlan.model_validate(factories.plan(episode.id, now)), now
        )
        session = commands.RecordSession.model_validate(factories.session(episode.id, now))
        for _ in range(per_episode - 2):
            episode.record_session(session, now)
        return episode

    write_in_batches(url, (sessions_only(n) for n in range(events // per_episode)))


REBUILD_AND_REPORT_RSS = """
import resource, sys, time
from iop_episodes.application.service import EpisodeService
from projections.runner import ViewRunner
service = EpisodeService(sys.argv[1])
started = time.perf_counter()
events = ViewRunner(service).rebuild()
print(events / (time.perf_counter() - started), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def rebuild_memory(folder: Path, sizes: tuple[int, ...]) -> list[Result]:
    """Peak resident memory of a fresh process rebuilding the views, per store size."""
    results = []
    for events in sizes:
        url = f"sqlite:///{folder / f'mem{events}.db'}"
        bulk_store(url, events)
        done = subprocess.run(
            [sys.executable, "-c", REBUILD_AND_REPORT_RSS, url],
            capture_output=True,
            text=True,
            check=True,
        )
        rate, peak_kib = done.stdout.split()
        results.append(
            Result(
                "MEM",
                f"peak RSS of a process rebuilding both views over {events:,} events",
                int(peak_kib) / 1024,
                "MiB",
                None,
                f"{float(rate):,.0f} events/s",
            )
        )
    return results


def run(*, quick: bool, server: str | None) -> list[Result]:
    sizes = (
        {"b1": 1000, "roster": (200, 5), "demo": (30, 8), "b5": 300}
        if quick
        else {"b1": 4000, "roster": (400, 5), "demo": (120, 16), "b5": 10_000}
    )
    results = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        one, ours = b1(folder, sizes["b1"])
        results.append(one)
        results.append(b2(folder, *sizes["roster"]))
        results.append(b3(folder))
        results.append(b4(folder, *sizes["demo"]))
        results.append(b5(folder, sizes["b5"]))
        results.append(b6(folder))
        if server:
            results.extend(b7(sizes["b1"], *sizes["demo"], server))
        results.append(b8(folder, sizes["b1"], ours))
        if not quick:
            results.extend(rebuild_memory(folder, (200_000, 1_000_000)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("IOP_BENCH_POSTGRES", POSTGRES),
        help="PostgreSQL server for B7 ('' to skip)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    results = run(quick=args.quick, server=args.postgres or None)
    elapsed = time.perf_counter() - started
    if args.json:
        print(
            json.dumps(
                {
                    "quick": args.quick,
                    "seconds": round(elapsed, 1),
                    "results": [r.__dict__ for r in results],
                },
                indent=2,
            )
        )
    else:
        for result in results:
            print(result.row())
        print(f"{'quick' if args.quick else 'full'} run in {elapsed:.0f} s")
    missed = [r.id for r in results if r.holds is False]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
