"""The auditor's commands end to end: checkpoint, pubkey, verify with a witness, prove."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.keyring import KeyFileError, key_line, parse_keys
from iop_episodes.entrypoints.cli import main
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from tests import tamper
from tests.conftest import START
from tests.sealing import OTHER_KEY, TEST_KEY, TEST_KEY_TEXT, seal_rows, strip_seal

SCRIPT = Path(__file__).parent.parent / "scripts" / "verify_bundle.py"
DISCLOSED = (
    "--recipient",
    "State auditor",
    "--purpose",
    "audit",
    "--as",
    "au.hill:auditor",
    "--exception",
    "audit-and-evaluation",
)
"""A bundle leaves the program: the disclosure options every prove names."""


def sealed_store(url: str) -> list[UUID]:
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock) as service:
        episodes = [active_episode(service, clock) for _ in range(3)]
        for episode in episodes * 2:
            service.record_session(factories.session(episode, advance(clock, hours=1)))
    seal_rows(url)
    return episodes


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOP_INTEGRITY_KEY", TEST_KEY_TEXT)
    monkeypatch.delenv("IOP_WITNESS", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def prove(
    capsys: pytest.CaptureFixture[str],
    episode: object,
    url: str,
    out_file: object,
    how: tuple[str, ...] = DISCLOSED,
) -> tuple[int, str, str]:
    """``iop audit prove EPISODE --store URL --out FILE`` with the disclosure options ``how``."""
    return run(capsys, "audit", "prove", str(episode), "--store", url, "--out", str(out_file), *how)


def test_checkpoint_without_a_key_fails_naming_the_setting(
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No IOP_INTEGRITY_KEY: checkpoint and pubkey exit 2 with one line naming it; no witness."""
    monkeypatch.delenv("IOP_INTEGRITY_KEY", raising=False)
    witness = tmp_path / "witness.jsonl"
    code, out, err = run(
        capsys, "audit", "checkpoint", "--store", sqlite_url, "--witness", str(witness)
    )
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "IOP_INTEGRITY_KEY" in err
    assert not witness.exists()
    code, out, err = run(capsys, "audit", "pubkey")
    assert (code, out, len(err.splitlines())) == (2, "", 1)
    assert "IOP_INTEGRITY_KEY" in err


@pytest.mark.usefixtures("keyed")
def test_pubkey_prints_and_files_the_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`iop audit pubkey --out FILE` prints '<key id> <base64>' and adds that line to FILE once."""
    keys = tmp_path / "keys.txt"
    assert run(capsys, "audit", "pubkey", "--out", str(keys))[:2] == (0, key_line(TEST_KEY) + "\n")
    run(capsys, "audit", "pubkey", "--out", str(keys))
    assert keys.read_text() == key_line(TEST_KEY) + "\n"


@pytest.mark.usefixtures("keyed")
def test_verify_with_a_witness_reports_attested_and_not_yet_attested(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a checkpoint and one more entry: exit 0, 'not yet attested' counts that entry."""
    episodes = sealed_store(sqlite_url)
    witness, keys = str(tmp_path / "witness"), str(tmp_path / "keys.txt")
    Path(keys).write_text(key_line(TEST_KEY) + "\n")
    code, out, _ = run(
        capsys, "audit", "checkpoint", "--store", sqlite_url, "--witness", witness + "/"
    )
    assert code == 0
    assert out.startswith("checkpoint: size 12 root ")
    assert len(list(Path(witness).glob("checkpoint-000000000012-*.json"))) == 1
    with EpisodeService(sqlite_url) as service:
        service.record_session(factories.session(episodes[0], START + timedelta(days=1)))
    code, out, _ = run(
        capsys, "audit", "verify", "--store", sqlite_url, "--witness", witness, "--pubkey", keys
    )
    assert code == 0
    assert "checkpoints: ok: 1 checked, 12 of 13 entries attested, 1 not yet attested\n" in out
    assert out.endswith("verification: ok\n")
    code, out, _ = run(capsys, "audit", "verify", "--store", sqlite_url, "--json")
    assert (code, json.loads(out)["checkpoints"]) == (0, None)


