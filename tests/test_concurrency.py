"""Several writer processes on shared episodes: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import notifications, verify_store
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import planned_episodes
from projections.runner import ViewRunner
from tests.writer import METHODS

pytestmark = pytest.mark.slow
WORKERS, COMMANDS, EPISODES = 4, 500, 50


def shared_episodes(url: str) -> list[UUID]:
    clock = SimulatedClock(datetime(2026, 3, 2, 13, tzinfo=UTC))
    with EpisodeService(url, clock=clock) as service:
        return planned_episodes(service, clock, EPISODES, "MRN-C")


def run_writers(url: str, ids: list[UUID], folder: Path) -> list[dict]:
    episodes = ",".join(str(i) for i in ids)
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.writer",
                url,
                episodes,
                "--worker",
                str(w),
                "--count",
                str(COMMANDS),
                "--ledger",
                str(folder / f"ledger{w}.json"),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    return [json.loads((folder / f"ledger{w}.json").read_text()) for w in range(WORKERS)]


def stored_command_ids(service: EpisodeService) -> Counter[str]:
    found: Counter[str] = Counter()
    for notification in notifications(service):
        event = service.mapper.to_domain_event(notification)
        command_id = getattr(event, "command_id", None)
        if command_id is not None:
            found[command_id] += 1
    return found


def assert_concurrent_writers_lose_and_double_nothing(url: str, folder: Path) -> None:
    ids = shared_episodes(url)
    ledgers = run_writers(url, ids, folder)
    accepted = {k: v for ledger in ledgers for k, v in ledger["accepted"].items()}
    refused = {k: v for ledger in ledgers for k, v in ledger["refused"].items()}
    assert len(accepted) + len(refused) == WORKERS * COMMANDS
    assert len(accepted) > WORKERS * COMMANDS // 2
    assert set(refused.values()) <= {
        "Conflict",
        "StepDownNotLower",
        "StepDownAlreadyThisWeek",
        "TaperOutOfOrder",  # a step-down dated before a lower one (issue 12)
        "DayOverbooked",  # over 24 hours of sessions in a local day (issue 12)
        "CorrectionInvalid",
        "OccurredBeforeStart",
        "OccurredInFuture",
    }
    with EpisodeService(url) as service:
        stored = stored_command_ids(service)
        assert {k: n for k, n in stored.items() if k.startswith("w")} == dict.fromkeys(accepted, 1)
        for command_id, (episode_id, version) in accepted.items():
            event = list(service.history(UUID(episode_id)))[version - 1]
            assert event.command_id == command_id
        assert verify_store(service) == []
        runner = ViewRunner(service)
        runner.catch_up()
        caught_up = runner.views.dump()
        runner.rebuild()
        assert runner.views.dump() == caught_up
        # Every command sent again with its command id: the store does not change.
        before = service.recorder.max_notification_id()
        for ledger in ledgers:
            for command_id, sent in ledger["sent"].items():
                if command_id in accepted:
                    receipt = getattr(service, METHODS[sent["kind"]])(sent["body"])
                    assert receipt.replayed
                    assert [str(receipt.episode_id), receipt.version] == accepted[command_id]
        assert service.recorder.max_notification_id() == before


def test_four_writer_processes_on_a_sqlite_file(tmp_path):
    """2,000 commands from 4 processes on 50 episodes, on SQLite."""
    assert_concurrent_writers_lose_and_double_nothing(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)


def test_four_writer_processes_on_postgres(postgres_url, tmp_path):
    """The same on PostgreSQL."""
    assert_concurrent_writers_lose_and_double_nothing(postgres_url, tmp_path)


def test_writer_killed_mid_roster_leaves_all_or_nothing(durable_url):
    """SIGKILL during a 400-session roster: each roster stored whole or not at all."""
    url = durable_url
    ids = shared_episodes(url)
    size = 400
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.writer",
            url,
            ",".join(map(str, ids)),
            "--rosters",
            str(size),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    writer.stdout.readline()  # one roster stored: the next one is under way
    time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait() == -signal.SIGKILL
    with EpisodeService(url) as service:
        per_roster = Counter(k.split("-")[0] for k in stored_command_ids(service))
        assert per_roster
        assert set(per_roster.values()) == {size}
        assert verify_store(service) == []
        # A restart continues where the store is.
        at = datetime(2026, 4, 20, 15, tzinfo=UTC)
        service.record_roster([factories.session(e, at) for e in ids])
        assert verify_store(service) == []
