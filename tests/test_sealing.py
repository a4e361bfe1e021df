"""The integrity key in the service: sealed entries and snapshots, checked on every load."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import notifications
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import BODY_START, SEAL_MEMBER, next_link, split_sealed
from iop_episodes.infrastructure.keys import IntegrityKey
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from projections.audit import verify_all
from projections.runner import ViewRunner
from tests import tamper
from tests.cli import iop

SECRET = bytes(range(32))
KEY = base64.b64encode(SECRET).decode()
SCRIPTS = Path(__file__).parent.parent / "scripts"


def ten_entries(service: EpisodeService, clock: SimulatedClock) -> object:
    episode_id = active_episode(service, clock)
    for _ in range(8):
        service.record_session(factories.session(episode_id, advance(clock, hours=1)))
    return episode_id


def test_a_sealed_entry_carries_the_hmac_of_its_raw_link_second_and_the_same_chain(
    sqlite_url, clock
):
    """_seal follows _chain; the link covers only the canonical bytes, as without a key."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = ten_entries(service, clock)
    previous = None
    for version, _, state in tamper.event_rows(sqlite_url, episode_id):
        link, seal, canonical = split_sealed(state)
        assert state[BODY_START:].startswith(b'"_seal":"')
        assert state[BODY_START + SEAL_MEMBER :] == canonical[1:]
        assert seal == IntegrityKey(SECRET).seal(bytes.fromhex(link))
        assert json.loads(state)["_seal"] == seal
        if previous is not None:
            assert next_link(previous, canonical) == link, version
        previous = link


def test_without_a_key_entries_carry_no_seal(sqlite_url, clock):
    """An unkeyed service stores entries exactly as before: no _seal member."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_id = ten_entries(service, clock)
    assert all(
        split_sealed(state)[1] is None for _, _, state in tamper.event_rows(sqlite_url, episode_id)
    )


def test_a_keyed_service_refuses_a_store_written_without_a_key(sqlite_url, clock):
    """A key is adopted only by a new store: unsealed entries make start-up fail, saying why."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        ten_entries(service, clock)
    with pytest.raises(errors.StoreKeyError, match="adopted only by a new store"):
        EpisodeService(sqlite_url, clock=clock, integrity_key=KEY)


def test_a_service_without_a_key_reads_a_sealed_store_but_writes_nothing(sqlite_url, clock):
    """No key on a sealed store: reads go on; a command and an assessment raise StoreKeyError."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = ten_entries(service, clock)
    rows = tamper.event_rows(sqlite_url, episode_id)
    with EpisodeService(sqlite_url, clock=clock) as unkeyed:
        assert unkeyed.episode(episode_id).version == 10
        with pytest.raises(errors.StoreKeyError, match="IOP_INTEGRITY_KEY is not set"):
            unkeyed.record_session(factories.session(episode_id, advance(clock, days=1)))
        with pytest.raises(errors.StoreKeyError, match="IOP_INTEGRITY_KEY is not set"):
            unkeyed.assess(factories.assessment(clock.now()))
        assert sum(1 for _ in notifications(unkeyed)) == 10
    assert tamper.event_rows(sqlite_url, episode_id) == rows
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        assert service.episode(episode_id).version == 10


def test_a_service_without_a_key_writes_to_an_unsealed_store(sqlite_url, clock):
    """The refusal is for sealed stores only: a store written without a key takes more."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_id = ten_entries(service, clock)
    with EpisodeService(sqlite_url, clock=clock) as service:
        service.record_session(factories.session(episode_id, advance(clock, days=1)))
        assert service.episode(episode_id).version == 11


