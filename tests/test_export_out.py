"""Every export's ``--out`` is checked before its disclosure is recorded (exit 2, one line)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import iop
from tests.sealing import TEST_KEY_TEXT

AUDIT = (
    "--recipient",
    "State surveyor",
    "--purpose",
    "audit",
    "--as",
    "au.hill:auditor",
    "--exception",
    "audit-and-evaluation",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sealed demo store with a checkpoint, so every export would otherwise succeed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IOP_INTEGRITY_KEY", TEST_KEY_TEXT)
        url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'iop.db'}"
        iop("demo", "--store", url, "--clients", "3", "--weeks", "2")
        yield url


@pytest.fixture(autouse=True)
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOP_INTEGRITY_KEY", TEST_KEY_TEXT)


def disclosures(url: str) -> int:
    return len(json.loads(iop("audit", "disclosures", "--store", url, "--json").stdout))


def client(url: str) -> str:
    """A client reference of the demo store that names one episode."""
    rows = json.loads(iop("episodes", "--store", url, "--json").stdout)
    return str(rows[0]["client_ref"])


def exports(url: str, out: str) -> dict[str, tuple[str, ...]]:
    """Each export to a file, spelled with ``out`` as its ``--out``."""
    reference = client(url)
    store = ("--store", url, "--out", out, *AUDIT)
    return {
        "teds": ("export", "teds", "--admissions", "--from", "2020-01-01", "--to", "2030-01-01"),
        "audit-report": ("export", "audit-report", reference),
        "audit prove": ("audit", "prove", reference),
        "audit report": ("audit", "report", reference),
    } | {"store": store}


def refused_usage(url: str, *args: str) -> str:
    """Run ``args``: exit 2, one line on stderr, no disclosure recorded; that line."""
    before = disclosures(url)
    done = iop(*args, expect=2)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert disclosures(url) == before
    return lines[0]


@pytest.mark.parametrize("command", ["teds", "audit-report", "audit prove", "audit report"])
def test_a_file_export_to_a_directory_is_refused_before_it_is_disclosed(demo, tmp_path, command):
    """--out an existing directory: exit 2 naming --out, nothing recorded, nothing written."""
    spelled = exports(demo, str(tmp_path))
    line = refused_usage(demo, *spelled[command], *spelled["store"])
    assert "--out" in line
    assert "is a directory" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["teds", "audit-report", "audit prove", "audit report"])
def test_a_file_export_under_a_missing_directory_is_refused_before_it_is_disclosed(
    demo, tmp_path, command
):
    """--out under a folder that does not exist: exit 2, nothing recorded."""
    spelled = exports(demo, str(tmp_path / "missing" / "out.txt"))
    assert "--out" in refused_usage(demo, *spelled[command], *spelled["store"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", ["file", "/proc/nope/x"])
def test_a_fhir_export_to_a_file_or_an_unmakeable_folder_is_refused_before_it_is_disclosed(
    demo, tmp_path, out
):
    """export fhir --out an existing file, or a folder that cannot be made: exit 2, nothing kept."""
    target = tmp_path / out if out == "file" else Path(out)
    if out == "file":
        target.write_text("kept\n", encoding="utf-8")
    args = ("export", "fhir", "--all", "--store", demo, "--out", str(target), *AUDIT)
    assert "--out" in refused_usage(demo, *args)
    if out == "file":
        assert target.read_text(encoding="utf-8") == "kept\n"
        assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_fhir_export_into_an_existing_folder_writes_its_bundles_there(demo, tmp_path):
    """An existing folder receives one file per bundle and no hidden stand-in is left."""
    args = ("export", "fhir", "--all", "--store", demo, "--out", str(tmp_path), *AUDIT)
    iop(*args)
    names = [p.name for p in tmp_path.iterdir()]
    assert names
    assert all(name.endswith(".json") and not name.startswith(".") for name in names)


@pytest.mark.parametrize("companion", ["", "-wal", "-shm", "-journal"])
@pytest.mark.parametrize("command", ["teds", "audit-report", "audit prove", "audit report"])
def test_an_export_is_never_written_over_the_store(demo, command, companion):
    """--out the store's file (or its -wal/-shm/-journal): exit 2, nothing recorded."""
    store_file = Path(demo[len("sqlite:///") :])
    before = store_file.read_bytes()[:16]
    spelled = exports(demo, str(store_file) + companion)
    assert "store" in refused_usage(demo, *spelled[command], *spelled["store"])
    assert store_file.read_bytes()[:16] == before == b"SQLite format 3\x00"


def test_an_export_is_never_written_over_another_sqlite_database(demo, tmp_path):
    """--out an existing SQLite file that is not the store: exit 2, the file unchanged."""
    other = tmp_path / "other.db"
    other.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84)
    spelled = exports(demo, str(other))
    assert "SQLite" in refused_usage(demo, *spelled["audit report"], *spelled["store"])
    assert other.read_bytes() == b"SQLite format 3\x00" + b"\x00" * 84
