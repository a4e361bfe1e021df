"""The README's read-side examples are what `make demo`'s store really prints."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.cli import iop

README = (Path(__file__).parent.parent / "README.md").read_text()
EPISODE = "20ab1802-9858-545a-bbe1-ce97c3ae589b"  # MRN-001-00021 in the default demo


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store `make demo` makes: 60 clients, 16 weeks, seed 1."""
    url = f"sqlite:///{tmp_path_factory.mktemp('readme') / 'iop.db'}"
    iop("demo", "--store", url)
    return url


def code_blocks(text: str) -> list[list[str]]:
    """The README's fenced code blocks, each as its lines."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def readme_block(first_line_start: str) -> list[str]:
    """The lines of the README's code block whose first line starts with the given text."""
    for lines in code_blocks(README):
        if lines and lines[0].startswith(first_line_start):
            return lines
    raise AssertionError(f"no README block starts with {first_line_start!r}")


def test_the_episodes_example_is_what_the_demo_prints(demo_store):
    """`iop episodes --client MRN-001-00021` prints the README's three lines."""
    command, *shown = readme_block("$ iop episodes --client MRN-001-00021")
    assert command == "$ iop episodes --client MRN-001-00021"
    printed = iop("episodes", "--store", demo_store, "--client", "MRN-001-00021").stdout
    assert printed.splitlines() == shown
    assert EPISODE in shown[-1]


def test_the_history_example_is_what_the_demo_prints(demo_store):
    """The v22/v23 lines in the README are lines of the client's text history."""
    shown = readme_block("v22   SessionAttended")
    printed = iop("audit", "history", "MRN-001-00021", "--store", demo_store).stdout.splitlines()
    start = printed.index(shown[0])
    assert printed[start : start + len(shown)] == shown


def commands_and_output(lines: list[str]) -> list[tuple[list[str], list[str]]]:
    """``$ iop ...`` commands (continued by a trailing backslash) each with the lines shown."""
    found: list[tuple[list[str], list[str]]] = []
    pending = ""
    for line in lines:
        if pending or line.startswith("$ "):
            pending += line.removeprefix("$ ").removesuffix("\\")
            if not line.endswith("\\"):
                found.append((shlex.split(pending)[1:], []))
                pending = ""
        else:
            found[-1][1].append(line)
    return found


def test_the_audit_report_example_is_what_the_demo_prints(demo_store, tmp_path):
    """One report written and disclosed (the id is the run's own); MRN-001-00007 refused."""
    block = readme_block("$ iop audit report MRN-001-00021")
    (written, [written_line]), (refused, [refused_line]) = commands_and_output(block)
    out = str(tmp_path / "report.html")
    place = ["--store", demo_store]
    done = iop(*[out if arg == "report.html" else arg for arg in written], *place)
    shown, _, _ = written_line.partition("; disclosure ")
    printed = done.stdout.strip().replace(out, "report.html")
    assert printed.startswith(shown + "; disclosure ")
    after = iop(*[out if arg == "report.html" else arg for arg in refused], *place, expect=1)
    assert after.stderr.splitlines() == [refused_line]
