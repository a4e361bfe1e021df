"""A writer process for the concurrency and crash tests: ``python -m tests.writer``.

It sends a seeded mix of commands to shared episodes and writes a ledger of
what was accepted (command id -> version) and what was refused (command id ->
error type) as JSON. With ``--rosters`` it records large rosters instead, one
call after another, until it is killed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.testing import factories

BASE = datetime(2026, 3, 2, 15, tzinfo=UTC)


def command(rng: random.Random, episode: UUID, worker: int, n: int) -> tuple[str, dict[str, Any]]:
    at = BASE + timedelta(minutes=rng.randrange(60 * 24 * 40))
    command_id = f"w{worker}-{n}"
    kind = rng.choices(["session", "screen", "dose", "step_down", "correct"], [70, 10, 10, 5, 5])[0]
    if kind == "session":
        body = factories.session(episode, at, minutes=rng.randrange(30, 240))
    elif kind == "screen":
        body = factories.screen(episode, at)
    elif kind == "dose":
        body = factories.dose(episode, at)
    elif kind == "step_down":
        body = factories.step_down(episode, at, to_weekly_hours=rng.choice([9, 6]))
    else:
        body = factories.correction(episode, at, target_version=rng.randrange(3, 12))
    return kind, {**body, "command_id": command_id}


METHODS = {
    "session": "record_session",
    "screen": "record_screen",
    "dose": "dispense_medication",
    "step_down": "step_down",
    "correct": "correct_entry",
}


def mixed(url: str, episodes: list[UUID], worker: int, count: int, ledger: Path) -> None:
    rng = random.Random(worker)
    accepted: dict[str, list[Any]] = {}
    refused: dict[str, str] = {}
    sent: dict[str, dict[str, Any]] = {}
    with EpisodeService(url) as service:
        for n in range(count):
            kind, body = command(rng, rng.choice(episodes), worker, n)
            sent[body["command_id"]] = {"kind": kind, "body": body}
            try:
                receipt = getattr(service, METHODS[kind])(body)
            except (errors.EpisodeRuleError, errors.Conflict) as error:
                refused[body["command_id"]] = type(error).__name__
            else:
                accepted[body["command_id"]] = [str(receipt.episode_id), receipt.version]
    ledger.write_text(
        json.dumps({"accepted": accepted, "refused": refused, "sent": sent}, default=str)
    )


def rosters(url: str, episodes: list[UUID], size: int) -> None:
    with EpisodeService(url) as service:
        for k in range(10**6):
            at = BASE + timedelta(days=1 + k % 30)
            roster = [
                {
                    **factories.session(episodes[n % len(episodes)], at, minutes=60),
                    "command_id": f"r{k}-{n}",
                }
                for n in range(size)
            ]
            service.record_roster(roster)
            print(f"roster {k} stored", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("episodes", help="comma-separated episode ids")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--ledger")
    parser.add_argument("--rosters", type=int, help="roster size; loop until killed")
    args = parser.parse_args()
    episodes = [UUID(value) for value in args.episodes.split(",")]
    try:
        if args.rosters:
            rosters(args.store, episodes, args.rosters)
        else:
            mixed(args.store, episodes, args.worker, args.count, Path(args.ledger))
    except ValidationError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
