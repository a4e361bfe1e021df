"""The README's promises: its embedding example runs and its commands exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_embedding_example_runs_as_pasted():
    """The Python block in the README runs and prints what it says."""
    example = python_blocks()[0]
    done = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    printed = done.stdout.splitlines()
    assert printed[0].startswith("[one-plan-per-episode]")
    assert printed[1] == "active 9"


def test_export_example_runs_as_pasted():
    """The exports block refuses without consent, then exports a bundle and a TEDS file."""
    (example,) = python_blocks()[1:]
    done = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.stdout.splitlines() == [
        "disclosure-needs-consent-in-force",
        "collection 7",
        "A, True",
    ]


def test_the_two_commands_are_make_targets():
    """`make demo` and `make test` exist and CI runs the test one."""
    dry = subprocess.run(
        ["make", "-n", "demo", "test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "iop demo" in dry.stdout
    assert "pytest" in dry.stdout
    assert "make test" in (ROOT / ".ci" / "run").read_text()
