"""Tamper evidence: verification from the raw store names episode and version."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit import integrity
from iop_episodes.audit.integrity import notifications, store_digest, verify_episode, verify_store
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import canonical_json, entry_texts, split_stored
from iop_episodes.infrastructure.keys import IntegrityKey
from iop_episodes.infrastructure.rawlog import log_pages, shard_of
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from tests import tamper

SCRIPTS = Path(__file__).parent.parent / "scripts"


def five_entries(url: str, clock) -> object:
    with EpisodeService(url, clock=clock) as service:
        episode_id = active_episode(service, clock)
        for minutes in (180, 120, 90):
            service.record_session(
                factories.session(episode_id, advance(clock, hours=1), minutes=minutes)
            )
    return episode_id


def findings(url: str, clock) -> list[tuple[object, int, str]]:
    with EpisodeService(url, clock=clock) as service:
        return [(f.episode_id, f.version, f.problem) for f in verify_store(service)]


def test_untouched_store_verifies(durable_url, clock):
    """A store nobody touched has no findings."""
    five_entries(durable_url, clock)
    assert findings(durable_url, clock) == []


def test_one_changed_byte_is_found_at_its_version(durable_url, clock):
    """180 minutes edited to 181 in the database breaks version 3's link."""
    episode_id = five_entries(durable_url, clock)
    tamper.replace_text(durable_url, episode_id, 3, '"minutes":180', '"minutes":181')
    assert findings(durable_url, clock) == [(episode_id, 3, "chain-mismatch")]


def test_a_deleted_entry_is_a_gap(durable_url, clock):
    """Deleting version 4 leaves a gap and a broken link at version 5."""
    episode_id = five_entries(durable_url, clock)
    tamper.delete(durable_url, episode_id, 4)
    assert findings(durable_url, clock) == [
        (episode_id, 4, "version-gap"),
        (episode_id, 5, "chain-mismatch"),
    ]


def test_two_swapped_entries_are_both_found(durable_url, clock):
    """Exchanging versions 3 and 4 breaks both their links."""
    episode_id = five_entries(durable_url, clock)
    tamper.swap(durable_url, episode_id, 3, 4)
    found = findings(durable_url, clock)
    assert {(v, p) for _, v, p in found} >= {
        (3, "chain-mismatch"),
        (4, "chain-mismatch"),
    }


def test_verification_of_named_episodes_only(durable_url, clock):
    """Verifying one episode ignores damage elsewhere."""
    damaged = five_entries(durable_url, clock)
    intact = five_entries(durable_url, clock)
    tamper.delete(durable_url, damaged, 2)
    with EpisodeService(durable_url, clock=clock) as service:
        assert verify_episode(service, intact) == []
        assert verify_store(service, [intact]) == []
        assert [(f.version, f.problem) for f in verify_store(service, [damaged])] == [
            (2, "version-gap"),
            (3, "chain-mismatch"),
        ]


def test_store_digest_changes_with_one_byte(sqlite_url, clock):
    """The store digest covers every stored byte of every event."""
    episode_id = five_entries(sqlite_url, clock)
    with EpisodeService(sqlite_url, clock=clock) as service:
        before = store_digest(service)
    tamper.replace_text(sqlite_url, episode_id, 5, '"minutes":90', '"minutes":91')
    with EpisodeService(sqlite_url, clock=clock) as service:
        assert store_digest(service) != before


def run_third_party_script(url: str) -> subprocess.CompletedProcess[str]:
    if url.startswith("sqlite"):
        args = ["sqlite", url.removeprefix("sqlite:///")]
    else:
        dsn, schema = url.split("?schema=")
        args = ["postgresql", dsn, schema]
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "recompute_chains.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_third_party_recomputes_every_chain_from_the_documented_form(durable_url, clock):
    """scripts/recompute_chains.py, which imports nothing of ours, agrees."""
    episode_id = five_entries(durable_url, clock)
    clean = run_third_party_script(durable_url)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    tamper.replace_text(durable_url, episode_id, 4, '"minutes":120', '"minutes":121')
    tampered = run_third_party_script(durable_url)
    assert tampered.returncode == 1
    assert f"{episode_id} 4: chain mismatch" in tampered.stdout


