"""The soak harness, briefly: writers, scheduler and projection runner together."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SOAK = Path(__file__).parent.parent / "scripts" / "soak.py"


def soak(url: str, logs: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--store",
            url,
            "--seconds",
            "5",
            "--rate",
            "80",
            "--episodes",
            "30",
            "--logs",
            str(logs),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def assert_report(output: str) -> None:
    held = float(re.search(r"commands per second held: ([\d.]+)", output).group(1))  # type: ignore[union-attr]
    assert held > 40
    assert re.search(r"latency p50 [\d.]+ ms, p99 [\d.]+ ms", output)
    assert "stopped cleanly: True" in output
    assert "views after catch-up equal a rebuild: True" in output
    assert output.rstrip().endswith("verification: ok")


def test_short_soak_on_sqlite(tmp_path):
    """Five seconds at 80 commands/s on a SQLite file, then everything verifies."""
    assert_report(soak(f"sqlite:///{tmp_path / 'soak.db'}", tmp_path / "logs"))


def test_short_soak_on_postgres(postgres_url, tmp_path):
    """The same on PostgreSQL."""
    assert_report(soak(postgres_url, tmp_path / "logs"))
