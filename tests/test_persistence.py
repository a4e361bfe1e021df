"""Store URLs, the upcast fixture, encryption at rest and compression."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import StoredEvent

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import verify_episode, verify_store
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import canonical_json
from iop_episodes.infrastructure.settings import StoreUrlError, parse_store
from iop_episodes.infrastructure.sqlite import StatementCachingPool
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from projections import audit
from projections.runner import ViewRunner
from tests import tamper

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("url", "module"),
    [
        ("memory://", "eventsourcing.popo"),
        (
            "sqlite:///var/iop.db",
            "iop_episodes.infrastructure.sqlite:StatementCachingSQLiteFactory",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/test",
            "iop_episodes.infrastructure.postgres:CopyingPostgresFactory",
        ),
    ],
)
def test_store_url_selects_the_backend(url, module):
    """One URL chooses the backend."""
    assert parse_store(url).env["PERSISTENCE_MODULE"] == module


def test_sqlite_connections_keep_statements_and_write_ahead(sqlite_url, clock):
    """The store's SQLite connections come from the caching pool, in WAL mode."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        service.assess(factories.assessment(clock.now()))
        assert isinstance(service.factory.datastore.pool, StatementCachingPool)
        with service.factory.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://", "postgresql://host", "iop.db"])
def test_unknown_or_incomplete_store_url_is_refused(url):
    """A URL that names no supported backend is a clear error."""
    with pytest.raises(StoreUrlError, match="store URL"):
        parse_store(url)


def test_store_url_comes_from_the_environment(monkeypatch, tmp_path, clock):
    """IOP_STORE sets the store when no URL is given."""
    monkeypatch.setenv("IOP_STORE", f"sqlite:///{tmp_path / 'env.db'}")
    with EpisodeService(clock=clock) as service:
        service.assess(factories.assessment(clock.now()))
    assert (tmp_path / "env.db").exists()


def load_fixture(service: EpisodeService, name: str = "session_attended_v1.json") -> UUID:
    """Rows as a fixture file holds them; format 1 states were written by json.dumps."""
    document = json.loads((FIXTURES / name).read_text())
    encode = (lambda state: json.dumps(state).encode()) if "format1" in name else canonical_json
    rows = [
        StoredEvent(
            originator_id=UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=encode(row["state"]),
        )
        for row in document["events"]
    ]
    service.recorder.insert_events(rows)
    return UUID(str(rows[0].originator_id))


def load_v1_fixture(service: EpisodeService) -> UUID:
    return load_fixture(service)


def test_version_one_session_still_loads_after_the_schema_gained_setting(store_url, clock):
    """The stored v1 SessionAttended is upcast: it was on site."""
    with EpisodeService(store_url, clock=clock) as service:
        episode_id = load_v1_fixture(service)
        session = list(service.history(episode_id))[2]
        assert session.payload == {
            "modality": "group",
            "minutes": 150,
            "topics": ["relapse_prevention"],
            "setting": "on_site",
            "note": "",
        }
        assert session.details().setting == "on_site"


def test_the_audit_view_shows_a_version_one_session_as_it_was_recorded(store_url, clock):
    """The audit history is what was stored: the v1 payload has no setting."""
    with EpisodeService(store_url, clock=clock) as service:
        episode_id = load_v1_fixture(service)
        runner = ViewRunner(service)
        runner.catch_up()
        session = audit.history(runner.views, str(episode_id))[2]
        assert session.payload == {
            "modality": "group",
            "minutes": 150,
            "topics": ["relapse_prevention"],
            "note": "",
        }


