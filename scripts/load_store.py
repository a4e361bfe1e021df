#!/usr/bin/env python3
"""Fill a store with a large, valid program quickly, through the public service.

Episodes are assessed and planned, then attend sessions recorded as daily
rosters (one transaction per roster), with a weekly screen each. Used to
measure catch-up and verification on stores of hundreds of thousands of
events.

    python scripts/load_store.py sqlite:///big.db --events 200000
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from uuid import NAMESPACE_URL, uuid5

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories


def load(url: str, events: int, episodes: int) -> int:
    clock = SimulatedClock(datetime(2025, 1, 6, 13, tzinfo=UTC), tick=timedelta(milliseconds=1))
    with EpisodeService(url, clock=clock, timezone="America/Chicago") as service:
        ids = [uuid5(NAMESPACE_URL, f"load/{url}/{n}") for n in range(episodes)]
        for n, episode_id in enumerate(ids):
            service.assess(
                factories.assessment(clock.now(), episode_id=episode_id, client_ref=f"MRN-L{n:07d}")
            )
            service.create_plan(
                factories.plan(
                    episode_id, clock.now(), weekly_hours=9, modality_hours={}, medications=[]
                )
            )
        stored = 2 * episodes
        day = 0
        while stored < events:
            clock.advance(timedelta(days=1))
            day += 1
            roster = [
                factories.session(episode_id, clock.now() - timedelta(hours=1), topics=[])
                for episode_id in ids[: min(len(ids), events - stored)]
            ]
            for start in range(0, len(roster), 500):
                service.record_roster(roster[start : start + 500])
            stored += len(roster)
            print(f"day {day}: {stored} events", file=sys.stderr, flush=True)
        return stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--episodes", type=int, default=2_000)
    args = parser.parse_args()
    started = time.perf_counter()
    stored = load(args.store, args.events, args.episodes)
    print(f"stored {stored} events in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
