"""Running the ``iop`` command as a subprocess, as an operator would, exit code always checked."""

from __future__ import annotations

import subprocess
import sys


def iop(*args: str, expect: int = 0, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``iop ARGS``; fail the test unless it exits with ``expect``."""
    done = subprocess.run(
        [sys.executable, "-m", "iop_episodes.entrypoints.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    assert done.returncode == expect, (
        f"iop {' '.join(args)} exited {done.returncode}, expected {expect}\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    return done
