"""The shipped state machine, run on memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import settings

from iop_episodes.testing.stateful import EpisodeMachine
from tests.conftest import postgres_schema, require_postgres

TestEpisodeMachineInMemory = EpisodeMachine.TestCase
TestEpisodeMachineInMemory.settings = settings(stateful_step_count=40, deadline=None)


class SQLiteEpisodeMachine(EpisodeMachine):
    store_url: ClassVar[str] = ""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        type(self).store_url = f"sqlite:///{Path(self.tmp.name) / 'machine.db'}"
        super().__init__()

    def teardown(self) -> None:
        super().teardown()
        self.tmp.cleanup()


TestEpisodeMachineOnSQLite = SQLiteEpisodeMachine.TestCase
TestEpisodeMachineOnSQLite.settings = settings(
    max_examples=15, stateful_step_count=30, deadline=None
)


class PostgresEpisodeMachine(EpisodeMachine):
    store_url: ClassVar[str] = ""

    def __init__(self) -> None:
        self.schema = postgres_schema("sm")
        type(self).store_url = self.schema.__enter__()
        super().__init__()

    def teardown(self) -> None:
        super().teardown()
        self.schema.__exit__(None, None, None)


@pytest.fixture(autouse=False)
def _postgres() -> None:
    require_postgres()


@pytest.mark.usefixtures("_postgres")
class TestEpisodeMachineOnPostgres(PostgresEpisodeMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = settings(max_examples=8, stateful_step_count=25, deadline=None)