@pytest.mark.usefixtures("keyed")
def test_verify_with_a_witness_fails_on_rewritten_history(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting checkpointed entries: exit 1 and a truncated finding, in text and JSON."""
    episodes = sealed_store(sqlite_url)
    witness, keys = str(tmp_path / "witness.jsonl"), str(tmp_path / "keys.txt")
    Path(keys).write_text(key_line(TEST_KEY) + "\n")
    run(capsys, "audit", "checkpoint", "--store", sqlite_url, "--witness", witness)
    tamper.delete(sqlite_url, episodes[2], 4)
    code, out, _ = run(
        capsys, "audit", "verify", "--store", sqlite_url, "--witness", witness, "--pubkey", keys
    )
    assert code == 1
    assert f"checkpoint {witness}:1: truncated: signed for 12 entries, the store holds 11" in out
    code, out, _ = run(
        capsys,
        "audit",
        "verify",
        "--store",
        sqlite_url,
        "--witness",
        witness,
        "--pubkey",
        keys,
        "--json",
    )
    assert code == 1
    assert json.loads(out)["checkpoints"]["findings"][0]["problem"] == "truncated"


@pytest.fixture
def bundle(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], keyed: None
) -> Path:
    """A proof bundle for an episode of four entries, and its public key file beside it."""
    del keyed
    episodes = sealed_store(sqlite_url)
    (tmp_path / "keys.txt").write_text(key_line(TEST_KEY) + "\n")
    run(capsys, "audit", "checkpoint", "--store", sqlite_url)
    out_file = tmp_path / "bundle.json"
    code, out, _ = prove(capsys, episodes[1], sqlite_url, out_file)
    assert code == 0
    assert out.startswith(f"bundle: episode {episodes[1]}, 4 entries, checkpoint size 12 key ")
    return out_file


def verify_bundle(path: Path, keys: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(path), "--pubkey", str(keys)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_proof_bundle_verifies_offline(bundle: Path) -> None:
    """verify_bundle.py, importing nothing of this project (-I), accepts the bundle: exit 0."""
    done = verify_bundle(bundle, bundle.parent / "keys.txt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("bundle ok: episode ")
    assert "versions 1..4" in done.stdout


def _flip_hex(text: str) -> str:
    return ("1" if text[0] != "1" else "2") + text[1:]


def _change_entry(bundle: dict[str, Any]) -> None:
    entry = bundle["entries"][2]
    stored = base64.b64decode(entry["stored"]).replace(b'"minutes":', b'"minutes":1', 1)
    entry["stored"] = base64.b64encode(stored).decode()


def _change_proof(bundle: dict[str, Any]) -> None:
    proof = bundle["entries"][0]["inclusion_proof"]
    proof[0] = _flip_hex(proof[0])


def _change_root(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["root"] = _flip_hex(bundle["checkpoint"]["root"])


def _change_signature(bundle: dict[str, Any]) -> None:
    signature = bundle["checkpoint"]["signature"]
    bundle["checkpoint"]["signature"] = ("B" if signature[0] != "B" else "C") + signature[1:]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_change_entry, "entry version 3: chain link does not follow"),
        (_change_proof, "entry version 1: inclusion proof does not lead to the root"),
        (_change_root, "checkpoint signature does not hold"),
        (_change_signature, "checkpoint signature does not hold"),
    ],
)
def test_a_bundle_with_one_changed_byte_fails_naming_what(
    bundle: Path, change: Any, named: str
) -> None:
    """One changed byte in an entry, a proof hash, the root or the signature: exit 1, named."""
    content = json.loads(bundle.read_text())
    change(content)
    bundle.write_text(json.dumps(content))
    done = verify_bundle(bundle, bundle.parent / "keys.txt")
    assert done.returncode == 1
    assert named in done.stdout


def test_a_bundle_checked_against_another_key_fails(bundle: Path) -> None:
    """A public key file without the signing key: exit 1, naming the key."""
    other = bundle.parent / "other.txt"
    other.write_text(key_line(OTHER_KEY) + "\n")
    done = verify_bundle(bundle, other)
    assert done.returncode == 1
    assert "is not in the public key file" in done.stdout


def test_a_bundle_whose_versions_skip_fails(bundle: Path) -> None:
    """Leaving an entry out of a bundle breaks 'versions 1..n without gaps'."""
    content = json.loads(bundle.read_text())
    del content["entries"][1]
    bundle.write_text(json.dumps(content))
    done = verify_bundle(bundle, bundle.parent / "keys.txt")
    assert done.returncode == 1
    assert "versions do not run 1..n: expected 2, got 3" in done.stdout


def test_verify_bundle_imports_only_the_standard_library_and_cryptography() -> None:
    """The offline checker's imports: standard-library modules and `cryptography`, nothing else."""
    tree = ast.parse(SCRIPT.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - sys.stdlib_module_names == {"cryptography"}


@pytest.mark.usefixtures("keyed")
def test_a_checkpoint_that_stops_short_exits_1_naming_the_entry(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unsealed entry: the checkpoint covers what came before, and the entry is named."""
    episodes = sealed_store(sqlite_url)
    with EpisodeService(sqlite_url) as service:
        service.record_session(factories.session(episodes[0], START + timedelta(days=1)))
    strip_seal(sqlite_url, tamper.key(sqlite_url, episodes[0]), 5)
    code, out, err = run(capsys, "audit", "checkpoint", "--store", sqlite_url)
    assert code == 1
    assert out.startswith("checkpoint: size 12 ")
    assert err == f"not signed in from episode {episodes[0]} version 5: the entry carries no seal\n"


@pytest.mark.usefixtures("keyed")
def test_prove_leaves_out_entries_after_the_checkpoint_and_counts_them(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entries stored after the latest checkpoint are left out of the bundle and counted."""
    episodes = sealed_store(sqlite_url)
    run(capsys, "audit", "checkpoint", "--store", sqlite_url)
    with EpisodeService(sqlite_url) as service:
        service.record_session(factories.session(episodes[0], START + timedelta(days=1)))
    out_file = tmp_path / "b.json"
    code, out, _ = prove(capsys, episodes[0], sqlite_url, out_file)
    assert code == 0
    assert out.splitlines()[-1] == "not yet attested (left out): 1 entries"
    assert [entry["version"] for entry in json.loads(out_file.read_text())["entries"]] == [
        1,
        2,
        3,
        4,
    ]


@pytest.mark.usefixtures("keyed")
def test_prove_without_a_checkpoint_exits_1_and_for_an_unknown_episode_exits_2(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No checkpoint yet: exit 1 and why; an episode the store does not hold: exit 2, one line."""
    episodes = sealed_store(sqlite_url)
    out_file = str(tmp_path / "b.json")
    code, _, err = prove(capsys, episodes[0], sqlite_url, out_file)
    assert (code, "no checkpoint yet" in err) == (1, True), err
    run(capsys, "audit", "checkpoint", "--store", sqlite_url)
    unknown = "00000000-0000-4000-8000-000000000000"
    code, _, err = prove(capsys, unknown, sqlite_url, out_file)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("iop: error: ")
    assert unknown in err


@pytest.mark.usefixtures("keyed")
def test_verify_needs_witness_and_pubkey_together_and_an_existing_witness(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--witness without --pubkey, or a witness that is not there: exit 2 and one line why."""
    sealed_store(sqlite_url)
    keys = tmp_path / "keys.txt"
    keys.write_text(key_line(TEST_KEY) + "\n")
    code, _, err = run(capsys, "audit", "verify", "--store", sqlite_url, "--witness", str(keys))
    assert (code, err) == (2, "iop: error: audit verify: --witness and --pubkey go together\n")
    missing = str(tmp_path / "none.jsonl")
    code, _, err = run(
        capsys,
        "audit",
        "verify",
        "--store",
        sqlite_url,
        "--witness",
        missing,
        "--pubkey",
        str(keys),
    )
    assert code == 2
    assert "no such file or directory" in err


def test_a_key_file_line_whose_id_does_not_name_its_key_is_refused() -> None:
    """'<key id> <key>' must agree: the id is the first 8 bytes of SHA-256 of the key."""
    wrong = f"{OTHER_KEY.key_id} {key_line(TEST_KEY).split()[1]}"
    with pytest.raises(KeyFileError, match=r"line 2: key id \w+ does not name that 32-byte key"):
        parse_keys(f"# keys\n{wrong}\n")
    assert parse_keys(f"# old\n{key_line(OTHER_KEY)}\n\n{key_line(TEST_KEY)}\n") == {
        OTHER_KEY.key_id: OTHER_KEY.public_key,
        TEST_KEY.key_id: TEST_KEY.public_key,
    }


@pytest.mark.usefixtures("keyed")
def test_prove_records_one_disclosure_of_the_bundle_it_wrote(
    bundle: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The accounting lists one proof-bundle disclosure: versions 1-4, the file's sha256."""
    code, out, _ = run(capsys, "audit", "disclosures", "--store", sqlite_url, "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["format"], row["basis"], row["exception"]) == (
        "proof-bundle",
        "exception",
        "audit-and-evaluation",
    )
    assert (row["actor_id"], row["recipient"], row["purpose"]) == (
        "au.hill",
        "State auditor",
        "audit",
    )
    assert [(r["from_version"], r["to_version"]) for r in row["records"]] == [(1, 4)]
    assert row["sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert row["checkpoint"] == json.loads(bundle.read_text())["checkpoint"]["root"]


@pytest.mark.usefixtures("keyed")
@pytest.mark.parametrize(
    ("basis", "named"),
    [
        (
            ("--consent", "--as", "dr.lee:physician"),
            "[disclosure-needs-consent-in-force] no consent recorded for recipient",
        ),
        (("--consent", "--as", "au.hill:auditor"), "[role-may-not-issue-command] role auditor"),
    ],
)
def test_a_refused_prove_writes_no_file_and_records_nothing(
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    basis: tuple[str, ...],
    named: str,
) -> None:
    """No consent in force, or a role that may not disclose on it: exit 1, one line, no file."""
    episodes = sealed_store(sqlite_url)
    run(capsys, "audit", "checkpoint", "--store", sqlite_url)
    folder = tmp_path / "out"
    folder.mkdir()
    how = ("--recipient", "County EHR", "--purpose", "treatment", *basis)
    code, out, err = prove(capsys, episodes[0], sqlite_url, folder / "b.json", how)
    assert (code, out) == (1, "")
    assert err.startswith("iop audit prove: refused: ")
    assert named in err
    assert len(err.splitlines()) == 1
    assert list(folder.iterdir()) == []
    code, out, _ = run(capsys, "audit", "disclosures", "--store", sqlite_url)
    assert out == "0 disclosures\n"


@pytest.mark.usefixtures("keyed")
def test_a_prove_whose_out_cannot_be_written_exits_2_and_records_nothing(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out in a missing directory: exit 2 naming --out, before anything is disclosed."""
    episodes = sealed_store(sqlite_url)
    run(capsys, "audit", "checkpoint", "--store", sqlite_url)
    out_file = tmp_path / "missing" / "b.json"
    code, _, err = prove(capsys, episodes[0], sqlite_url, out_file)
    assert (code, err) == (2, f"iop: error: --out {out_file}: No such file or directory\n")
    assert run(capsys, "audit", "disclosures", "--store", sqlite_url)[1] == "0 disclosures\n"


def test_a_proof_bundle_is_readable_by_its_owner_only(bundle: Path) -> None:
    """It carries clinical entries: the written bundle has mode 0600."""
    assert bundle.stat().st_mode & 0o777 == 0o600


@pytest.mark.usefixtures("keyed")
def test_a_checkpoint_that_stops_short_says_where_in_its_json(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: exit 1 still, one object naming the entry it would not sign in."""
    episodes = sealed_store(sqlite_url)
    with EpisodeService(sqlite_url) as service:
        service.record_session(factories.session(episodes[0], START + timedelta(days=1)))
    strip_seal(sqlite_url, tamper.key(sqlite_url, episodes[0]), 5)
    code, out, _ = run(capsys, "audit", "checkpoint", "--store", sqlite_url, "--json")
    made = json.loads(out)
    assert code == 1
    assert (made["signed_in"], made["checkpoint"]["size"]) == (12, 12)
    assert made["not_signed_in_from"] == (
        f"episode {episodes[0]} version 5: the entry carries no seal"
    )
