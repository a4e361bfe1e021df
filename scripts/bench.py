#!/usr/bin/env python3
"""Benchmarks: the engine against plain standard-library baselines, as same-run ratios.

Every baseline (the ``baseline_*`` functions) and every floor (``floor_*``)
is plain standard-library code written here, frozen, sharing nothing with
the engine: ``sqlite3``, ``psycopg``, ``json``, ``hashlib``
(``tests/test_bench.py`` checks their source never names the engine).
Each figure is the median of at least five interleaved repetitions
(engine, baseline, engine, baseline, ...), with the lowest and highest
repetition beside it. Durability is the same for engine and baseline:
SQLite in WAL mode with ``synchronous=FULL``, PostgreSQL with its defaults
(``synchronous_commit=on``). A row whose target is missed shows a floor:
the best ratio an engine doing only the work it cannot skip (measured by
``floor_*``) could reach, and what would move it.

    python scripts/bench.py [--quick] [--json] [--postgres SERVER_URL] [--reps N]

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import SNAPSHOT_INTERVAL, EpisodeService
from iop_episodes.application.stepdown import run_stepdown_sweep
from iop_episodes.audit.integrity import verify_store
from iop_episodes.domain import commands
from iop_episodes.domain.episode import Episode
from iop_episodes.domain.rules import MINUTES_PER_LOCAL_DAY
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import planned_episodes
from projections.candidates import ScheduleCandidates
from projections.runner import ViewRunner

START = datetime(2026, 3, 2, 14, tzinfo=UTC)
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
MEMORY_FOLDER = Path("/dev/shm")  # noqa: S108  (a memory-backed file system, on purpose)
EVENTS_DDL = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, "
    "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
)
ENVELOPE = ("episode_id", "actor", "occurred_at", "command_id")


# ---- the frozen baselines and floors: standard library (and psycopg) only ------------


def baseline_sqlite(path: Path) -> sqlite3.Connection:
    """A raw SQLite file with the engine's durability: WAL, ``synchronous=FULL``."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(EVENTS_DDL)
    return conn