def test_a_store_from_the_first_release_loads_verifies_and_grows(store_url, clock):
    """Format 1 rows still decode and verify, and new entries link on from them."""
    with EpisodeService(store_url, clock=clock) as service:
        episode_id = load_fixture(service, "format1_store.json")
        assert list(service.history(episode_id))[2].payload["setting"] == "on_site"
        assert service.episode(episode_id).client_ref == "MRN-V1-0001"
        advance(clock, hours=4)
        service.record_session(factories.session(episode_id, clock.now()))
        assert verify_store(service) == []
        runner = ViewRunner(service)
        runner.catch_up()
        history = audit.history(runner.views, str(episode_id))
        assert [entry.version for entry in history] == [1, 2, 3, 4]
        assert history[2].payload == {
            "modality": "group",
            "minutes": 150,
            "topics": ["relapse_prevention"],
            "note": "",
        }
        assert history[2].occurred_at == "2026-03-02T15:00:00.000000Z"
        assert audit.verify(service, runner.views) == []
    if store_url.startswith("sqlite"):
        path = store_url.removeprefix("sqlite:///")
        script = Path(__file__).parent.parent / "scripts" / "recompute_chains.py"
        third_party = subprocess.run(
            [sys.executable, str(script), "sqlite", path],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert third_party.returncode == 0, third_party.stdout + third_party.stderr


def test_a_changed_byte_in_a_first_release_row_is_found(sqlite_url, clock):
    """Format 1 rows are checked by format 1's rules, not waved through."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_id = load_fixture(service, "format1_store.json")
    tamper.replace_text(sqlite_url, episode_id, 3, '"minutes": 150', '"minutes": 151')
    with EpisodeService(sqlite_url, clock=clock) as service:
        assert [(f.version, f.problem) for f in verify_store(service)] == [(3, "chain-mismatch")]


def test_version_one_history_still_verifies_and_accepts_new_entries(sqlite_url, clock):
    """The chain covers what was stored, so upcasting does not break it."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_id = load_v1_fixture(service)
        advance(clock, hours=4)
        service.record_session(factories.session(episode_id, clock.now()))
        assert verify_episode(service, episode_id) == []


@pytest.fixture
def cipher_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = AESCipher.create_key(32)
    monkeypatch.setenv("IOP_CIPHER_KEY", key)
    return key


def everything_written(folder: Path) -> bytes:
    """The database file and its write-ahead log, as an attacker with the disk sees them."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("iop.db*")))


def write_sensitive_episode(url: str, clock) -> None:
    with EpisodeService(url, clock=clock) as service:
        episode_id = active_episode(service, clock, medications=["methadone"])
        service.record_session(
            factories.session(episode_id, advance(clock, hours=1), note="Disclosed relapse.")
        )


@pytest.mark.usefixtures("cipher_key")
def test_encryption_leaves_no_plaintext_in_the_sqlite_file(sqlite_url, tmp_path, clock):
    """With IOP_CIPHER_KEY set, client reference and medication are not in the file."""
    write_sensitive_episode(sqlite_url, clock)
    raw = everything_written(tmp_path)
    for secret in (b"MRN-0001", b"methadone", b"Disclosed relapse", b"c.adams"):
        assert secret not in raw


def test_without_a_key_the_same_file_holds_plaintext(sqlite_url, tmp_path, clock):
    """The control for the test above: unencrypted stores are readable with SQL."""
    write_sensitive_episode(sqlite_url, clock)
    assert b"MRN-0001" in everything_written(tmp_path)


@pytest.mark.usefixtures("cipher_key")
def test_encrypted_store_reads_back_and_verifies(sqlite_url, clock):
    """Encryption and compression are transparent to readers and to verification."""
    write_sensitive_episode(sqlite_url, clock)
    with EpisodeService(sqlite_url, clock=clock) as service:
        (episode_id,) = {e.originator_id for e in service.recorder.select_notifications(1, 10)}
        assert service.episode(episode_id).client_ref == "MRN-0001"
        assert verify_episode(service, episode_id) == []
        assert verify_store(service) == []


@pytest.mark.usefixtures("cipher_key")
def test_wrong_key_fails_at_start_up(sqlite_url, clock, monkeypatch):
    """A wrong key is refused when the service starts, naming the setting."""
    write_sensitive_episode(sqlite_url, clock)
    monkeypatch.setenv("IOP_CIPHER_KEY", AESCipher.create_key(32))
    with pytest.raises(errors.StoreKeyError, match="IOP_CIPHER_KEY"):
        EpisodeService(sqlite_url, clock=clock)


def test_malformed_key_fails_at_start_up(sqlite_url, clock, monkeypatch):
    """A key of the wrong size is refused before anything is read."""
    monkeypatch.setenv("IOP_CIPHER_KEY", "c2hvcnQ=")
    with pytest.raises(errors.StoreKeyError, match="16, 24 or 32 bytes"):
        EpisodeService(sqlite_url, clock=clock)


@pytest.mark.usefixtures("cipher_key")
def test_encrypted_store_keeps_clinical_text_out_of_the_view_tables(sqlite_url, tmp_path, clock):
    """With a key, medication names, reasons, actor ids and payloads in the views are sealed."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_id = active_episode(service, clock, medications=["methadone"])
        now = advance(clock, hours=1)
        service.record_session(factories.session(episode_id, now, note="Disclosed relapse."))
        service.step_down(
            factories.step_down(episode_id, advance(clock, days=28), reason="Stable in recovery.")
        )
        runner = ViewRunner(service)
        runner.catch_up()
        entries = audit.history(runner.views, str(episode_id))
        assert entries[2].payload["note"] == "Disclosed relapse."  # readable with the key
        assert entries[0].actor_id == "c.adams"
    raw = everything_written(tmp_path)
    for secret in (b"MRN-0001", b"methadone", b"Disclosed relapse", b"c.adams", b"Stable in"):
        assert secret not in raw, secret


def test_postgres_driver_uses_its_compiled_implementation():
    """The postgres extra installs psycopg's C implementation, not the slow fallback."""
    assert psycopg.pq.__impl__ in {"binary", "c"}