def test_an_appended_forged_entry_is_found(durable_url, clock):
    """A copy of version 3 inserted as version 6 does not link to version 5."""
    episode_id = five_entries(durable_url, clock)
    tamper.insert_copy(durable_url, episode_id, 3, 6)
    assert findings(durable_url, clock) == [(episode_id, 6, "chain-mismatch")]


def test_an_entry_slipped_into_the_middle_is_found(durable_url, clock):
    """Versions 3-5 moved up and a forged version 3 inserted: every moved link breaks."""
    episode_id = five_entries(durable_url, clock)
    tamper.shift_up(durable_url, episode_id, 3, 5)
    tamper.insert_copy(durable_url, episode_id, 6, 3)  # old version 5, now at 3
    found = findings(durable_url, clock)
    assert (episode_id, 3, "chain-mismatch") in found
    assert {v for _, v, _ in found} == {3, 4, 5, 6}


def test_a_relabelled_entry_is_found_and_refuses_to_load(durable_url, clock):
    """An entry whose topic says another type fails its chain and will not decode."""
    episode_id = five_entries(durable_url, clock)
    tamper.retopic(durable_url, episode_id, 4, "iop_episodes.domain.events:MedicationDispensed")
    assert findings(durable_url, clock) == [(episode_id, 4, "chain-mismatch")]
    with EpisodeService(durable_url, clock=clock) as service:
        (finding,) = verify_store(service)
        assert "not a MedicationDispensed at version 4" in finding.detail
        with pytest.raises(errors.EntryIntegrityError, match="version 4"):
            list(service.history(episode_id))


def test_a_whole_store_pass_names_only_the_damaged_episodes_in_recorded_order(durable_url, clock):
    """Clean episodes pass the one-pass check; each damaged one is reported in full."""
    episodes = [five_entries(durable_url, clock) for _ in range(6)]
    tamper.replace_text(durable_url, episodes[4], 2, '"weekly_hours":"12"', '"weekly_hours":"19"')
    tamper.delete(durable_url, episodes[1], 5)
    tamper.delete(durable_url, episodes[1], 3)
    assert findings(durable_url, clock) == [
        (episodes[1], 3, "version-gap"),
        (episodes[1], 4, "chain-mismatch"),
        (episodes[4], 2, "chain-mismatch"),
    ]


@pytest.mark.parametrize("key", [None, base64.b64encode(bytes(range(32))).decode()])
def test_both_documented_recipes_give_the_same_canonical_bytes(sqlite_url, clock, key):
    """Parse, drop _chain and _seal and re-encode equals the byte slices the engine reads."""
    with EpisodeService(sqlite_url, clock=clock, integrity_key=key) as service:
        episode_id = active_episode(service, clock)
        for note in ("Café, naïve — 日本", 'said ","recorded_at":"2020-01-01T00:00:00.000000Z"'):
            service.record_session(
                factories.session(episode_id, advance(clock, hours=1), note=note)
            )
        for record in notifications(service):
            state = record.state
            entry = {k: v for k, v in json.loads(state).items() if k not in {"_chain", "_seal"}}
            assert canonical_json(entry) == split_stored(state)[1]
            assert state == canonical_json(json.loads(state))
            assert entry_texts(state) == (
                entry["occurred_at"],
                canonical_json(entry["payload"]).decode(),
                entry["recorded_at"],
            )


def test_the_seal_is_the_documented_hmac_of_the_raw_link(sqlite_url, clock):
    """HKDF-SHA256 (empty salt, info 'iop-episodes seal key v1') then HMAC-SHA256, stdlib only."""
    secret = bytes(range(32))
    with EpisodeService(sqlite_url, clock=clock, integrity_key=IntegrityKey(secret)) as service:
        active_episode(service, clock)
        records = list(notifications(service))
    pseudo_random = hmac.new(b"", secret, hashlib.sha256).digest()
    seal_key = hmac.new(pseudo_random, b"iop-episodes seal key v1\x01", hashlib.sha256).digest()
    for record in records:
        state = json.loads(record.state)
        expected = hmac.new(seal_key, bytes.fromhex(state["_chain"]), hashlib.sha256).hexdigest()
        assert state["_seal"] == expected
        assert record.state[77:152] == f'"_seal":"{expected}",'.encode()