def baseline_insert_each(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """One transaction per row: what a single command must at least cost."""
    for row in rows:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO stored_events VALUES (?, ?, ?, ?)", row)
        conn.execute("COMMIT")


def baseline_insert_all(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Every row in one transaction with ``executemany``: what a roster must at least cost."""
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")


def baseline_read_and_parse(path: Path) -> int:
    """Read every stored event in log order and parse its JSON: the least a catch-up does."""
    with closing(sqlite3.connect(path)) as conn:
        count = 0
        for (state,) in conn.execute("SELECT state FROM stored_events ORDER BY rowid"):
            json.loads(state)
            count += 1
        return count


def baseline_read_and_hash(path: Path) -> int:
    """Read every stored event in log order and recompute its chain link (docs/hash-chain.md).

    The stored form is ``{"_chain":"<64 hex>",`` then, optionally,
    ``"_seal":"<64 hex>",`` then the canonical entry less its opening brace;
    each link is ``sha256(previous link's 32 bytes || canonical bytes)``,
    the first one's previous link ``sha256(episode id as 36 characters)``.
    Returns how many links check out.
    """
    opening, seal = b'{"_chain":"', b'"_seal":"'
    previous: dict[str, bytes] = {}
    good = 0
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT originator_id, state FROM stored_events ORDER BY rowid")
        for key, state in rows:
            if not state.startswith(opening):
                continue
            link = bytes.fromhex(state[11:75].decode())
            body = state[77:]
            if body.startswith(seal):
                body = body[75:]
            before = previous.get(key)
            if before is None:
                before = hashlib.sha256(str(uuid.UUID(key)).encode()).digest()
            good += hashlib.sha256(before + b"{" + body).digest() == link
            previous[key] = link
    return good


def baseline_pg_insert_each(dsn: str, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """psycopg, one transaction per row."""
    import psycopg  # noqa: PLC0415  (PostgreSQL is optional)

    with psycopg.connect(dsn, autocommit=True) as conn:
        statement = f"INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)"  # noqa: E501, S608  (a table this script made)
        for row in rows:
            with conn.transaction():
                conn.execute(statement, row)


def floor_pg_ordered_insert_each(dsn: str, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """psycopg, one round trip per row: the table lock and NOTIFY an ordered, woken log needs.

    ``BEGIN; LOCK TABLE ... IN EXCLUSIVE MODE; NOTIFY ...; INSERT ...; COMMIT`` as one
    query (client-side binding): readers tailing the log never pass a gap
    filled later, and listeners wake. No writer keeping both can do less.
    """
    import psycopg  # noqa: PLC0415  (PostgreSQL is optional)

    query = (
        f"BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE; NOTIFY bench_floor; "  # noqa: S608  (a table this script made)
        f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, %s, %s); COMMIT"
    )
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.ClientCursor(conn) as cur:
        for row in rows:
            cur.execute(query, row)


def baseline_pg_insert_all(dsn: str, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """psycopg ``executemany`` of every row in one transaction."""
    import psycopg  # noqa: PLC0415  (PostgreSQL is optional)

    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} (originator_id, originator_version, topic, state)"  # noqa: S608  (a table this script made)
            " VALUES (%s, %s, %s, %s)",
            rows,
        )


def floor_entry_work(sessions: Sequence[dict[str, Any]]) -> None:
    """The encoding and hashing every recorded session needs, in plain ``json`` and ``hashlib``.

    Per session: the command digest (sorted compact ASCII JSON of the
    command, SHA-256) and the entry's canonical bytes and chain link. No
    validation and no rules: Python cannot record a session in less.
    """
    previous = hashlib.sha256(b"seed").digest()
    for version, session in enumerate(sessions, start=3):
        form = {key: str(value) if key == "episode_id" else value for key, value in session.items()}
        text = json.dumps({**form, "command": "RecordSession"}, sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()
        entry = {
            "actor": form["actor"],
            "class_version": 2,
            "command_digest": digest,
            "command_id": form.get("command_id"),
            "episode_id": form["episode_id"],
            "occurred_at": str(form["occurred_at"]),
            "payload": {key: value for key, value in form.items() if key not in ENVELOPE},
            "recorded_at": str(form["occurred_at"]),
            "type": "SessionAttended",
            "version": version,
        }
        canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
        previous = hashlib.sha256(previous + canonical.encode()).digest()


def floor_write_rows(path: Path, tables: dict[str, list[tuple[Any, ...]]]) -> float:
    """Seconds to insert finished view rows into empty tables of their width, one transaction."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for name, rows in tables.items():
            if rows:
                columns = ", ".join(f"c{n}" for n in range(len(rows[0])))
                conn.execute(f"CREATE TABLE {name} ({columns})")
        started = time.perf_counter()
        conn.execute("BEGIN")
        for name, rows in tables.items():
            if rows:
                slots = ", ".join("?" for _ in rows[0])
                conn.executemany(f"INSERT INTO {name} VALUES ({slots})", rows)  # noqa: S608  (names from the dump)
        conn.execute("COMMIT")
        return time.perf_counter() - started


BASELINES = (
    baseline_sqlite,
    baseline_insert_each,
    baseline_insert_all,
    baseline_read_and_parse,
    baseline_read_and_hash,
    baseline_pg_insert_each,
    baseline_pg_insert_all,
    floor_pg_ordered_insert_each,
    floor_entry_work,
    floor_write_rows,
)
"""Checked by tests/test_bench.py: none of these names the engine."""


# ---- figures -----------------------------------------------------------------------


@dataclass
class Figure:
    id: str
    what: str
    value: float
    target: str
    holds: bool | None
    min: float
    max: float
    detail: str
    floor: float | None = None
    moves_it: str | None = None
    seconds: float = 0.0  # wall time of the figure's section, set by ``run``

    def row(self) -> str:
        verdict = {True: "holds", False: "MISSED", None: "report"}[self.holds]
        spread = f"[{self.min:.3f}-{self.max:.3f}]"
        text = f"{self.id:<4} {self.what:<62} {self.value:>8.3f} {spread:<15} {self.target:<9} {verdict:<6} {self.detail}"  # noqa: E501
        if self.holds is False and self.moves_it is not None:
            floor = "" if self.floor is None else f"floor {self.floor:.3f}: "
            text += f"\n     {floor}{self.moves_it}"
        return text

    def markdown(self) -> str:
        """The figure as a row of the README's table (a floor beside a missed target)."""
        verdict = {True: "holds", False: "missed", None: "report"}[self.holds]
        if self.holds is False and self.floor is not None:
            verdict += f" (floor {self.floor:.3f})"
        cells = [self.id, f"{self.value:.3f}", f"{self.min:.3f}-{self.max:.3f}", self.target]
        return "| " + " | ".join([*cells, verdict, self.detail]) + " |"


MARKDOWN_HEAD = (
    "| id | median | min-max | target | verdict | engine vs baseline |\n"
    "| --- | --- | --- | --- | --- | --- |"
)


def ratio_figure(
    ident: str,
    what: str,
    ratios: Sequence[float],
    target: float | None,
    detail: str,
    *,
    at_most: bool = False,
) -> Figure:
    """The median of the repetitions' ratios against ``>= target`` (or ``<=``, or a report)."""
    value = statistics.median(ratios)
    holds = None if target is None else (value <= target if at_most else value >= target)
    wording = "report" if target is None else f"{'<=' if at_most else '>='} {target:g}"
    return Figure(ident, what, value, wording, holds, min(ratios), max(ratios), detail)


def timed(work: Callable[[], Any]) -> float:
    gc.collect()
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def copy_store(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


def stored_rows(path: Path, topic_like: str = "%") -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events"
            " WHERE topic LIKE ? ORDER BY rowid",
            (topic_like,),
        ).fetchall()


def session_commands(
    ids: list[uuid.UUID], now: datetime, count: int, minutes: int = 30
) -> list[dict[str, Any]]:
    """Sessions short enough that each episode's local day holds them (24 hours at most)."""
    return [factories.session(ids[n % len(ids)], now, minutes=minutes) for n in range(count)]


@dataclass
class Planned:
    """A closed SQLite store of planned episodes, copied fresh for every repetition."""

    path: Path
    ids: list[uuid.UUID]
    now: datetime

    def open_copy(self, target: Path) -> EpisodeService:
        copy_store(self.path, target)
        clock = SimulatedClock(self.now, tick=timedelta(milliseconds=1))
        service = EpisodeService(f"sqlite:///{target}", clock=clock, timezone="America/New_York")
        for episode_id in self.ids:  # a warm cache, as a running service has
            service.episode(episode_id)
        return service


def planned_store(path: Path, episodes: int) -> Planned:
    clock = SimulatedClock(START, tick=timedelta(milliseconds=1))
    with EpisodeService(f"sqlite:///{path}", clock=clock, timezone="America/New_York") as service:
        ids = planned_episodes(service, clock, episodes, "MRN-B")
    return Planned(path, ids, clock.now())


# ---- B1, B1m, B8: single commands on SQLite ----------------------------------------


class Counter(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.sessions: list[int] = []

    @event("SessionAttended")
    def attend(self, minutes: int) -> None:
        self.sessions.append(minutes)


class PlainApplication(Application[uuid.UUID]):
    """A plain eventsourcing application with the engine's cache and snapshot settings."""

    snapshotting_intervals = {Counter: SNAPSHOT_INTERVAL}  # noqa: RUF012  (the library's class attribute)
    env = {  # noqa: RUF012  (the library's class attribute)
        "AGGREGATE_CACHE_MAXSIZE": "2000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
        "IS_SNAPSHOTTING_ENABLED": "y",
    }

    def register(self, name: str) -> uuid.UUID:
        counter = Counter(name)
        self.save(counter)
        return counter.id

    def attend(self, counter_id: uuid.UUID, minutes: int) -> None:
        counter: Counter = self.repository.get(counter_id)
        counter.attend(minutes)
        self.save(counter)


def single_commands(
    folder: Path, count: int, reps: int, *, plain: bool
) -> tuple[list[float], list[float], list[float], list[dict[str, Any]]]:
    """Engine, raw-insert and (optionally) plain-application seconds per repetition."""
    template = planned_store(folder / "b1-template.db", 50)
    sessions = session_commands(template.ids, template.now, count)
    engine, raw, plain_times = [], [], []
    for rep in range(reps):
        path = folder / f"b1-{rep}.db"
        service = template.open_copy(path)
        engine.append(timed(lambda s=service: [s.record_session(c) for c in sessions]))
        service.close()
        rows = stored_rows(path, "%SessionAttended")
        conn = baseline_sqlite(folder / f"b1-raw-{rep}.db")
        raw.append(timed(partial(baseline_insert_each, conn, rows)))
        conn.close()
        if plain:
            plain_times.append(plain_application_seconds(folder / f"b8-{rep}.db", count))
    return engine, raw, plain_times, sessions


def plain_application_seconds(path: Path, count: int) -> float:
    app = PlainApplication(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )
    ids = [app.register(f"c{n}") for n in range(50)]
    seconds = timed(lambda: [app.attend(ids[n % 50], 60) for n in range(count)])
    app.close()
    return seconds


def b1_figures(folder: Path, memory: Path | None, count: int, reps: int) -> list[Figure]:
    figures = []
    engine, raw, plain, sessions = single_commands(folder, count, reps, plain=True)
    work = timed(partial(floor_entry_work, sessions))
    floor = statistics.median(raw) / (statistics.median(raw) + work)
    ratios = [r / e for e, r in zip(engine, raw, strict=True)]
    figures.append(
        with_floor(
            ratio_figure(
                "B1",
                "single SessionAttended commands on disk vs raw per-transaction inserts",
                ratios,
                None,
                rates(count, engine, raw, "commands/s", "raw inserts/s"),
            ),
            floor,
            "fsync-bound: a faster disk lowers it",
        )
    )
    if memory is not None:
        with tempfile.TemporaryDirectory(dir=memory) as name:
            m_engine, m_raw, _, _ = single_commands(Path(name), count, reps, plain=False)
        m_ratios = [r / e for e, r in zip(m_engine, m_raw, strict=True)]
        m_floor = statistics.median(m_raw) / (statistics.median(m_raw) + work)
        figures.append(
            with_floor(
                ratio_figure(
                    "B1m",
                    "the same on /dev/shm (same WAL and synchronous=FULL)",
                    m_ratios,
                    0.30,
                    rates(count, m_engine, m_raw, "commands/s", "raw inserts/s"),
                ),
                m_floor,
                "the engine's CPU per command (validation, rules, the library's write path): "
                "a lean write transaction and batched validation (issue 15, after 11 and 12)",
            )
        )
    b8 = [p / e for e, p in zip(engine, plain, strict=True)]
    figures.append(
        ratio_figure(
            "B8",
            "our B1 vs a plain eventsourcing Application, same cache and snapshots",
            b8,
            None,
            rates(count, engine, plain, "commands/s", "plain commands/s"),
        )
    )
    return figures


def rates(count: int, engine: list[float], base: list[float], unit: str, base_unit: str) -> str:
    return (
        f"{count / statistics.median(engine):,.0f} {unit} vs "
        f"{count / statistics.median(base):,.0f} {base_unit}"
    )


def with_floor(figure: Figure, floor: float, moves_it: str) -> Figure:
    figure.floor, figure.moves_it = floor, moves_it
    return figure


# ---- B2: a roster on SQLite --------------------------------------------------------


def b2(folder: Path, episodes: int, per_episode: int, reps: int) -> Figure:
    template = planned_store(folder / "b2-template.db", episodes)
    roster = session_commands(template.ids, template.now, episodes * per_episode)
    engine, raw = [], []
    for rep in range(reps):
        path = folder / f"b2-{rep}.db"
        service = template.open_copy(path)
        engine.append(timed(partial(service.record_roster, roster)))
        service.close()
        conn = baseline_sqlite(folder / f"b2-raw-{rep}.db")
        raw.append(timed(partial(baseline_insert_all, conn, stored_rows(path, "%SessionAttended"))))
        conn.close()
    work = timed(partial(floor_entry_work, roster))
    base = statistics.median(raw)
    return with_floor(
        ratio_figure(
            "B2",
            f"a {len(roster):,}-session roster over {episodes} episodes vs raw executemany",
            [r / e for e, r in zip(engine, raw, strict=True)],
            0.20,
            f"{statistics.median(engine) * 1000:.1f} ms vs {base * 1000:.1f} ms",
        ),
        base / (base + work),
        f"stdlib encoding and hashing alone take {work * 1000:.1f} ms; moved by validating "
        "the roster in one pydantic call and one write transaction (issue 15, after 11 and 12)",
    )


# ---- B3: loading long episodes ---------------------------------------------------


def b3(folder: Path, reps: int) -> Figure:
    url = f"sqlite:///{folder / 'b3.db'}"
    clock = SimulatedClock(START, tick=timedelta(milliseconds=1))
    with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
        short, long = planned_episodes(service, clock, 2, "MRN-B")
        planned = clock.now()
        clock.advance(timedelta(days=4))  # 2,000 short sessions over four local days
        service.record_roster(session_commands([short], planned, 18, minutes=2))
        for day in range(4):
            at = planned + timedelta(days=day)
            service.record_roster(session_commands([long], at, 500, minutes=2))

    def load(episode_id: uuid.UUID) -> float:
        with EpisodeService(url) as fresh:  # an empty cache: every load reads the store
            return timed(lambda: [fresh.episode(episode_id) for _ in range(200)])

    ratios = [load(long) / load(short) for _ in range(reps)]
    return ratio_figure(
        "B3",
        "load an episode of 2,000 entries vs one of 20 (fresh cache)",
        ratios,
        2,
        f"snapshots every {SNAPSHOT_INTERVAL} entries",
        at_most=True,
    )


# ---- B4 and B6: catch-up and verification of a demo store ---------------------------


def demo_store(url: str, clients: int, weeks: int) -> None:
    from iop_episodes.entrypoints.demo import ProgramSimulation, demo_clock  # noqa: PLC0415

    clock = demo_clock()
    with EpisodeService(url, clock=clock) as service:
        ProgramSimulation(
            service,
            clock,
            clients=clients,
            weeks=weeks,
            seed=5,
            candidates=ScheduleCandidates(service),
        ).run()


def b4(path: Path, reps: int) -> Figure:
    with EpisodeService(f"sqlite:///{path}") as service:
        runner = ViewRunner(service)
        engine, raw = [], []
        for _ in range(reps):
            runner.views.reset()
            engine.append(timed(runner.catch_up))
            raw.append(timed(partial(baseline_read_and_parse, path)))
        events = service.recorder.max_notification_id() or 0
        writes = floor_write_rows(path.with_suffix(".rows.db"), runner.views.dump())
    base = statistics.median(raw)
    return with_floor(
        ratio_figure(
            "B4",
            "catch-up of both views vs a stdlib read and json.loads of the same rows",
            [r / e for e, r in zip(engine, raw, strict=True)],
            0.40,
            rates(events, engine, raw, "events/s", "events/s"),
        ),
        base / (base + writes),
        "writing the finished view rows alone; moved by catch-up from raw rows "
        "(no Notification objects) and fewer view rows per event",
    )


def b6(path: Path, reps: int) -> Figure:
    with EpisodeService(f"sqlite:///{path}") as service:
        engine, raw = [], []
        for _ in range(reps):
            engine.append(timed(partial(verify_store, service)))
            raw.append(timed(partial(baseline_read_and_hash, path)))
        events = service.recorder.max_notification_id() or 0
    return ratio_figure(
        "B6",
        "whole-store chain verification vs a stdlib read and hash of the same rows",
        [r / e for e, r in zip(engine, raw, strict=True)],
        0.60,
        rates(events, engine, raw, "entries/s", "entries/s") + " (one process)",
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
    with EpisodeService(url, timezone="America/New_York") as service:
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


def bulk_due_store(url: str, episodes: int, weeks: int, monday: datetime) -> datetime:
    """Episodes with ``weeks`` full weeks of attendance and clean screens, due now.

    Decided in memory through the aggregate (real rules, real chains),
    snapshotted every 20 entries as the service does; returns the Monday the
    sweep runs.
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


def b5(folder: Path, episodes: int, reps: int) -> Figure:
    templates = []
    for weeks in (5, 10):
        path = folder / f"b5-{weeks}.db"
        as_of = bulk_due_store(f"sqlite:///{path}", episodes, weeks, START - timedelta(weeks=weeks))
        with EpisodeService(f"sqlite:///{path}", timezone="America/New_York") as service:
            ViewRunner(service).catch_up()
            summary = run_stepdown_sweep(service, ScheduleCandidates(service), as_of, dry_run=True)
            if summary.counts["stepped-down"] != episodes:  # the benchmark must sweep real work
                raise RuntimeError(summary.line())
        templates.append((path, as_of))

    def sweep(path: Path, as_of: datetime, rep: int) -> float:
        copy = path.with_name(f"{path.stem}-{rep}.db")
        copy_store(path, copy)
        with EpisodeService(f"sqlite:///{copy}", timezone="America/New_York") as service:
            source = ScheduleCandidates(service)
            return timed(partial(run_stepdown_sweep, service, source, as_of))

    short, long = [], []
    for rep in range(reps):
        short.append(sweep(*templates[0], rep))
        long.append(sweep(*templates[1], rep))
    return ratio_figure(
        "B5",
        f"step-down sweep of {episodes:,} active episodes: 2x history vs 1x",
        [b / a for a, b in zip(short, long, strict=True)],
        1.2,
        f"{statistics.median(short):.2f} s and {statistics.median(long):.2f} s per sweep",
        at_most=True,
    )


# ---- B7: PostgreSQL, in a database of its own ---------------------------------------


@dataclass
class PostgresBench:
    """A database made for this run (CREATE DATABASE at start, DROP at the end)."""

    server: str
    database: str

    @property
    def dsn(self) -> str:
        return self.server.rsplit("/", 1)[0] + f"/{self.database}"

    def schema_url(self, schema: str) -> str:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{self.dsn}?schema={schema}"

    def rows(self, schema: str, topic_like: str) -> list[tuple[Any, ...]]:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {schema}.raw (LIKE {schema}.episodes_events INCLUDING ALL)")
            return conn.execute(
                "SELECT originator_id, originator_version, topic, state"  # noqa: S608  (our schema)
                f" FROM {schema}.episodes_events WHERE topic LIKE %s ORDER BY notification_id",
                (topic_like,),
            ).fetchall()

    def empty(self, table: str) -> None:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {table}")


def postgres_database(server: str) -> PostgresBench | None:
    import psycopg  # noqa: PLC0415

    database = f"iop_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE DATABASE {database}")
    except psycopg.OperationalError:
        return None
    return PostgresBench(server, database)


def drop_database(bench: PostgresBench) -> None:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(bench.server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {bench.database} WITH (FORCE)")


def planned_on_postgres(url: str, episodes: int) -> tuple[EpisodeService, list[uuid.UUID]]:
    clock = SimulatedClock(START, tick=timedelta(milliseconds=1))
    service = EpisodeService(url, clock=clock, timezone="America/New_York")
    return service, planned_episodes(service, clock, episodes, "MRN-P")


def b7a(bench: PostgresBench, count: int, reps: int) -> Figure:
    engine, raw, ordered = [], [], []
    for rep in range(reps):
        schema = f"b7a_{rep}"
        service, ids = planned_on_postgres(bench.schema_url(schema), 50)
        sessions = session_commands(ids, service.clock.now(), count)
        engine.append(timed(lambda s=service, c=sessions: [s.record_session(x) for x in c]))
        service.close()
        rows = bench.rows(schema, "%SessionAttended")
        raw.append(timed(partial(baseline_pg_insert_each, bench.dsn, f"{schema}.raw", rows)))
        bench.empty(f"{schema}.raw")
        ordered.append(
            timed(partial(floor_pg_ordered_insert_each, bench.dsn, f"{schema}.raw", rows))
        )
    work = timed(partial(floor_entry_work, sessions))
    base = statistics.median(raw)
    return with_floor(
        ratio_figure(
            "B7a",
            "single commands on PostgreSQL vs raw psycopg, one transaction each",
            [r / e for e, r in zip(engine, raw, strict=True)],
            0.50,
            rates(count, engine, raw, "commands/s", "raw inserts/s"),
        ),
        base / (statistics.median(ordered) + work),
        "the table lock and NOTIFY that keep the log ordered and wake readers, in one "
        "round trip, plus the encoding and hashing; moved by less CPU per command",
    )


def b7b(bench: PostgresBench, episodes: int, per_episode: int, reps: int) -> Figure:
    engine, raw = [], []
    for rep in range(reps):
        schema = f"b7b_{rep}"
        service, ids = planned_on_postgres(bench.schema_url(schema), episodes)
        roster = session_commands(ids, service.clock.now(), episodes * per_episode)
        engine.append(timed(partial(service.record_roster, roster)))
        service.close()
        rows = bench.rows(schema, "%SessionAttended")
        raw.append(timed(partial(baseline_pg_insert_all, bench.dsn, f"{schema}.raw", rows)))
    work = timed(partial(floor_entry_work, roster))
    base = statistics.median(raw)
    return with_floor(
        ratio_figure(
            "B7b",
            f"a {len(roster):,}-session roster on PostgreSQL vs psycopg executemany",
            [r / e for e, r in zip(engine, raw, strict=True)],
            0.40,
            f"{statistics.median(engine) * 1000:.1f} ms vs {base * 1000:.1f} ms",
        ),
        base / (base + work),
        "COPY for event writes, snapshots in the same transaction, batched validation "
        "(issue 15, after 11 and 12)",
    )


WRITER = """
import json, sys, time
from datetime import datetime, timedelta
from uuid import UUID
from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories
url, rate, seconds, start = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
minutes = int(sys.argv[5])
ids = [UUID(line) for line in sys.stdin.read().split()]
clock = SimulatedClock(datetime.fromisoformat(start), tick=timedelta(milliseconds=1))
done = []
with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
    for episode_id in ids:
        service.episode(episode_id)
    began = time.monotonic()
    due = began
    n = 0
    while due - began < seconds:
        time.sleep(max(0.0, due - time.monotonic()))
        service.record_session(factories.session(ids[n % len(ids)], clock.now(), minutes=minutes))
        committed = time.monotonic()
        done.append((service.recorder.max_notification_id(), committed))
        n += 1
        due += 1 / rate
print(json.dumps(done))
"""


def session_minutes(episodes: int, commands: int) -> int:
    """The longest session (at most an hour) that lets each episode's local day hold its share."""
    minutes = min(60, MINUTES_PER_LOCAL_DAY // -(-commands // episodes))
    if minutes < 1:
        msg = f"{commands} sessions do not fit in the local days of {episodes} episodes"
        raise ValueError(msg)
    return minutes


def b7c(bench: PostgresBench, seconds: float, windows: int, rate: float = 200) -> Figure:
    """Projection lag under ``rate`` commands/s from another process, p95 per window."""
    url = bench.schema_url("b7c")
    service, ids = planned_on_postgres(url, 50)
    minutes = session_minutes(len(ids), round(rate * seconds))
    runner = ViewRunner(service)
    runner.catch_up()
    projected: list[tuple[int, float]] = []
    project = runner.views.project

    def recording(events: Any, tracking: Any, after: int) -> None:
        project(events, tracking, after)
        projected.append((tracking.notification_id, time.monotonic()))

    runner.views.project = recording  # type: ignore[method-assign]  # the bench's own probe
    started_at = service.clock.now().isoformat()
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop, 1.0))
    thread.start()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                WRITER,
                url,
                str(rate),
                str(seconds),
                started_at,
                str(minutes),
            ],
            input="\n".join(str(i) for i in ids),
            capture_output=True,
            text=True,
            check=True,
        )
        time.sleep(1.5)  # the last commands' projection
    finally:
        stop.set()
        thread.join()
        service.close()
    ended = time.monotonic()  # a command never projected counts as projected now
    lags = [
        lag_ms(position, committed, projected, ended)
        for position, committed in json.loads(done.stdout)
    ]
    size = max(1, len(lags) // windows)
    p95s = [percentile(lags[i : i + size], 95) for i in range(0, size * windows, size)]
    figure = ratio_figure(
        "B7c",
        f"projection lag on PostgreSQL under {rate:.0f} commands/s, p95 (ms)",
        p95s,
        50,
        f"p50 {percentile(lags, 50):.1f} ms, p95 {percentile(lags, 95):.1f} ms over "
        f"{len(lags)} commands; the runner wakes on NOTIFY",
        at_most=True,
    )
    figure.target = "<= 50 ms"
    figure.moves_it = (
        "every wake-up is one catch-up transaction (advisory lock, prefetch, view rows, "
        "tracking) on a CPU shared with the writer; less work per event or a quieter machine"
    )
    return figure


def lag_ms(
    position: int, committed: float, projected: list[tuple[int, float]], ended: float
) -> float:
    seen = next((at for upto, at in projected if upto >= position), ended)
    return max(0.0, (seen - committed) * 1000)


def percentile(values: Sequence[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---- MEM: peak memory of a rebuild, from the child's own VmHWM -------------------------


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
        later = now + timedelta(days=per_episode)  # one session a day, all recorded late
        for day in range(per_episode - 2):
            at = now + timedelta(days=day)
            episode.record_session(session.model_copy(update={"occurred_at": at}), later)
        return episode

    write_in_batches(url, (sessions_only(n) for n in range(events // per_episode)))


REBUILD_AND_REPORT_PEAK = """
import sys, time
from iop_episodes.application.service import EpisodeService
from projections.runner import ViewRunner
service = EpisodeService(sys.argv[1])
started = time.perf_counter()
events = ViewRunner(service).rebuild()
rate = events / (time.perf_counter() - started)
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(rate, peak)
"""


def rebuild_memory(folder: Path, sizes: tuple[int, int]) -> Figure:
    """Peak resident memory (VmHWM, kB) of a fresh process rebuilding the views, per size."""
    peaks, rates_seen = [], []
    for events in sizes:
        url = f"sqlite:///{folder / f'mem{events}.db'}"
        bulk_store(url, events)
        done = subprocess.run(
            [sys.executable, "-c", REBUILD_AND_REPORT_PEAK, url],
            capture_output=True,
            text=True,
            check=True,
        )
        rate, peak_kib = done.stdout.split()
        peaks.append(int(peak_kib) / 1024)
        rates_seen.append(float(rate))
    flat = peaks[1] <= peaks[0] * 1.15 + 4
    return Figure(
        "MEM",
        f"peak memory rebuilding both views, {sizes[0]:,} then {sizes[1]:,} events (MiB)",
        peaks[1],
        "<= 128 MiB, flat",
        peaks[1] <= 128 and flat,
        min(peaks),
        max(peaks),
        f"VmHWM {peaks[0]:.1f} MiB then {peaks[1]:.1f} MiB; "
        f"{rates_seen[0]:,.0f} and {rates_seen[1]:,.0f} events/s",
    )


# ---- the run -----------------------------------------------------------------------


QUICK = {
    "b1": 200,
    "roster": (100, 5),
    "demo": (60, 10),
    "b5": 150,
    "b7c": 4.0,
    "mem": (20_000, 50_000),
}
FULL = {
    "b1": 2000,
    "roster": (400, 5),
    "demo": (120, 16),
    "b5": 10_000,
    "b7c": 30.0,
    "mem": (200_000, 1_000_000),
}


def run(*, quick: bool, server: str | None, reps: int) -> list[Figure]:
    sizes = QUICK if quick else FULL
    memory = MEMORY_FOLDER if MEMORY_FOLDER.is_dir() else None
    with tempfile.TemporaryDirectory() as name:  # B1 measures this disk
        folder = Path(name)
        demo = folder / "demo.db"
        sections: list[Callable[[], Figure | list[Figure]]] = [
            partial(b1_figures, folder, memory, sizes["b1"], reps),
            partial(b2, folder, *sizes["roster"], reps),
            partial(b3, folder, reps),
            partial(demo_store, f"sqlite:///{demo}", *sizes["demo"]),
            partial(b4, demo, reps),
            partial(b6, demo, reps),
            partial(b5, folder, sizes["b5"], reps),
        ]
        figures = measured(sections)
        bench = postgres_database(server) if server else None
        if bench is not None:
            try:
                figures += measured(
                    [
                        partial(b7a, bench, sizes["b1"], reps),
                        partial(b7b, bench, *sizes["roster"], reps),
                        partial(b7c, bench, sizes["b7c"], reps),
                    ]
                )
            finally:
                drop_database(bench)
        figures += measured([partial(rebuild_memory, folder, sizes["mem"])])
    return figures


def measured(sections: Sequence[Callable[[], Any]]) -> list[Figure]:
    """Run the sections in order; each figure notes how long its section took."""
    figures: list[Figure] = []
    for section in sections:
        started = time.perf_counter()
        made = section()
        seconds = round(time.perf_counter() - started, 1)
        for figure in made if isinstance(made, list) else [made] if made else []:
            figure.seconds = seconds
            figures.append(figure)
            print(f"{figure.id} measured ({seconds} s)", file=sys.stderr, flush=True)
    return figures


def machine() -> str:
    """The CPU, its cores, the memory, Python and SQLite, as the table's caption."""
    model = "unknown CPU"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, Python "
        f"{sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    )


def exit_status(figures: Sequence[Figure]) -> int:
    """1 when any target is missed, else 0."""
    return 1 if any(figure.holds is False for figure in figures) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under 90 seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument(
        "--markdown", action="store_true", help="the figures as the README's table, and the machine"
    )
    parser.add_argument("--reps", type=int, default=5, help="repetitions per figure (>= 5)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("IOP_BENCH_POSTGRES", POSTGRES_SERVER),
        help="PostgreSQL server for B7, as a URL to a database to connect to ('' to skip)",
    )
    args = parser.parse_args()
    reps = max(5, args.reps)
    started = time.perf_counter()
    figures = run(quick=args.quick, server=args.postgres or None, reps=reps)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps([asdict(figure) for figure in figures], indent=2))
    elif args.markdown:
        print(MARKDOWN_HEAD)
        for figure in figures:
            print(figure.markdown())
        print(f"\n{machine()}; {len(figures)} figures in {elapsed:.0f} s, median of {reps} reps")
    else:
        for figure in figures:
            print(figure.row())
        run_kind = "quick" if args.quick else "full"
        print(f"{run_kind} run in {elapsed:.0f} s, median of {reps} repetitions [min-max]")
    return exit_status(figures)


if __name__ == "__main__":
    sys.exit(main())
