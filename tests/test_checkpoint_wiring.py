"""Where checkpoints are made: after each sweep, at the end of the demo; never in the digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.checkpoints import make_checkpoint
from iop_episodes.audit.integrity import store_digest
from iop_episodes.audit.witness import Witness
from iop_episodes.entrypoints.cli import main
from iop_episodes.entrypoints.scheduler import SweepJob, run_key
from iop_episodes.infrastructure.sweeplock import MemorySweepGuard
from iop_episodes.testing.helpers import active_episode
from projections.candidates import ScheduleCandidates
from tests.conftest import START
from tests.sealing import TEST_KEY, TEST_KEY_TEXT, seal_rows


def test_a_checkpoint_follows_every_sweep_the_job_runs_and_none_it_skips() -> None:
    """SweepJob calls its checkpoint after a sweep; a run the guard skips makes none."""
    clock = SimulatedClock(START)
    made: list[str] = []
    with EpisodeService("memory://", clock=clock) as service:
        active_episode(service, clock)
        job = SweepJob(
            service,
            ScheduleCandidates(service),
            MemorySweepGuard(),
            checkpoint=lambda: made.append("checkpoint"),
        )
        assert job.run(run_key(clock.now())) is not None
        assert job.run(run_key(clock.now())) is None  # already swept
    assert made == ["checkpoint"]


def test_a_failing_checkpoint_is_logged_and_the_sweep_still_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A checkpoint that raises is logged; the sweep's summary is returned all the same."""
    clock = SimulatedClock(START)

    def broken() -> None:
        raise RuntimeError("witness disk full")

    with EpisodeService("memory://", clock=clock) as service:
        job = SweepJob(service, ScheduleCandidates(service), MemorySweepGuard(), checkpoint=broken)
        assert job.run(run_key(clock.now())) is not None
    assert "checkpoint failed" in caplog.text
    assert "witness disk full" in caplog.text


def test_the_store_digest_leaves_checkpoints_out(sqlite_url: str, tmp_path: Path) -> None:
    """Making a checkpoint writes its tables but changes no store digest."""
    clock = SimulatedClock(START)
    with EpisodeService(sqlite_url, clock=clock) as service:
        active_episode(service, clock)
    seal_rows(sqlite_url)
    with EpisodeService(sqlite_url, clock=clock) as service:
        before = store_digest(service)
        assert make_checkpoint(service, TEST_KEY, Witness.at(str(tmp_path / "w"))).refused is None
        assert store_digest(service) == before


def demo_lines(
    url: str, witness: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    monkeypatch.setenv("IOP_INTEGRITY_KEY", TEST_KEY_TEXT)
    argv = ["demo", "--store", url, "--clients", "3", "--weeks", "2", "--witness", str(witness)]
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def test_the_demo_ends_with_a_deterministic_checkpoint_line_before_its_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a key the demo prints 'checkpoint: ...' then the digest; both repeat for one seed."""
    runs = [
        demo_lines(f"sqlite:///{tmp_path / name}.db", tmp_path / name, capsys, monkeypatch)
        for name in ("one", "two")
    ]
    assert runs[0][-2:] == runs[1][-2:]
    assert runs[0][-2].startswith("checkpoint: size ")
    assert runs[0][-1].startswith("store digest: ")
    assert (tmp_path / "one").read_text() == (tmp_path / "two").read_text()
    assert len((tmp_path / "one").read_text().splitlines()) == 1


def test_the_demo_without_a_key_says_there_is_no_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No IOP_INTEGRITY_KEY: the line before the digest says so; the demo still succeeds."""
    monkeypatch.delenv("IOP_INTEGRITY_KEY", raising=False)
    assert main(["demo", "--store", f"sqlite:///{tmp_path / 'd.db'}", "--clients", "3",
                 "--weeks", "2"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "checkpoint: none (IOP_INTEGRITY_KEY is not set)"


def test_the_scheduler_refuses_checkpoint_every_without_a_key(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`iop scheduler --checkpoint-every` with no IOP_INTEGRITY_KEY: exit 2, one line naming it."""
    monkeypatch.delenv("IOP_INTEGRITY_KEY", raising=False)
    assert main(["scheduler", "--store", sqlite_url, "--checkpoint-every", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "IOP_INTEGRITY_KEY" in err
