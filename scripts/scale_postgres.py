#!/usr/bin/env python3
"""Several writer processes, a runner and a scheduler on one PostgreSQL database.

As on several hosts: every participant is a process of its own with its own
connections. For 1, 2 and 4 writer processes (each recording sessions for
its own episodes as fast as it can), an ``iop projections run`` process and
an ``iop scheduler`` process sweeping every five seconds, it prints the
commands per second stored and the projection lag (from a command's commit
to the views' tracked position passing it, read every 5 ms) at p50 and p95.
Everything happens in a database made for the run (CREATE DATABASE at the
start, DROP at the end), never in one the test suite uses.

    python scripts/scale_postgres.py [--seconds 10] [--writers 1 2 4] [--json]
        [--server postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing.helpers import planned_episodes
from projections.runner import ViewRunner

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
START = datetime(2026, 3, 2, 14, tzinfo=UTC)
EPISODES_PER_WRITER = 40
PROBE_SECONDS = 0.005

WRITER = """
import json, sys, time
from datetime import datetime, timedelta
from uuid import UUID
from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories
url, seconds, start = sys.argv[1], float(sys.argv[2]), sys.argv[3]
ids = [UUID(line) for line in sys.stdin.read().split()]
clock = SimulatedClock(datetime.fromisoformat(start), tick=timedelta(milliseconds=1))
done = []
with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
    for episode_id in ids:
        service.episode(episode_id)
    print("ready", flush=True)
    sys.stdin.close()
    began = time.monotonic()
    n = 0
    while time.monotonic() - began < seconds:
        service.record_session(factories.session(ids[n % len(ids)], clock.now(), minutes=60))
        done.append((service.recorder.max_notification_id(), time.monotonic()))
        n += 1
        if n % len(ids) == 0:  # an hour's session each, then the next hour: no day overbooked
            clock.advance(timedelta(hours=1))
print(json.dumps(done))
"""


@dataclass
class Load:
    writers: int
    commands: int
    seconds: float
    commands_per_second: float
    lag_p50_ms: float
    lag_p95_ms: float


def iop(*args: str) -> list[str]:
    return [sys.executable, "-m", "iop_episodes.entrypoints.cli", *args]


def percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Probe(threading.Thread):
    """Reads the views' tracked position every 5 ms, noting when it moved."""

    def __init__(self, dsn: str, table: str) -> None:
        super().__init__()
        self.dsn, self.table = dsn, table
        self.stop = threading.Event()
        self.moves: list[tuple[int, float]] = []

    def run(self) -> None:
        query = (
            f"SELECT max(notification_id) FROM {self.table}"  # noqa: S608  (the views' own table)
            " WHERE application_name = 'Episodes'"
        )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            last = -1
            while not self.stop.is_set():
                row = conn.execute(query).fetchone()
                position = row[0] if row and row[0] is not None else 0
                if position != last:
                    self.moves.append((position, time.monotonic()))
                    last = position
                time.sleep(PROBE_SECONDS)

    def lag_ms(self, position: int, committed: float, ended: float) -> float:
        seen = next((at for upto, at in self.moves if upto >= position), ended)
        return max(0.0, (seen - committed) * 1000)


def prepared(dsn: str, schema: str, writers: int) -> tuple[str, list[list[uuid.UUID]], str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{dsn}?schema={schema}"
    clock = SimulatedClock(START, tick=timedelta(milliseconds=1))
    with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
        ids = planned_episodes(service, clock, EPISODES_PER_WRITER * writers, "MRN-S")
        runner = ViewRunner(service)
        runner.catch_up()  # creates the views and their tracking
        tracking = f"{schema}.{runner.views.tracking_table_name}"  # type: ignore[attr-defined]
    shares = [ids[n::writers] for n in range(writers)]
    return url, shares, clock.now().isoformat(), tracking


def under_load(dsn: str, writers: int, seconds: float) -> Load:
    schema = f"scale_{writers}"
    url, shares, start, tracking = prepared(dsn, schema, writers)
    helpers = [  # their logs are noise here; that they keep running is checked
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for command in (
            iop("projections", "run", "--store", url, "--poll", "1"),
            iop("scheduler", "--store", url, "--cron", "*/5 * * * * *"),
        )
    ]
    probe = Probe(dsn, tracking)
    probe.start()
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, url, str(seconds), start],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in shares
        ]
        for proc, share in zip(procs, shares, strict=True):
            proc.stdin.write("\n".join(str(i) for i in share))  # type: ignore[union-attr]  # PIPE
            proc.stdin.close()  # type: ignore[union-attr]  # PIPE
            proc.stdout.readline()  # type: ignore[union-attr]  # "ready": a warm cache
        outputs = [proc.stdout.read() for proc in procs]  # type: ignore[union-attr]  # PIPE
        for proc in procs:
            proc.wait()
        time.sleep(1.5)  # let the runner project the last commands
        if any(helper.poll() is not None for helper in helpers):
            raise RuntimeError("the runner or the scheduler stopped during the load")
    finally:
        probe.stop.set()
        probe.join()
        for helper in helpers:
            helper.terminate()
            helper.wait(timeout=30)
    ended = time.monotonic()
    done = [tuple(pair) for output in outputs for pair in json.loads(output)]
    lags = [probe.lag_ms(position, committed, ended) for position, committed in done]
    window = max(at for _, at in done) - min(at for _, at in done)
    return Load(
        writers,
        len(done),
        round(window, 2),
        round(len(done) / window, 1),
        round(percentile(lags, 50), 1),
        round(percentile(lags, 95), 1),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default=SERVER, help="a database to connect to")
    parser.add_argument("--seconds", type=float, default=10.0, help="writing time per load")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    database = f"iop_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    dsn = args.server.rsplit("/", 1)[0] + f"/{database}"
    try:
        loads = [under_load(dsn, writers, args.seconds) for writers in args.writers]
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    if args.json:
        print(json.dumps([asdict(load) for load in loads], indent=2))
        return 0
    print(
        f"{'writers':>7} {'commands':>9} {'commands/s':>11} {'lag p50 ms':>11} {'lag p95 ms':>11}"
    )
    for load in loads:
        print(
            f"{load.writers:>11} {load.commands:>11} {load.commands_per_second:>11.1f}"
            f" {load.lag_p50_ms:>11.1f} {load.lag_p95_ms:>11.1f}"
        )
    one = loads[0].commands_per_second if loads else 0
    if one:
        scaling = ", ".join(
            f"{load.writers}: {load.commands_per_second / one:.2f}x" for load in loads
        )
        print(f"throughput against one writer: {scaling}")
    print(f"one runner, one scheduler (a sweep every 5 s); {args.seconds:.0f} s of writing a load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
