"""The read side: views equal a rebuild however they were built, on every backend."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from projections.runner import ViewRunner
from tests.conftest import START, postgres_schema, require_postgres
from tests.program import Program
from tests.strategies import Step, histories


@contextmanager
def fresh_store(backend: str) -> Iterator[str]:
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/views.db"
    else:
        with postgres_schema("p") as url:
            yield url


def chunks(history: list[Step], cuts: list[int]) -> list[list[Step]]:
    edges = sorted({0, len(history), *(min(c, len(history)) for c in cuts)})
    return [history[a:b] for a, b in pairwise(edges)]


def assert_incremental_equals_rebuild(
    backend: str, history: list[Step], cuts: list[int], batch_sizes: list[int]
) -> None:
    clock = SimulatedClock(START)
    with fresh_store(backend) as url, EpisodeService(url, clock=clock) as service:
        program = Program(service, clock, clients=3)
        runner = ViewRunner(service)
        for index, part in enumerate(chunks(history, cuts)):
            program.apply(part)
            runner.batch_size = batch_sizes[index % len(batch_sizes)]
            runner.catch_up()
        assert runner.status().lag == 0
        incremental = runner.views.dump()
        runner.rebuild()
        assert runner.views.dump() == incremental


PROPERTY = {
    "history": histories(),
    "cuts": st.lists(st.integers(0, 40), max_size=4),
    "batch_sizes": st.lists(st.integers(1, 9), min_size=1, max_size=4),
}


@given(**PROPERTY)
def test_incremental_views_equal_a_rebuild_in_memory(history, cuts, batch_sizes):
    """Catching up in random batches between writes gives the rebuilt views."""
    assert_incremental_equals_rebuild("memory", history, cuts, batch_sizes)


@settings(max_examples=20)
@given(**PROPERTY)
def test_incremental_views_equal_a_rebuild_on_sqlite(history, cuts, batch_sizes):
    """The same on a SQLite file: view rows and tracking commit together."""
    assert_incremental_equals_rebuild("sqlite", history, cuts, batch_sizes)


@pytest.fixture
def postgres_server() -> None:
    require_postgres()


@pytest.mark.usefixtures("postgres_server")
@settings(max_examples=6)
@given(**PROPERTY)
def test_incremental_views_equal_a_rebuild_on_postgres(history, cuts, batch_sizes):
    """And on PostgreSQL, for a smaller set of examples."""
    assert_incremental_equals_rebuild("postgres", history, cuts, batch_sizes)