def test_another_key_is_refused_at_start_up(sqlite_url, clock):
    """Seals made with one key do not hold under another: start-up says so."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        ten_entries(service, clock)
    other = base64.b64encode(bytes(32)).decode()
    with pytest.raises(errors.StoreKeyError, match="seal does not hold"):
        EpisodeService(sqlite_url, clock=clock, integrity_key=other)


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_integrity_key_is_refused_naming_the_setting(text, monkeypatch):
    """IOP_INTEGRITY_KEY that is not base64 of 32 bytes fails at start-up, named."""
    monkeypatch.setenv("IOP_INTEGRITY_KEY", text)
    with pytest.raises(errors.StoreKeyError, match="IOP_INTEGRITY_KEY"):
        EpisodeService("memory://")


def test_the_key_is_read_from_the_environment(sqlite_url, clock, monkeypatch):
    """IOP_INTEGRITY_KEY set: entries are sealed with it."""
    monkeypatch.setenv("IOP_INTEGRITY_KEY", KEY)
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode_id = ten_entries(service, clock)
    _, _, state = tamper.event_rows(sqlite_url, episode_id)[0]
    assert split_sealed(state)[1] is not None


def test_an_entry_whose_seal_was_removed_is_not_loaded(sqlite_url, clock):
    """Stripping the seal off an entry makes loading the episode raise, naming the version."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = ten_entries(service, clock)
    _, _, state = tamper.event_rows(sqlite_url, episode_id)[9]
    link, _, canonical = split_sealed(state)
    tamper.set_state(
        sqlite_url, episode_id, 10, b'{"_chain":"' + link.encode() + b'",' + canonical[1:]
    )
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        with pytest.raises(errors.EntryIntegrityError, match="version 10") as raised:
            service.record_session(factories.session(episode_id, clock.now()))
        assert (raised.value.episode_id, raised.value.version) == (episode_id, 10)


def test_an_appended_entry_with_a_wrong_link_is_not_served(durable_url, clock):
    """A copy of version 3 appended as version 11: loading raises instead of serving it."""
    with EpisodeService(durable_url, clock=clock) as service:
        episode_id = ten_entries(service, clock)
    tamper.insert_copy(durable_url, episode_id, 3, 11)
    with EpisodeService(durable_url, clock=clock) as service:
        with pytest.raises(errors.EntryIntegrityError, match="version 11"):
            service.episode(episode_id)
        with pytest.raises(errors.EntryIntegrityError, match="version 11"):
            service.record_session(factories.session(episode_id, clock.now()))


