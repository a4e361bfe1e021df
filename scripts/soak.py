#!/usr/bin/env python3
"""A bounded load and soak run: writers, the scheduler and a projection runner at once.

Writer threads send a mix of commands to shared episodes at a target rate
for a fixed time; beside them run a real ``iop scheduler`` process (a sweep
every second) and a real ``iop projections run`` process. At the end it
stops everything, catches the views up and verifies the store and the views.
It prints commands per second held, p50 and p99 latency, errors by type and
the verification result, and stops by itself.

    python scripts/soak.py --store sqlite:///soak.db --seconds 300 --rate 200
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import planned_episodes
from projections import audit
from projections.runner import ViewRunner

KINDS = [
    ("record_session", 80),
    ("record_screen", 8),
    ("dispense_medication", 8),
    ("correct_entry", 4),
]


def setup(url: str, episodes: int) -> list[UUID]:
    now = datetime.now(tz=UTC)
    clock = SimulatedClock(now - timedelta(days=1))
    with EpisodeService(url, clock=clock) as service:
        return planned_episodes(service, clock, episodes, "MRN-S")


class Writers:
    def __init__(self, url: str, ids: list[UUID], rate: float, threads: int) -> None:
        self.service = EpisodeService(url)
        self.ids = ids
        self.interval = threads / rate
        self.threads = threads
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.lock = threading.Lock()

    def command(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        method = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        episode, now = rng.choice(self.ids), datetime.now(tz=UTC)
        if method == "record_session":
            return method, factories.session(episode, now, minutes=rng.randrange(5, 30))
        if method == "record_screen":
            return method, factories.screen(episode, now)
        if method == "dispense_medication":
            return method, factories.dose(episode, now)
        return method, factories.correction(episode, now, target_version=rng.randrange(3, 30))

    def work(self, seed: int) -> None:
        rng = random.Random(seed)
        next_at = time.monotonic()
        while not self.stop.is_set():
            method, body = self.command(rng)
            started = time.perf_counter()
            try:
                getattr(self.service, method)(body)
                outcome = "accepted"
            except (errors.EpisodeError, ValueError) as error:
                outcome = type(error).__name__
            elapsed = time.perf_counter() - started
            with self.lock:
                self.latencies.append(elapsed)
                self.outcomes[outcome] += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def run(self, seconds: float) -> float:
        workers = [threading.Thread(target=self.work, args=(n,)) for n in range(self.threads)]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        self.stop.wait(seconds)
        self.stop.set()
        for worker in workers:
            worker.join()
        return time.monotonic() - started


def start(url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "iop_episodes.entrypoints.cli", *args, "--store", url],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=100, help="target commands per second")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--logs", default="soak-logs", help="folder for the helpers' logs")
    args = parser.parse_args()

    ids = setup(args.store, args.episodes)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    helpers = [
        start(args.store, logs / "scheduler.log", "scheduler", "--cron", "* * * * * *"),
        start(args.store, logs / "projections.log", "projections", "run", "--poll", "0.5"),
    ]
    writers = Writers(args.store, ids, args.rate, args.writers)
    elapsed = writers.run(args.seconds)
    for helper in helpers:
        helper.send_signal(signal.SIGTERM)
    codes = [helper.wait(timeout=120) for helper in helpers]
    helpers_ok = codes == [0, 0]
    writers.service.close()

    with EpisodeService(args.store) as service:
        runner = ViewRunner(service)
        runner.catch_up()
        findings = audit.verify(service, runner.views)  # entries, snapshots and views
        caught_up = runner.views.dump()
        runner.rebuild()
        views_equal = runner.views.dump() == caught_up

    done = sum(writers.outcomes.values())
    refused = {k: v for k, v in writers.outcomes.items() if k != "accepted"}
    print(
        f"soak on {args.store.split('?')[0].split('://')[0]} for {elapsed:.0f} s, "
        f"{args.writers} writers, target {args.rate:.0f}/s"
    )
    print(f"commands per second held: {done / elapsed:.1f} ({done} commands)")
    print(
        f"latency p50 {percentile(writers.latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(writers.latencies, 0.99) * 1000:.1f} ms"
    )
    print(f"errors by type: {dict(sorted(refused.items())) or 'none'}")
    print(f"scheduler and projection runner stopped cleanly: {helpers_ok} (exit {codes})")
    print(f"views after catch-up equal a rebuild: {views_equal}")
    verdict = "ok" if not findings else f"FAILED ({len(findings)} findings)"
    print(f"verification: {verdict}")
    # A long soak fills a client's local day: 24 hours of sessions is the limit.
    unexpected = set(refused) - {"CorrectionInvalid", "Conflict", "DayOverbooked"}
    return 0 if not findings and views_equal and helpers_ok and not unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
