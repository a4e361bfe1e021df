"""The PostgreSQL scaling harness: writers, a runner and a scheduler in a database of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import POSTGRES_SERVER, require_postgres

SCRIPT = Path(__file__).parent.parent / "scripts" / "scale_postgres.py"


def bench_databases() -> set[str]:
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'iop_scale_%'")
        return {name for (name,) in rows.fetchall()}


@pytest.mark.postgres
@pytest.mark.slow
def test_two_writers_report_throughput_and_lag_and_leave_no_database_behind():
    """One and two writers: commands stored, lag measured, the run's database dropped."""
    require_postgres()
    before = bench_databases()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "2", "--writers", "1", "2", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loads = json.loads(done.stdout)
    assert [load["writers"] for load in loads] == [1, 2]
    for load in loads:
        assert load["commands"] > 0
        assert load["commands_per_second"] > 0
        assert 0 <= load["lag_p50_ms"] <= load["lag_p95_ms"]
    assert bench_databases() <= before
