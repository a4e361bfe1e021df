"""The command says what it does: counts that agree, a runner that reports, no noise."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import shutil
import signal
import sqlite3
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


DISCLOSING = ("--recipient", "County EHR", "--purpose", "treatment", "--as", "dr.lee:physician")
CLIENT = "MRN-001-00000"  # the demo's first client, who consents to County EHR
PROGRESSING = {
    "simulating weeks": ("demo", "--store", "sqlite:///OUT", "--clients", "3", "--weeks", "2"),
    "catch-up: events": ("projections", "catch-up"),
    "rebuild: events": ("projections", "rebuild"),
    "verify: events": ("audit", "verify"),
    "export fhir: bundles": ("export", "fhir", CLIENT, *DISCLOSING, "--consent", "--out", "OUT"),
    "export teds: reading episodes": (
        *("export", "teds", "--admissions", "--from", "2026-01-01", "--to", "2026-12-31"),
        *DISCLOSING[:4],
        *("--as", "pd.gray:program_director", "--exception", "audit-and-evaluation"),
        *("--out", "OUT"),
    ),
    "export audit-report: the episode": (
        *("export", "audit-report", CLIENT, *DISCLOSING, "--consent", "--out", "OUT"),
    ),
}
"""Each long command with the label its progress bar shows; OUT is a path to write to."""


def forget_views(store: Path) -> None:
    """Drop the view tables and their tracking: a catch-up then projects the whole log."""
    with sqlite3.connect(store) as conn:
        tables = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'iop_%'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f'DROP TABLE "{table}"')
        conn.execute("DELETE FROM tracking")


def progressing(label: str, demo: Path, tmp_path: Path) -> list[str]:
    """The command for ``label``, on a copy of the demo store (or, for the demo, a new one)."""
    copy = tmp_path / "copy.db"
    shutil.copy(demo, copy)
    if label.startswith("catch-up"):
        forget_views(copy)
    command = [part.replace("OUT", str(tmp_path / "out")) for part in PROGRESSING[label]]
    return command if "--store" in command else [*command, "--store", f"sqlite:///{copy}"]


@pytest.mark.parametrize("label", PROGRESSING)
def test_progress_stays_off_stderr_when_it_is_not_a_terminal(demo, tmp_path, label):
    """Demo, catch-up, rebuild, verify and the exports draw nothing into a pipe.

    stderr stays empty, but for the exports' one summary line.
    """
    done = iop(*progressing(label, demo, tmp_path))
    assert done.returncode == 0, done.stderr
    assert label not in done.stderr
    assert "%" not in done.stderr
    assert "\x1b" not in done.stderr  # no terminal control sequence either
    lines = done.stderr.splitlines()
    assert lines == [] or (label.startswith("export") and len(lines) == 1), done.stderr


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


def on_a_terminal(arguments: list[str]) -> bytes:
    """What ``iop ARGUMENTS`` draws on stderr when stderr is a terminal (a pty)."""
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "iop_episodes.entrypoints.cli", *arguments]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower) as process:
        os.close(follower)
        drawn = b""
        with contextlib.suppress(OSError):  # the terminal closes when the process ends
            while chunk := os.read(leader, 4096):
                drawn += chunk
        assert process.wait(timeout=120) == 0, drawn
    os.close(leader)
    return drawn


@pytest.mark.parametrize("label", PROGRESSING)
def test_progress_is_drawn_when_stderr_is_a_terminal(demo, tmp_path, label):
    """With stderr on a terminal each command draws its labelled bar there, reaching 100%."""
    drawn = on_a_terminal(progressing(label, demo, tmp_path))
    assert label.encode() in drawn
    assert b"100%" in drawn
