"""The shipped state machine, run on memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from iop_episodes.testing.stateful import EpisodeMachine

TestEpisodeMachineInMemory = EpisodeMachine.TestCase
TestEpisodeMachineInMemory.settings = settings(stateful_step_count=40, deadline=None)


def test_the_machine_holds_on_a_sqlite_file(sqlite_url: str) -> None:
    """Every run opens a new episode in one SQLite store; the model's predictions hold."""
    run_state_machine_as_test(
        lambda: EpisodeMachine(sqlite_url),
        settings=settings(max_examples=15, stateful_step_count=30, deadline=None),
    )


@pytest.mark.postgres
def test_the_machine_holds_on_postgres(postgres_url: str) -> None:
    """The same on PostgreSQL."""
    run_state_machine_as_test(
        lambda: EpisodeMachine(postgres_url),
        settings=settings(max_examples=8, stateful_step_count=25, deadline=None),
    )
