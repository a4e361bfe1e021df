"""The shipped state machine, run on memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
from hypothesis import settings

from iop_episodes.testing.stateful import EpisodeMachine
from tests.conftest import POSTGRES_SERVER, require_postgres

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
        self.schema = f"sm_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.schema}")
        type(self).store_url = f"{POSTGRES_SERVER}?schema={self.schema}"
        super().__init__()

    def teardown(self) -> None:
        super().teardown()
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {self.schema} CASCADE")


@pytest.fixture(autouse=False)
def _postgres() -> None:
    require_postgres()


@pytest.mark.usefixtures("_postgres")
class TestEpisodeMachineOnPostgres(PostgresEpisodeMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = settings(max_examples=8, stateful_step_count=25, deadline=None)
