"""The real scheduler process: killed mid-sweep, restarted, and run twice at once."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import run_stepdown_sweep
from iop_episodes.domain.weeks import iso_week, week_start
from iop_episodes.testing.helpers import due_program
from projections.candidates import ScheduleCandidates

pytestmark = pytest.mark.slow
EPISODES = 200
TZ = "America/New_York"


def build_due_store(url: str) -> dict[UUID, str]:
    """Episodes due for a step-down now (real time); returns what one clean sweep decides."""
    this_monday = week_start(iso_week(datetime.now(tz=UTC), TZ), TZ)
    clock = SimulatedClock((this_monday - timedelta(weeks=5)).astimezone(UTC) + timedelta(hours=13))
    with EpisodeService(url, clock=clock, timezone=TZ) as service:
        due_program(service, clock, episodes=EPISODES)
    with EpisodeService(url, timezone=TZ) as service:
        clean = run_stepdown_sweep(
            service, ScheduleCandidates(service), datetime.now(tz=UTC), dry_run=True
        )
    decided = {
        o.episode_id: str(o.decision.to_weekly_hours)
        for o in clean.outcomes
        if o.outcome == "stepped-down" and o.decision is not None
    }
    assert len(decided) == EPISODES
    return decided


def stored_step_downs(url: str) -> list[tuple[str, bytes]]:
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)) as conn:
            rows = conn.execute(
                "SELECT originator_id, state FROM stored_events WHERE topic LIKE '%:StepDown'"
            ).fetchall()
        return [(str(UUID(hex=r[0])), bytes(r[1])) for r in rows]
    dsn, schema = url.split("?schema=")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT originator_id::text, state FROM {schema}.episodes_events"
            " WHERE topic LIKE '%%:StepDown'"
        ).fetchall()
    return [(r[0], bytes(r[1])) for r in rows]


def start_scheduler(url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iop_episodes.entrypoints.cli",
            "scheduler",
            "--store",
            url,
            "--cron",
            "* * * * * *",
            "--timezone",
            TZ,
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for(condition, seconds: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def assert_kill_and_restart_match_a_clean_sweep(url: str, tmp_path: Path) -> None:
    expected = build_due_store(url)
    log = tmp_path / "scheduler.log"
    first = start_scheduler(url, log)
    wait_for(lambda: len(stored_step_downs(url)) > 0)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    killed_at = len(stored_step_downs(url))
    assert 0 < killed_at < EPISODES, f"not killed mid-sweep: {killed_at} of {EPISODES}"
    second = start_scheduler(url, log)
    wait_for(lambda: len(stored_step_downs(url)) == EPISODES)
    time.sleep(2.5)  # two or three more runs, which must record nothing
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0
    stored = stored_step_downs(url)
    per_episode = Counter(episode for episode, _ in stored)
    assert set(per_episode) == {str(e) for e in expected}
    assert set(per_episode.values()) == {1}
    assert "stopping after the current episode" in log.read_text()


def test_killed_scheduler_restarts_to_exactly_one_clean_sweep_on_sqlite(tmp_path):
    """SIGKILL mid-sweep then restart: every due step-down once, none doubled."""
    assert_kill_and_restart_match_a_clean_sweep(f"sqlite:///{tmp_path / 'due.db'}", tmp_path)


def test_killed_scheduler_restarts_to_exactly_one_clean_sweep_on_postgres(postgres_url, tmp_path):
    """The same against PostgreSQL."""
    assert_kill_and_restart_match_a_clean_sweep(postgres_url, tmp_path)


RUN_LINE = re.compile(r"run at (\S+?):? (sweep started|skipped)")


def test_two_schedulers_on_one_postgres_store_sweep_each_run_once(postgres_url, tmp_path):
    """Advisory lock and run log: one process sweeps each run, the other skips it."""
    build_due_store(postgres_url)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = [start_scheduler(postgres_url, log) for log in logs]

    def runs_so_far() -> dict[str, list[str]]:
        runs: dict[str, list[str]] = {}
        for log in logs:
            for run_at, what in RUN_LINE.findall(log.read_text()):
                runs.setdefault(run_at, []).append(what)
        return runs

    def contested_once_all_stepped_down() -> bool:
        # Both processes have had a say on a run after the sweep recorded everyone.
        return len(stored_step_downs(postgres_url)) >= EPISODES and any(
            sorted(whats) == ["skipped", "sweep started"] for whats in runs_so_far().values()
        )

    wait_for(contested_once_all_stepped_down)  # a busy machine sweeps slower; wait, not sleep
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.wait(timeout=60) == 0
    runs = runs_so_far()
    # A run that fires while an earlier sweep is still going is skipped by both
    # (it coalesces into that sweep); no run is ever swept by both.
    assert all(whats.count("sweep started") <= 1 for whats in runs.values()), runs
    contested = [whats for whats in runs.values() if sorted(whats) == ["skipped", "sweep started"]]
    assert contested, "no run where one process swept and the other stood aside"
    per_episode = Counter(episode for episode, _ in stored_step_downs(postgres_url))
    assert len(per_episode) == EPISODES
    assert set(per_episode.values()) == {1}