def test_a_rejected_snapshot_is_logged_with_episode_and_version(sqlite_url, clock, caplog):
    """The service says which snapshot it ignored, and serves the replayed state."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = active_episode(service, clock)
        for _ in range(18):
            service.record_session(
                factories.session(episode_id, advance(clock, hours=1), minutes=45)
            )
        expected = service.episode(episode_id)
    tamper.edit_snapshot(sqlite_url, episode_id, b'"level":"2.1"', b'"level":"1"')
    with (
        caplog.at_level(logging.WARNING),
        EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service,
    ):
        assert service.episode(episode_id) == expected
    assert f"snapshot of episode {episode_id} at version 20" in caplog.text


def test_the_third_party_script_recomputes_the_chains_of_a_sealed_store(sqlite_url, clock):
    """scripts/recompute_chains.py drops _seal with _chain and finds every link."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = ten_entries(service, clock)
    script = [sys.executable, str(SCRIPTS / "recompute_chains.py"), "sqlite"]
    path = sqlite_url.removeprefix("sqlite:///")
    clean = subprocess.run([*script, path], capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    tamper.replace_text(sqlite_url, episode_id, 4, '"minutes":180', '"minutes":181')
    broken = subprocess.run([*script, path], capture_output=True, text=True, check=False)
    assert broken.returncode == 1
    assert f"{episode_id} 4: chain mismatch" in broken.stdout


def test_a_verifier_without_the_key_checks_a_sealed_store_by_links_and_replays(sqlite_url, clock):
    """No key: sealed snapshots are compared with a replay, so clean passes and an edit is found."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = active_episode(service, clock)
        for _ in range(18):
            service.record_session(
                factories.session(episode_id, advance(clock, hours=1), minutes=45)
            )
    with EpisodeService(sqlite_url, clock=clock) as service:
        assert verify_all(service, ViewRunner(service).views).findings == []
    tamper.edit_snapshot(sqlite_url, episode_id, b'"step_downs":0', b'"step_downs":1')
    with EpisodeService(sqlite_url, clock=clock) as service:
        (finding,) = verify_all(service, ViewRunner(service).views).findings
    assert (finding.episode_id, finding.version, finding.problem) == (
        episode_id,
        20,
        "snapshot-mismatch",
    )
    assert "step_downs" in finding.detail


def test_a_sealed_snapshot_is_the_documented_envelope(sqlite_url, clock):
    """{"_seal":"<HMAC of the body>","snapshot":<body>}, the body's chain the entry's link."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = active_episode(service, clock)
        for _ in range(18):
            service.record_session(
                factories.session(episode_id, advance(clock, hours=1), minutes=45)
            )
    version, state = tamper.snapshot_state(sqlite_url, episode_id)
    envelope = json.loads(state)
    assert list(envelope) == ["_seal", "snapshot"]
    body = state[len(b'{"_seal":"') + 64 + len(b'","snapshot":') : -1]
    assert envelope["_seal"] == IntegrityKey(SECRET).seal(body)
    link = split_sealed(tamper.event_rows(sqlite_url, episode_id)[version - 1][2])[0]
    assert envelope["snapshot"]["state"]["chain"] == link


def test_an_encrypted_sealed_store_loads_and_verifies(sqlite_url, clock, monkeypatch):
    """With IOP_CIPHER_KEY too, seals sit under the encryption and everything checks out."""
    monkeypatch.setenv("IOP_CIPHER_KEY", base64.b64encode(bytes(range(32, 64))).decode())
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = active_episode(service, clock)
        for _ in range(18):
            service.record_session(
                factories.session(episode_id, advance(clock, hours=1), minutes=45)
            )
        ViewRunner(service).catch_up()
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        assert service.episode(episode_id).version == 20
        result = verify_all(service, ViewRunner(service).views)
    assert result.findings == []
    assert (result.checked.entries, result.checked.snapshots) == (20, 1)


def test_the_iop_command_names_an_entry_that_does_not_verify_without_a_traceback(
    sqlite_url, clock, monkeypatch
):
    """iop audit history on a forged entry exits 4 with one line naming episode and version."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        episode_id = ten_entries(service, clock)
    tamper.insert_copy(sqlite_url, episode_id, 3, 11)
    monkeypatch.setenv("IOP_INTEGRITY_KEY", KEY)
    done = iop("audit", "history", str(episode_id), "--store", sqlite_url, expect=4)
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"iop: error: episode {episode_id} version 11: ")


def test_a_catch_up_skips_an_entry_whose_seal_does_not_hold_and_goes_on(sqlite_url, clock, caplog):
    """The forged entry is logged and left out; later entries of other episodes are projected."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        forged_in = ten_entries(service, clock)
        ViewRunner(service).catch_up()
    _, _, state = tamper.event_rows(sqlite_url, forged_in)[9]
    link, _, canonical = split_sealed(state)
    unsealed = b'{"_chain":"' + link.encode() + b'",' + canonical[1:]
    tamper.append(sqlite_url, forged_in, 11, "iop_episodes.domain.events:SessionAttended", unsealed)
    with EpisodeService(sqlite_url, clock=clock, integrity_key=KEY) as service:
        later = ten_entries(service, clock)
        runner = ViewRunner(service)
        with caplog.at_level(logging.WARNING):
            runner.catch_up()
        assert runner.status().lag == 0
        assert [row.version for row in runner.views.audit(str(forged_in))] == list(range(1, 11))
        assert len(runner.views.audit(str(later))) == 10
    assert f"not projected: episode {forged_in} version 11" in caplog.text