@pytest.mark.postgres
@pytest.mark.parametrize("key", [None, base64.b64encode(bytes(range(32))).decode()])
def test_the_documented_sql_recomputes_every_link_in_postgres(postgres_url, clock, key):
    """The psql recipe in docs/hash-chain.md, its schema named, agrees with every stored link."""
    with EpisodeService(postgres_url, clock=clock, integrity_key=key) as service:
        episode_id = active_episode(service, clock)
        for minutes in (180, 120, 90):
            service.record_session(
                factories.session(episode_id, advance(clock, hours=1), minutes=minutes)
            )
    document = (Path(__file__).parent.parent / "docs" / "hash-chain.md").read_text()
    query = document.split("```sql\n")[1].split("```")[0]
    dsn, schema = postgres_url.split("?schema=")
    assert "FROM public.episodes_events" in query
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = query.replace("public.", f"{schema}.").replace("'...'", "%s")
        rows = conn.execute(query, (episode_id,)).fetchall()
    assert [version for version, _, _ in rows] == [1, 2, 3, 4, 5]
    assert all(recomputed == stored for _, recomputed, stored in rows)


def test_the_one_pass_check_accepts_every_clean_episode_on_every_backend(store_url, clock):
    """No clean episode is read a second time, in memory, SQLite or PostgreSQL."""
    with EpisodeService(store_url, clock=clock) as service:
        for _ in range(3):
            episode_id = active_episode(service, clock)
            service.record_session(factories.session(episode_id, advance(clock, hours=1)))
        assert integrity._suspect_episodes(service) == []
        assert verify_store(service) == []


def tampered_store(url: str, clock) -> list[object]:
    """Sixteen episodes (every shard gets some), four damaged four ways."""
    episodes = [five_entries(url, clock) for _ in range(16)]
    tamper.replace_text(url, episodes[0], 3, '"minutes":180', '"minutes":181')
    tamper.delete(url, episodes[5], 4)
    tamper.swap(url, episodes[9], 3, 4)
    tamper.retopic(url, episodes[14], 2, "iop_episodes.domain.events:Nonsense")
    return [episodes[n] for n in (0, 5, 9, 14)]


def test_verification_over_processes_finds_exactly_what_one_process_finds(durable_url, clock):
    """--jobs 2 and 3 report the same findings, in the same order, as one process."""
    damaged = tampered_store(durable_url, clock)
    with EpisodeService(durable_url, clock=clock) as service:
        alone = verify_store(service)
        assert {finding.episode_id for finding in alone} == set(damaged)
        assert verify_store(service, jobs=2) == alone
        assert verify_store(service, jobs=3) == alone


def test_shards_split_the_log_into_disjoint_parts_that_cover_it(durable_url, clock):
    """Every stored row is in exactly one shard, each shard's rows in log order."""
    ids = [five_entries(durable_url, clock) for _ in range(12)]
    while {shard_of(str(i), 3) for i in ids} != {0, 1, 2}:  # random ids may miss a shard
        ids.append(five_entries(durable_url, clock))
    with EpisodeService(durable_url, clock=clock) as service:
        whole = [row for page in log_pages(service.recorder) for row in page]
        parts = [
            [row for page in log_pages(service.recorder, page=7, shard=(i, 3)) for row in page]
            for i in range(3)
        ]
    assert all(part for part in parts)
    assert sorted(row for part in parts for row in part) == sorted(whole)
    assert all(part == sorted(part, key=lambda row: row[4]) for part in parts)
    for index, part in enumerate(parts):
        assert {shard_of(row[0], 3) for row in part} == {index}
