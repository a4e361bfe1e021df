"""Checkpoints against a witness: appends hold, any rewrite of checkpointed history fails."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.checkpoints import make_checkpoint, sign_checkpoint
from iop_episodes.audit.consistency import Attestation, verify_checkpoints
from iop_episodes.audit.integrity import verify_store
from iop_episodes.audit.merkle import Frontier, leaf_data, leaf_hash
from iop_episodes.audit.witness import Witness
from iop_episodes.domain.canonical import next_link, split_sealed, stored_form
from iop_episodes.infrastructure.rawlog import log_pages
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from tests import tamper
from tests.conftest import START
from tests.sealing import OTHER_KEY, TEST_KEY, seal_rows, strip_seal

KEYS = {TEST_KEY.key_id: TEST_KEY.public_key}
SQLITE_ONLY = pytest.mark.parametrize("sealed", ["sqlite"], indirect=True)  # no backend SQL


@dataclass
class Sealed:
    url: str
    clock: SimulatedClock
    episodes: list[UUID]
    witness: Witness

    def service(self) -> EpisodeService:
        """A service with the key (without it, a sealed store refuses every write)."""
        return EpisodeService(self.url, clock=self.clock, integrity_key=TEST_KEY)

    def add_sessions(self, count: int) -> None:
        with self.service() as service:
            for n in range(count):
                episode = self.episodes[n % len(self.episodes)]
                service.record_session(factories.session(episode, advance(self.clock, hours=1)))
        seal_rows(self.url)

    def checkpoint(self) -> int:
        with self.service() as service:
            made = make_checkpoint(service, TEST_KEY, self.witness)
        assert made.refused is None
        return made.checkpoint.size

    def attest(self, keys: dict[str, bytes] = KEYS) -> Attestation:
        with self.service() as service:
            return verify_checkpoints(service, self.witness.lines(), keys)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sealed(request: pytest.FixtureRequest, tmp_path: Path) -> Sealed:
    """Three active episodes with a session each, every entry sealed, and an empty witness."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url = str(request.getfixturevalue(fixture))
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock, integrity_key=TEST_KEY) as service:
        episodes = [active_episode(service, clock) for _ in range(3)]
    store = Sealed(url, clock, episodes, Witness.at(str(tmp_path / "witness.jsonl")))
    store.add_sessions(3)
    return store


def problems(attestation: Attestation) -> list[str]:
    return [finding.problem for finding in attestation.findings]


def test_append_only_history_stays_consistent_with_every_checkpoint(sealed: Sealed) -> None:
    """Checkpoints taken as the log grows all hold; later entries are only 'not yet attested'."""
    first = sealed.checkpoint()
    sealed.add_sessions(4)
    second = sealed.checkpoint()
    sealed.add_sessions(2)
    attestation = sealed.attest()
    assert (first, second) == (9, 13)
    assert attestation.findings == []
    assert (attestation.checkpoints, attestation.attested, attestation.entries) == (2, 13, 15)
    assert attestation.not_yet_attested == 2
    assert "2 not yet attested" in attestation.line()


@SQLITE_ONLY
def test_a_checkpoint_costs_only_the_entries_since_the_last(sealed: Sealed) -> None:
    """The second checkpoint reads only the new rows: the store's frontier carries the rest."""
    sealed.checkpoint()
    sealed.add_sessions(2)
    with sealed.service() as service:
        made = make_checkpoint(service, TEST_KEY, sealed.witness)
    assert made.signed_in == 2
    assert made.checkpoint.size == 11


def test_truncating_checkpointed_history_is_detected(sealed: Sealed) -> None:
    """Deleting the log's last checkpointed entry leaves fewer entries than were signed."""
    sealed.checkpoint()
    last = sealed.episodes[-1]
    tamper.delete(sealed.url, last, 3)
    assert problems(sealed.attest()) == ["truncated"]


