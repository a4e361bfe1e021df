"""The command says what it does: counts that agree, a runner that reports, no noise."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from iop_episodes.application.service import EpisodeService
from tests.clirun import first_episode, iop, make_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_demo(tmp_path_factory.mktemp("demo") / "demo.db")[len("sqlite:///") :])


def test_the_demo_counts_agree_with_its_schedule(tmp_path):
    """The demo's 'N clients active during W' is the schedule's count for W."""
    done = iop("demo", "--store", f"sqlite:///{tmp_path}/d.db", "--clients", "30", "--weeks", "8")
    assert done.returncode == 0, done.stderr
    summary = re.search(r"(\d+) clients active during (\d{4}-W\d\d)", done.stdout)
    table = re.search(r"hour schedule for (\d{4}-W\d\d): (\d+) clients active", done.stdout)
    assert summary is not None
    assert table is not None
    assert (summary[2], summary[1]) == (table[1], table[2])
    rows = [line for line in done.stdout.splitlines() if re.match(r"MRN-\d{3}-\d{5} ", line)]
    assert len(rows) == int(table[2])


def test_verify_says_what_it_checked(demo):
    """audit verify names the episodes and entries it checked."""
    done = iop("audit", "verify", "--store", f"sqlite:///{demo}")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        r"checked 8 episodes, \d+ entries, \d+ snapshots, \d+ view rows\nverification: ok\n",
        done.stdout,
    )


def test_progress_stays_off_stderr_when_it_is_not_a_terminal(demo, tmp_path):
    """Rebuild and verify print no progress into a pipe: stderr stays empty."""
    copy = tmp_path / "copy.db"
    shutil.copy(demo, copy)
    for command in (("projections", "rebuild"), ("audit", "verify")):
        done = iop(*command, "--store", f"sqlite:///{copy}")
        assert done.returncode == 0
        assert done.stderr == ""


def test_projections_run_says_when_it_starts_what_it_projects_and_when_it_stops(demo, tmp_path):
    """Start, one new entry projected, SIGTERM: three lines on stderr, exit 0."""
    copy = tmp_path / "copy.db"
    shutil.copy(demo, copy)
    url = f"sqlite:///{copy}"
    episode = first_episode(url)
    with EpisodeService(url) as service:
        target = next(
            event.originator_version
            for event in service.history(episode)
            if type(event).__name__ == "SessionAttended"
        )
        service.correct_entry(
            {
                "episode_id": episode,
                "actor": {"id": "rn.diaz", "role": "nurse"},
                "occurred_at": service.clock.now() - timedelta(days=1),
                "target_version": target,
                "action": "void",
                "reason": f"test {uuid.uuid4()}",
            }
        )
    command = [sys.executable, "-m", "iop_episodes.entrypoints.cli", "projections", "run"]
    with subprocess.Popen(
        [*command, "--store", url, "--poll", "0.2"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stderr is not None
        started = process.stderr.readline()
        projected = process.stderr.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        stopped = process.stderr.read()
    assert "projections run: following" in started
    assert "lag 1" in started
    assert "projected 1 events" in projected
    assert "lag 0" in projected
    assert stopped.startswith("projections run: stopped")


def test_progress_is_drawn_when_stderr_is_a_terminal(demo, tmp_path):
    """Rebuild with stderr on a terminal: a progress bar reaching 100% is drawn there."""
    copy = tmp_path / "copy.db"
    shutil.copy(demo, copy)
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "iop_episodes.entrypoints.cli", "projections", "rebuild"]
    with subprocess.Popen(
        [*command, "--store", f"sqlite:///{copy}"], stdout=subprocess.PIPE, stderr=follower
    ) as process:
        os.close(follower)
        drawn = b""
        with contextlib.suppress(OSError):  # the terminal closes when the process ends
            while chunk := os.read(leader, 4096):
                drawn += chunk
        assert process.wait(timeout=60) == 0
    os.close(leader)
    assert b"rebuild: events" in drawn
    assert b"100%" in drawn
