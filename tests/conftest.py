"""Shared fixtures: stores on every backend, a simulated clock, a service."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.testing.helpers import stored_count

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday morning in New York


POSTGRES_FIXTURES = frozenset({"postgres_url", "postgres_server", "_postgres", "stores"})
"""Fixtures that open a PostgreSQL store (``stores`` does when a server is up)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``postgres`` every test that reaches the server, so ``-m "not postgres"`` runs none.

    A test reaches it through one of ``POSTGRES_FIXTURES`` or through a
    parameter whose value is ``"postgres"`` (``store_url``, ``crash_store``,
    a backend name).
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if fixtures & POSTGRES_FIXTURES or "postgres" in params:
            item.add_marker(pytest.mark.postgres)


def postgres_available() -> bool:
    import psycopg  # noqa: PLC0415  (only PostgreSQL tests need the driver)

    try:
        psycopg.connect(POSTGRES_SERVER, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def require_postgres() -> None:
    """Skip on a laptop without a server; fail where IOP_REQUIRE_POSTGRES=1 (CI)."""
    if postgres_available():
        return
    if os.environ.get("IOP_REQUIRE_POSTGRES") == "1":
        pytest.fail("IOP_REQUIRE_POSTGRES=1 but no PostgreSQL at 127.0.0.1:5432")
    pytest.skip("no PostgreSQL at 127.0.0.1:5432 and IOP_REQUIRE_POSTGRES is unset")


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A PostgreSQL store URL in a schema of its own, dropped afterwards (the one helper)."""
    import psycopg  # noqa: PLC0415  (only PostgreSQL tests need the driver)

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_SERVER}?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL store in a schema of its own, dropped afterwards."""
    require_postgres()
    with postgres_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'iop.db'}"


POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def store_url(request: pytest.FixtureRequest) -> str:
    """Every service-level test runs on each backend."""
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=["sqlite", POSTGRES])
def durable_url(request: pytest.FixtureRequest) -> str:
    """A store that outlives its process: a SQLite file, then PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def refused(
    service: EpisodeService, error: type[errors.EpisodeRuleError], call: Callable[[], Any]
) -> errors.EpisodeRuleError:
    """Run ``call``, expect ``error``, and check that nothing was stored."""
    before = stored_count(service)
    with pytest.raises(error) as raised:
        call()
    assert stored_count(service) == before
    return raised.value


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def service(store_url: str, clock: SimulatedClock) -> Iterator[EpisodeService]:
    with EpisodeService(store_url, clock=clock, timezone="America/New_York") as app:
        yield app