def test_deleting_a_checkpointed_entry_mid_log_is_detected(sealed: Sealed) -> None:
    """A deleted entry in the middle changes the root at the checkpoint's size."""
    sealed.checkpoint()
    sealed.add_sessions(3)
    sealed.checkpoint()
    tamper.delete(sealed.url, sealed.episodes[0], 3)
    assert problems(sealed.attest()) == ["root-mismatch", "truncated"]


def rechain(url: str, episode_id: UUID, version: int, old: str, new: str) -> None:
    """Change one entry's text and recompute every later link, as an insider could."""
    with EpisodeService(url) as service:
        records = service.recorder.select_events(episode_id)
    previous = split_sealed(records[version - 2].state)[0]
    for record in records[version - 1 :]:
        _, seal, canonical = split_sealed(record.state)
        if record.originator_version == version:
            assert old.encode() in canonical
            canonical = canonical.replace(old.encode(), new.encode())
        previous = next_link(previous, canonical)
        tamper.execute(
            url,
            "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
            "UPDATE {table} SET state = %s WHERE originator_id = %s AND originator_version = %s",
            stored_form(previous, canonical, seal),
            tamper.key(url, episode_id),
            record.originator_version,
        )


def test_rechaining_checkpointed_history_is_detected(sealed: Sealed) -> None:
    """A consistently re-linked episode verifies as a chain but not against the witness."""
    sealed.checkpoint()
    rechain(sealed.url, sealed.episodes[1], 2, '"weekly_hours":"12"', '"weekly_hours":"15"')
    with EpisodeService(sealed.url, clock=sealed.clock) as service:  # no key: links only
        assert verify_store(service) == []  # the chain alone cannot tell
    attestation = sealed.attest()
    assert problems(attestation) == ["root-mismatch"]
    assert attestation.attested == 0


@SQLITE_ONLY
def test_a_forged_witness_line_with_a_bad_signature_is_detected(sealed: Sealed) -> None:
    """A witness line whose root was edited no longer carries a valid signature."""
    sealed.checkpoint()
    line = json.loads(next(sealed.witness.lines()).text)
    line["root"] = hashlib.sha256(b"forged").hexdigest()
    with sealed.witness.path.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    attestation = sealed.attest()
    assert problems(attestation) == ["bad-signature"]
    assert attestation.attested == 9


@SQLITE_ONLY
def test_a_signed_checkpoint_for_a_root_the_store_lacks_is_detected(sealed: Sealed) -> None:
    """A checkpoint the key really signed, for another history, fails against this store."""
    sealed.checkpoint()
    other_root = hashlib.sha256(b"another history").digest()
    sealed.witness.append(sign_checkpoint(TEST_KEY, 9, other_root, START))
    assert problems(sealed.attest()) == ["root-mismatch"]


@SQLITE_ONLY
def test_checkpoints_of_a_rotated_key_verify_against_a_file_listing_both(sealed: Sealed) -> None:
    """After rotation, a public key file with the old and the new key verifies both."""
    sealed.checkpoint()
    with sealed.service() as service:
        make_checkpoint(service, OTHER_KEY, sealed.witness)
    both = {**KEYS, OTHER_KEY.key_id: OTHER_KEY.public_key}
    assert sealed.attest(both).findings == []
    assert problems(sealed.attest(KEYS)) == ["unknown-key"]


@SQLITE_ONLY
def test_an_unreadable_witness_line_is_a_finding(sealed: Sealed) -> None:
    """A line that is not a checkpoint is reported with its place in the witness."""
    sealed.checkpoint()
    with sealed.witness.path.open("a") as handle:
        handle.write('{"size": "many"}\n')
    attestation = sealed.attest()
    assert problems(attestation) == ["unreadable-checkpoint"]
    assert attestation.findings[0].where.endswith("witness.jsonl:2")


