"""Checkpoints under crashes and concurrent writers: the store verifies, the witness holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.checkpoints import make_checkpoint
from iop_episodes.audit.consistency import verify_checkpoints
from iop_episodes.audit.integrity import verify_store
from iop_episodes.audit.witness import Witness
from iop_episodes.testing.helpers import planned_episodes, stored_count
from tests.sealing import TEST_KEY, TEST_KEY_TEXT, seal_rows

KEYS = {TEST_KEY.key_id: TEST_KEY.public_key}
ENV = {**os.environ, "IOP_INTEGRITY_KEY": TEST_KEY_TEXT, "PYTHONUNBUFFERED": "1"}


def shared_episodes(url: str, count: int) -> list[UUID]:
    clock = SimulatedClock(datetime(2026, 3, 2, 13, tzinfo=UTC))
    with EpisodeService(url, clock=clock) as service:
        episodes = planned_episodes(service, clock, count, "MRN-K")
    seal_rows(url)
    return episodes


def iop(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "iop_episodes.entrypoints.cli", *argv],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def writer(url: str, episodes: list[UUID], *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.writer", url, ",".join(map(str, episodes)), *options],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def assert_consistent_and_fully_attested(url: str, witness: Witness) -> None:
    """A last checkpoint signs everything in; the chain and every witness line hold."""
    seal_rows(url)  # entries written by a service without the key's seals (see tests.sealing)
    with EpisodeService(url) as service:
        made = make_checkpoint(service, TEST_KEY, witness)
        assert made.refused is None
        assert verify_store(service) == []
        attestation = verify_checkpoints(service, witness.lines(), KEYS)
        entries = stored_count(service)
    assert attestation.findings == []
    assert attestation.attested == entries == made.checkpoint.size
    sizes = [json.loads(line.text)["size"] for line in witness.lines()]
    assert sizes == sorted(sizes)


def test_a_crash_before_or_during_a_checkpoint_leaves_a_consistent_store(
    sqlite_url: str, tmp_path: Path
) -> None:
    """SIGKILL a roster writer, then `iop audit checkpoint` at several points: all consistent."""
    witness = Witness.at(str(tmp_path / "witness.jsonl"))
    episodes = shared_episodes(sqlite_url, 10)
    assert (
        iop("audit", "checkpoint", "--store", sqlite_url, "--witness", str(witness.path)).wait(
            timeout=60
        )
        == 0
    )
    rosters = writer(sqlite_url, episodes, "--rosters", "100")
    assert rosters.stdout is not None
    for line in rosters.stdout:  # ends early only if the writer died
        if "roster 2 stored" in line:
            break
    assert rosters.poll() is None, rosters.stderr.read() if rosters.stderr else ""
    rosters.send_signal(signal.SIGKILL)
    rosters.wait()
    seal_rows(sqlite_url)
    for delay in (0.0, 0.9):
        checkpoint = iop(
            "audit", "checkpoint", "--store", sqlite_url, "--witness", str(witness.path)
        )
        time.sleep(delay)
        checkpoint.send_signal(signal.SIGKILL)
        checkpoint.wait()
        with EpisodeService(sqlite_url) as service:
            assert verify_store(service) == []
            assert verify_checkpoints(service, witness.lines(), KEYS).findings == []
    assert_consistent_and_fully_attested(sqlite_url, witness)


def concurrent_writers_with_checkpoints(url: str, tmp_path: Path, commands: int) -> None:
    witness = Witness.at(str(tmp_path / "witness") + "/")
    episodes = shared_episodes(url, 12)
    log = tmp_path / "scheduler.log"
    scheduler = subprocess.Popen(  # the real scheduler process, its log in a file
        [sys.executable, "-m", "iop_episodes.entrypoints.cli", "scheduler", "--store", url,
         "--cron", "0 0 1 1 *", "--checkpoint-every", "0.3", "--witness", str(witness.path)],
        env=ENV,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    writers = [
        writer(
            url,
            episodes,
            "--worker",
            str(n),
            "--count",
            str(commands),
            "--ledger",
            str(tmp_path / f"l{n}"),
        )
        for n in range(3)
    ]
    side = [
        iop("audit", "checkpoint", "--store", url, "--witness", str(witness.path)) for _ in "ab"
    ]
    for process in writers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    for process in side:
        assert process.wait(timeout=120) in {0, 1}  # 1: stopped short of an unsealed entry
    # after its first sweep, then on the interval (a loaded machine may start it late)
    wait_for(lambda: log.read_text().count("checkpoint: size ") >= 3)
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(timeout=60) == 0, log.read_text()
    assert len(list(witness.lines())) >= 3
    assert_consistent_and_fully_attested(url, witness)


def test_concurrent_writers_and_checkpoints_leave_a_verifying_store_on_sqlite(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Three writers, the scheduler checkpointing every 0.3 s and two `iop audit checkpoint`."""
    concurrent_writers_with_checkpoints(sqlite_url, tmp_path, 60)


@pytest.mark.postgres
def test_concurrent_writers_and_checkpoints_leave_a_verifying_store_on_postgres(
    postgres_url: str, tmp_path: Path
) -> None:
    """The same on PostgreSQL: checkpoints serialise on an advisory lock."""
    concurrent_writers_with_checkpoints(postgres_url, tmp_path, 30)
