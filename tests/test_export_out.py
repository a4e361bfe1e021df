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


NO_CONSENT = ("--recipient", "Nobody", "--purpose", "treatment", "--as", "dr.lee:physician")


@pytest.mark.parametrize(
    "case",
    [
        (("export", "audit-report", "REF"), ("--consent",), "disclosure-needs-consent", 1),
        (("export", "fhir", "--all"), ("--exception", "research"), "role-may-not", 3),
        (
            ("export", "teds", "--admissions", "--from", "2020-01-01", "--to", "2030-01-01"),
            ("--exception", "research"),
            "role-may-not",
            1,
        ),
    ],
)
def test_a_whole_refused_export_still_prints_its_summary_with_json(demo, tmp_path, case):
    """--json and nothing may leave: exit 1, the ExportSummary naming the rule, no disclosure."""
    command, basis, rule, episodes = case
    args = [client(demo) if part == "REF" else part for part in command]
    out = str(tmp_path / "out")
    before = disclosures(demo)
    done = iop(*args, "--store", demo, "--out", out, *NO_CONSENT, *basis, "--json", expect=1)
    summary = json.loads(done.stdout)
    assert (summary["exported"], summary["disclosure_id"], summary["size_bytes"]) == (0, None, 0)
    assert len(summary["refused"]) == episodes
    assert all(r["rule"].startswith(rule) for r in summary["refused"])
    if command[1] == "teds":  # refused before any episode was read
        assert summary["refused"][0]["episode_id"] is None
    else:
        assert all(r["episode_id"] for r in summary["refused"])
    assert disclosures(demo) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [
        ("export", "fhir", "--all", "--out", "OUT"),
        ("export", "teds", "--admissions", "--from", "2020-01-01", "--to", "2030-01-01"),
        ("export", "audit-report", "REF"),
        ("audit", "prove", "REF", "--out", "OUT"),
        ("audit", "report", "REF", "--out", "OUT"),
    ],
)
def test_a_sealed_store_without_its_key_refuses_an_export_in_one_line(
    demo, tmp_path, monkeypatch, command
):
    """No IOP_INTEGRITY_KEY for a sealed store: exit 4 and exactly one line on stderr."""
    reference = client(demo)
    monkeypatch.delenv("IOP_INTEGRITY_KEY")
    out = str(tmp_path / "out")
    args = [{"REF": reference, "OUT": out}.get(part, part) for part in command]
    done = iop(*args, "--store", demo, *AUDIT, expect=4)
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "IOP_INTEGRITY_KEY is not set" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_audit_prove_takes_a_client_reference(demo, tmp_path):
    """audit prove REF writes the bundle of the client's one episode."""
    reference = client(demo)
    out = tmp_path / "bundle.json"
    done = iop("audit", "prove", reference, "--store", demo, "--out", str(out), *AUDIT, "--json")
    episodes = json.loads(iop("episodes", "--store", demo, "--json").stdout)
    wanted = next(row["episode_id"] for row in episodes if row["client_ref"] == reference)
    assert json.loads(done.stdout)["episode_id"] == wanted
    assert out.is_file()


@pytest.mark.parametrize("episode", ["MRN-NOBODY", "00000000-0000-4000-8000-000000000000"])
def test_audit_prove_of_an_unknown_episode_is_a_usage_error(demo, tmp_path, episode):
    """An unknown client reference or episode id: exit 2, one line, no disclosure, no file."""
    args = ("audit", "prove", episode, "--store", demo, "--out", str(tmp_path / "b.json"), *AUDIT)
    refused_usage(demo, *args)
    assert list(tmp_path.iterdir()) == []


def test_audit_verify_counts_disclosures_apart_from_episodes(demo):
    """After an export, verify names 3 episodes and the disclosures: text, --json, --jobs 2."""
    iop("export", "audit-report", client(demo), "--store", demo, *AUDIT)
    recorded = disclosures(demo)
    plural = "s" if recorded != 1 else ""
    line = iop("audit", "verify", "--store", demo).stdout.splitlines()[0]
    assert line.startswith(f"checked 3 episodes and {recorded} disclosure{plural}, ")
    report = json.loads(iop("audit", "verify", "--store", demo, "--json").stdout)
    assert (report["episodes"], report["disclosures"]) == (3, recorded)
    sharded = iop("audit", "verify", "--store", demo, "--json", "--jobs", "2").stdout
    assert json.loads(sharded) == report  # counted in the one pass, however it is split


@pytest.mark.parametrize("given", ["2026-03-01", "2026-03-01T14:00"])
def test_a_time_without_offset_is_refused_with_examples_that_are_accepted(demo, given):
    """--since without an offset: exit 2 naming examples; both examples are then accepted."""
    args = ("export", "fhir", "--all", "--store", demo, *AUDIT)
    line = iop(*args, "--since", given, expect=2).stderr
    examples = line.split("such as ", 1)[1].split(" (see", 1)[0].split(" or ")
    assert len(examples) == 2
    for example in examples:
        iop(*args, "--since", example)