@SQLITE_ONLY
def test_an_unsealed_entry_is_not_signed_in(sealed: Sealed) -> None:
    """A correctly linked entry without the key's seal stops the checkpoint short of it."""
    with sealed.service() as service:
        service.record_session(
            factories.session(sealed.episodes[0], advance(sealed.clock, hours=1))
        )
    strip_seal(sealed.url, tamper.key(sealed.url, sealed.episodes[0]), 4)
    with sealed.service() as service:
        made = make_checkpoint(service, TEST_KEY, sealed.witness)
    assert made.checkpoint.size == 9
    assert made.refused is not None
    assert (made.refused.episode_id, made.refused.version) == (sealed.episodes[0], 4)
    assert "no seal" in made.refused.reason


@SQLITE_ONLY
def test_an_entry_sealed_by_another_key_is_not_signed_in(sealed: Sealed) -> None:
    """A seal made with any other key does not hold."""
    with sealed.service() as service:
        service.record_session(
            factories.session(sealed.episodes[2], advance(sealed.clock, hours=1))
        )
    strip_seal(sealed.url, tamper.key(sealed.url, sealed.episodes[2]), 4)
    seal_rows(sealed.url, OTHER_KEY)
    with sealed.service() as service:
        made = make_checkpoint(service, TEST_KEY, sealed.witness)
    assert made.refused is not None
    assert "seal does not hold" in made.refused.reason
    assert made.checkpoint.size == 9


@SQLITE_ONLY
def test_a_sealed_entry_whose_link_does_not_follow_is_not_signed_in(sealed: Sealed) -> None:
    """A new entry must link from the signed-in entry before it in its episode."""
    sealed.checkpoint()
    with sealed.service() as service:
        service.record_session(
            factories.session(sealed.episodes[1], advance(sealed.clock, hours=1))
        )
    tamper.replace_text(sealed.url, sealed.episodes[1], 4, '"minutes":', '"minutes": ')
    seal_rows(sealed.url)
    with sealed.service() as service:
        made = make_checkpoint(service, TEST_KEY, sealed.witness)
    assert made.refused is not None
    assert "does not follow" in made.refused.reason


def forge_frontier(url: str, nodes: list[bytes]) -> None:
    """Overwrite the stored frontier's subtree roots, as an insider could."""
    with closing(sqlite3.connect(urlsplit(url).path[1:])) as conn, conn:
        conn.execute(
            "UPDATE iop_merkle_frontier SET nodes = ?", (",".join(n.hex() for n in nodes),)
        )


def log_frontier(url: str) -> Frontier:
    """The tree over the store's entries as they are now, computed from the raw log."""
    frontier = Frontier()
    with EpisodeService(url) as service:
        for page in log_pages(service.recorder):
            for episode, version, _, state, _ in page:
                link = bytes.fromhex(split_sealed(state)[0])
                frontier.append(leaf_hash(leaf_data(frontier.size, UUID(episode), version, link)))
    return frontier


@SQLITE_ONLY
def test_a_stored_frontier_no_checkpoint_signed_is_not_extended(sealed: Sealed) -> None:
    """An edited frontier is dropped: the next checkpoint reads the whole log again."""
    sealed.checkpoint()
    forge_frontier(sealed.url, [hashlib.sha256(b"x").digest(), hashlib.sha256(b"y").digest()])
    sealed.add_sessions(2)
    with sealed.service() as service:
        made = make_checkpoint(service, TEST_KEY, sealed.witness)
    assert made.rebuilt
    assert (made.signed_in, made.refused) == (11, None)
    assert sealed.attest().findings == []


@SQLITE_ONLY
def test_a_frontier_forged_for_a_rewritten_history_signs_none_of_it(sealed: Sealed) -> None:
    """Re-chain an episode and store its tree's frontier: the rewritten entries stay unsigned."""
    sealed.checkpoint()
    rechain(sealed.url, sealed.episodes[0], 3, '"minutes":', '"minutes":1')
    forge_frontier(sealed.url, log_frontier(sealed.url).nodes)
    with sealed.service() as service:
        made = make_checkpoint(service, TEST_KEY, sealed.witness)
    assert made.rebuilt
    assert made.refused is not None
    assert (made.refused.episode_id, made.refused.version) == (sealed.episodes[0], 3)
    assert "seal does not hold" in made.refused.reason
