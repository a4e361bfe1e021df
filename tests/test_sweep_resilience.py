"""One episode's bad data is that episode's error; decisions come from the store, not views."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import run_stepdown_sweep
from iop_episodes.domain import commands, events
from iop_episodes.domain.entries import entry_fields
from iop_episodes.domain.episode import Episode
from iop_episodes.entrypoints.cli import main
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import due_program
from projections.candidates import ScheduleCandidates
from projections.runner import ViewRunner
from projections.schedule import program_schedule
from projections.worklist import build_worklist
from tests.cli import iop
from tests.conftest import START


@pytest.fixture
def program(sqlite_url: str) -> Iterator[tuple[EpisodeService, SimulatedClock, list[UUID]]]:
    clock = SimulatedClock(START)
    with EpisodeService(sqlite_url, clock=clock, timezone="America/New_York") as service:
        yield service, clock, due_program(service, clock, episodes=4)


def poison(service: EpisodeService, episode_id: UUID, clock: SimulatedClock) -> None:
    """Store 23 sessions of 8 hours on one day past the rules, as an old release could have."""
    episode: Episode = service.repository.get(episode_id)
    at = clock.now() - timedelta(days=3)
    for _ in range(23):
        command = commands.RecordSession.model_validate(
            factories.session(episode_id, at, minutes=480)
        )
        received = command.as_received()
        episode.trigger_event(
            events.SessionAttended,
            **entry_fields(
                events.SessionAttended,
                episode_id=episode_id,
                version=episode.version + 1,
                previous=episode.chain,
                cmd=command,
                received=received,
                payload=command.payload_json(received),
                now=clock.now(),
            ),
        )
    service.save(episode)


def test_a_sweep_over_a_store_with_one_poisoned_episode_steps_the_others_down(program):
    """184 hours in one week fail that episode's evidence; the other three step down."""
    service, clock, episodes = program
    poison(service, episodes[0], clock)
    summary = run_stepdown_sweep(service, ScheduleCandidates(service), clock.now())
    outcomes = {o.episode_id: o for o in summary.outcomes}
    assert outcomes[episodes[0]].outcome == "error"
    assert "attended_hours" in outcomes[episodes[0]].reason
    assert [outcomes[e].outcome for e in episodes[1:]] == ["stepped-down"] * 3
    assert summary.errors == 1


def test_the_sweep_command_exits_1_when_an_episode_failed_and_0_otherwise(
    program, sqlite_url, capsys
):
    """``iop stepdown run`` says that errors happened through its exit code."""
    service, clock, episodes = program
    as_of = clock.now().isoformat()
    assert main(["stepdown", "run", "--store", sqlite_url, "--as-of", as_of, "--dry-run"]) == 0
    poison(service, episodes[0], clock)
    assert main(["stepdown", "run", "--store", sqlite_url, "--as-of", as_of]) == 1
    assert "errors 1" in capsys.readouterr().out


def test_iop_stepdown_run_over_a_store_with_a_poisoned_episode_exits_1_naming_it(
    program, sqlite_url
):
    """Run as a subprocess: the others step down, the error is named, and the exit code is 1."""
    service, clock, episodes = program
    poison(service, episodes[0], clock)
    as_of = clock.now().isoformat()
    done = iop("stepdown", "run", "--store", sqlite_url, "--as-of", as_of, expect=1)
    (failed,) = [line for line in done.stdout.splitlines() if " error " in line]
    assert failed.startswith(str(episodes[0]))
    assert "attended_hours" in failed
    assert "errors 1" in done.stdout.splitlines()[-1]
    assert "Traceback" not in done.stderr
    again = iop("stepdown", "run", "--store", sqlite_url, "--as-of", as_of, "--json", expect=1)
    report = json.loads(again.stdout)
    assert report["counts"]["error"] == 1
    (error,) = [d for d in report["decisions"] if d["outcome"] == "error"]
    assert error["episode_id"] == str(episodes[0])
    assert report["examined"] == 4


def test_read_models_leave_out_a_poisoned_episode_and_read_the_rest(program):
    """The program schedule and the worklist read every other episode."""
    service, clock, episodes = program
    poison(service, episodes[0], clock)
    runner = ViewRunner(service)
    runner.catch_up()
    rows = program_schedule(runner.views, "2026-W13")
    assert len(rows) == 4
    worklist = build_worklist(runner.views, clock.now())
    hinted = {
        c.episode_id for c in worklist.clients for i in c.attention if i.kind == "step-down-due"
    }
    assert hinted == {str(e) for e in episodes[1:]}


def test_editing_an_activity_row_changes_neither_the_decision_nor_its_evidence(program, sqlite_url):
    """The views said no attendance; the recorded evidence is the episode's own 12 hours a week."""
    service, clock, episodes = program
    planned = run_stepdown_sweep(service, ScheduleCandidates(service), clock.now(), dry_run=True)
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as connection:
        changed = connection.execute(
            "UPDATE iop_activity SET minutes = 0, count = 0 WHERE episode_id = ?",
            (str(episodes[1]),),
        ).rowcount
    assert changed > 0
    summary = run_stepdown_sweep(service, ScheduleCandidates(service), clock.now())
    before = {o.episode_id: o.decision for o in planned.outcomes}
    after = {o.episode_id: o.decision for o in summary.outcomes}
    assert after == before
    stored = [e for e in service.history(episodes[1]) if isinstance(e, events.StepDown)][-1]
    assert [w["attended_hours"] for w in stored.payload["evidence"]] == ["12"] * 4


def test_the_evidence_applies_voids_and_amendments_from_the_episodes_entries(program):
    """A voided 4-hour session and one amended to 1 hour leave 5 of 12 hours that week."""
    service, clock, episodes = program
    history = list(service.history(episodes[0]))
    last_week = [e for e in history if isinstance(e, events.SessionAttended)][-3:]
    voided, amended = last_week[0].originator_version, last_week[1].originator_version
    correction = factories.correction(episodes[0], clock.now(), target_version=voided)
    service.correct_entry(correction)
    service.correct_entry(
        {
            **correction,
            "target_version": amended,
            "action": "amend",
            "amended": {"modality": "group", "minutes": 60},
        }
    )
    basis = service.decision_basis(episodes[0], clock.now(), 4)
    assert basis is not None
    assert [str(w.attended_hours) for w in basis.weeks] == ["12", "12", "12", "5"]
