"""Finding clients: `iop episodes`, client references wherever an episode id goes, local times."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import MapperDeserialisationError

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import advance, open_episode
from projections import cli
from projections.episodes import EpisodeListing, episodes_table, list_episodes
from projections.rows import EpisodeRow
from projections.runner import ViewRunner
from projections.views import MemoryEpisodeViews
from tests.cli import iop

EVENING = datetime(2026, 1, 8, 1, 40, tzinfo=UTC)  # 20:40 on 7 January in New York


def small_program(url: str) -> dict[str, UUID]:
    """MRN-A active (a session at 20:40 on 7 January), MRN-B discharged and back, MRN-C new."""
    clock = SimulatedClock(EVENING - timedelta(days=3))
    with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
        a = open_episode(service, clock, client_ref="MRN-A")
        service.create_plan(factories.plan(a, advance(clock, hours=1)))
        b1 = open_episode(service, clock, client_ref="MRN-B")
        service.create_plan(factories.plan(b1, advance(clock, hours=1)))
        service.discharge(factories.discharge(b1, advance(clock, hours=1)))
        b2 = open_episode(service, clock, client_ref="MRN-B")
        c = open_episode(service, clock, client_ref="MRN-C")
        clock.advance(EVENING - clock.now() + timedelta(minutes=10))
        service.record_session(factories.session(a, EVENING))
        ViewRunner(service).catch_up()  # as a writing command would leave them
    return {"a": a, "b1": b1, "b2": b2, "c": c}


@pytest.fixture
def program(tmp_path: Path) -> tuple[str, dict[str, UUID]]:
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    return url, small_program(url)


def test_episodes_lists_every_episode_with_client_status_level_hours_and_dates(program):
    """One line per episode, client reference first, times local with their offset."""
    url, ids = program
    done = iop("episodes", "--store", url)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("4 episodes (active 1, assessed 2, discharged 1)")
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["MRN-A", "MRN-B", "MRN-B", "MRN-C"]
    a = next(line for line in lines if line.startswith("MRN-A"))
    assert "active" in a
    assert "2.1" in a
    assert str(ids["a"]) in a
    assert "-05:00" in a


def test_episodes_filters_by_client_and_by_status(program):
    """--client and --status choose the episodes listed."""
    url, ids = program
    both = json.loads(iop("episodes", "--store", url, "--client", "MRN-B", "--json").stdout)
    assert {e["episode_id"] for e in both} == {str(ids["b1"]), str(ids["b2"])}
    discharged = json.loads(
        iop("episodes", "--store", url, "--status", "discharged", "--json").stdout
    )
    assert [e["episode_id"] for e in discharged] == [str(ids["b1"])]


def test_episodes_json_validates_with_numbers_and_times_with_offsets(program):
    """Each object is an EpisodeListing; hours are numbers; times are ISO 8601 with offset."""
    url, _ = program
    listed = json.loads(iop("episodes", "--store", url, "--json").stdout)
    assert EpisodeListing.model_validate(listed[0]).client_ref == "MRN-A"
    assert all(EpisodeListing.model_validate(e) for e in listed)
    active = next(e for e in listed if e["status"] == "active")
    assert active["weekly_hours"] == 12
    assert isinstance(active["weekly_hours"], int)
    assert active["assessed_at"].endswith("-05:00")
    assert datetime.fromisoformat(active["plan_started_at"]).utcoffset() == timedelta(hours=-5)


def test_episodes_timezone_override_and_unknown_timezone(program):
    """--timezone UTC shows +00:00; an unknown zone is a usage error naming --timezone."""
    url, _ = program
    utc = iop("episodes", "--store", url, "--timezone", "UTC")
    assert "+00:00" in utc.stdout
    assert "-05:00" not in utc.stdout
    mars = iop("episodes", "--store", url, "--timezone", "Mars/Olympus", expect=2)
    assert "--timezone" in mars.stderr
    assert "Traceback" not in mars.stderr


def test_a_client_reference_works_wherever_an_episode_id_does(program):
    """audit history, schedule --episode and audit verify take MRN-A as they take its id."""
    url, ids = program
    by_ref = iop("audit", "history", "MRN-A", "--store", url, "--format", "jsonl")
    by_id = iop("audit", "history", str(ids["a"]), "--store", url, "--format", "jsonl")
    assert by_ref.stdout == by_id.stdout
    schedule = iop("schedule", "--store", url, "--episode", "MRN-A")
    assert schedule.stdout.startswith(f"episode {ids['a']}  client MRN-A")
    iop("audit", "verify", "MRN-A", "MRN-C", "--store", url)  # exits 0: both verify


EXCEPTION = ("--recipient", "State", "--purpose", "audit", "--as", "pd.gray:program_director")
EXCEPTION += ("--exception", "audit-and-evaluation")


def test_the_exports_take_a_client_reference_as_they_take_its_id(program):
    """export fhir and export audit-report of MRN-A disclose the same bytes as of its id."""
    url, ids = program
    for kind in ("fhir", "audit-report"):
        by_ref = iop("export", kind, "MRN-A", *EXCEPTION, "--store", url)
        by_id = iop("export", kind, str(ids["a"]), *EXCEPTION, "--store", url)
        assert by_ref.stdout == by_id.stdout
        assert str(ids["a"]) in by_ref.stdout
    shared = iop("export", "fhir", "MRN-B", *EXCEPTION, "--store", url, expect=2)
    assert "matches 2 episodes" in shared.stderr
    accounting = json.loads(iop("audit", "disclosures", "--store", url, "--json").stdout)
    assert len(accounting) == 4  # the ambiguous export recorded nothing


def test_the_accounting_shows_local_times_with_their_offset(program):
    """audit disclosures prints each time to the minute in the program's zone, or --timezone's."""
    url, _ = program
    iop("export", "audit-report", "MRN-A", *EXCEPTION, "--store", url)
    local = iop("audit", "disclosures", "--store", url).stdout.splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d -0[45]:00  disclosure ", local), local
    utc = iop("audit", "disclosures", "--store", url, "--timezone", "UTC").stdout.splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d \+00:00  disclosure ", utc), utc
    iop("audit", "disclosures", "--store", url, "--timezone", "Mars/Olympus", expect=2)


def test_a_reference_matching_several_episodes_is_a_usage_error_listing_them(program):
    """MRN-B was admitted twice: exit 2, one line naming both episodes."""
    url, ids = program
    done = iop("audit", "history", "MRN-B", "--store", url, expect=2)
    assert done.stdout == ""
    (line,) = [line for line in done.stderr.splitlines() if not line.startswith("iop: note:")]
    assert str(ids["b1"]) in line
    assert str(ids["b2"]) in line
    assert "matches 2 episodes" in line


def test_an_unknown_reference_says_so(program):
    """No episode for the reference: a usage error (exit 2) and a pointer to iop episodes."""
    url, _ = program
    done = iop("audit", "history", "MRN-NOBODY", "--store", url, expect=2)
    assert "no episode for client reference 'MRN-NOBODY'" in done.stderr


def test_a_view_that_names_another_client_is_refused(program):
    """The view's client_ref edited to MRN-Z: finding MRN-Z fails and points at audit verify."""
    url, ids = program
    iop("projections", "catch-up", "--store", url)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute(
            "UPDATE iop_episodes SET client_ref = 'MRN-Z' WHERE episode_id = ?", (str(ids["a"]),)
        )
    done = iop("audit", "history", "MRN-Z", "--store", url, expect=4)  # an integrity problem
    assert done.stdout == ""
    assert "run iop audit verify" in done.stderr
    assert "'MRN-A'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_evening_session_shows_on_the_7th_in_history_and_schedule(program):
    """20:40 in New York on 7 January is in the text history as 2026-01-07 20:40 -05:00."""
    url, _ = program
    text = iop("audit", "history", "MRN-A", "--store", url).stdout
    session = next(line for line in text.splitlines() if line.startswith("v3 "))
    assert "2026-01-07 20:40 -05:00" in session
    csv_text = iop("audit", "history", "MRN-A", "--store", url, "--format", "csv").stdout
    assert "2026-01-07 20:40 -05:00" in csv_text
    utc = iop("audit", "history", "MRN-A", "--store", url, "--timezone", "UTC").stdout
    assert "2026-01-08 01:40 +00:00" in utc


def test_the_schedule_shows_the_client_reference(program):
    """The program's table has a client column; --json carries client_ref."""
    url, _ = program
    table = iop("schedule", "--store", url, "--week", "2026-W02")
    assert table.stdout.splitlines()[1].startswith("client ")
    assert table.stdout.splitlines()[2].startswith("MRN-A ")
    rows = json.loads(iop("schedule", "--store", url, "--week", "2026-W02", "--json").stdout)
    assert [row["client_ref"] for row in rows] == ["MRN-A"]


def test_with_a_key_the_client_reference_is_sealed_in_the_view_and_shown(tmp_path, monkeypatch):
    """IOP_CIPHER_KEY: the view's client_ref column is enc:..., `iop episodes` shows MRN-A."""
    monkeypatch.setenv("IOP_CIPHER_KEY", AESCipher.create_key(32))
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    small_program(url)
    done = iop("episodes", "--store", url, "--client", "MRN-A", "--json")
    assert [e["client_ref"] for e in json.loads(done.stdout)] == ["MRN-A"]
    with sqlite3.connect(tmp_path / "iop.db") as db:
        stored = [row[0] for row in db.execute("SELECT client_ref FROM iop_episodes")]
    assert len(stored) == 4
    assert all(value.startswith("enc:") for value in stored)


def test_with_a_key_the_schedule_shows_the_client_reference_opened(tmp_path, monkeypatch):
    """An encrypted store read with IOP_CIPHER_KEY: the week's table and JSON name MRN-A."""
    monkeypatch.setenv("IOP_CIPHER_KEY", AESCipher.create_key(32))
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    small_program(url)
    rows = json.loads(iop("schedule", "--store", url, "--week", "2026-W02", "--json").stdout)
    assert [(row["client_ref"], row["client_ref_sealed"]) for row in rows] == [("MRN-A", False)]
    table = iop("schedule", "--store", url, "--week", "2026-W02").stdout.splitlines()
    assert table[2].startswith("MRN-A ")


def test_without_the_key_an_encrypted_store_lists_its_episodes_sealed(tmp_path, monkeypatch):
    """No IOP_CIPHER_KEY on an encrypted store: every episode listed, references (sealed)."""
    monkeypatch.setenv("IOP_CIPHER_KEY", AESCipher.create_key(32))
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    ids = small_program(url)
    iop("projections", "catch-up", "--store", url)
    monkeypatch.delenv("IOP_CIPHER_KEY")
    listed = json.loads(iop("episodes", "--store", url, "--json").stdout)
    assert {e["episode_id"] for e in listed} == {str(i) for i in ids.values()}
    assert all(e["client_ref"] is None and e["client_ref_sealed"] for e in listed)
    table = iop("episodes", "--store", url)
    assert [line.split()[0] for line in table.stdout.splitlines()[2:]] == ["(sealed)"] * 4
    assert "IOP_CIPHER_KEY is not set" in table.stderr
    assert "MRN-" not in table.stdout


def test_a_sealed_reference_read_without_the_key_is_shown_as_sealed(clock):
    """A view row whose client_ref is still sealed lists as (sealed), with client_ref null."""
    with EpisodeService("memory://", clock=clock) as service:
        views = MemoryEpisodeViews()
        views.tables["episodes"]["e"] = EpisodeRow(
            episode_id="0f0e8a4e-2f7a-4a4e-9a53-2f4c7b1d9e10",
            status="assessed",
            age_group="adult",
            program_timezone="America/New_York",
            level=None,
            weekly_hours=None,
            plan_weekly_hours=None,
            modality_hours="{}",
            medications="[]",
            plan_started_at=None,
            last_change_at=None,
            discharged_at=None,
            discharge_reason=None,
            version=1,
            client_ref="enc:AAAA",
            assessed_at="2026-03-02T14:00:00.000000Z",
        )
        (listing,) = list_episodes(service, views, "America/New_York")
    assert (listing.client_ref, listing.client_ref_sealed) == (None, True)
    assert "(sealed)" in episodes_table([listing], "America/New_York")


def test_views_made_before_the_client_column_gain_it_and_are_projected_again(program):
    """An old iop_episodes table without client_ref/assessed_at is altered and re-projected."""
    url, _ = program
    iop("projections", "catch-up", "--store", url)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE iop_episodes DROP COLUMN client_ref")
        db.execute("ALTER TABLE iop_episodes DROP COLUMN assessed_at")
    with EpisodeService(url) as service:
        runner = ViewRunner(service)
        assert runner.status().lag == runner.status().head  # views forgotten: projected again
        runner.catch_up()
        assert {row.client_ref for row in runner.views.episodes()} == {"MRN-A", "MRN-B", "MRN-C"}


@pytest.mark.postgres
def test_on_postgres_episodes_are_listed_and_old_views_gain_the_column(postgres_url):
    """The same listing on PostgreSQL; old views are read around; a writer re-adds the columns."""
    ids = small_program(postgres_url)
    listed = json.loads(iop("episodes", "--store", postgres_url, "--json").stdout)
    assert [e["client_ref"] for e in listed] == ["MRN-A", "MRN-B", "MRN-B", "MRN-C"]
    import psycopg  # noqa: PLC0415  (only PostgreSQL tests need the driver)

    schema = postgres_url.rsplit("schema=", 1)[1]
    with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as db:
        db.execute(f"ALTER TABLE {schema}.iop_episodes DROP COLUMN client_ref")
        db.execute(f"ALTER TABLE {schema}.iop_episodes DROP COLUMN assessed_at")
    again = json.loads(
        iop("episodes", "--store", postgres_url, "--client", "MRN-A", "--json").stdout
    )
    assert [e["episode_id"] for e in again] == [str(ids["a"])]
    iop("projections", "catch-up", "--store", postgres_url)  # a writing command migrates
    with psycopg.connect(postgres_url.split("?")[0]) as db:
        columns = {
            row[0]
            for row in db.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'iop_episodes'",
                (schema,),
            )
        }
    assert {"client_ref", "assessed_at"} <= columns


def test_a_wrong_key_is_still_refused_when_listing(tmp_path, monkeypatch):
    """Another key than the store's: iop episodes raises StoreKeyError, lists nothing."""
    monkeypatch.setenv("IOP_CIPHER_KEY", AESCipher.create_key(32))
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    small_program(url)
    monkeypatch.setenv("IOP_CIPHER_KEY", AESCipher.create_key(32))
    args = argparse.Namespace(store=url, timezone=None, client=None, status=None, json=True)
    with pytest.raises(errors.StoreKeyError):
        cli.cmd_episodes(args)


def test_check_key_false_opens_an_encrypted_store_whose_entries_then_do_not_decode(
    tmp_path, monkeypatch
):
    """Without the key: StoreKeyError at start-up, unless check_key=False; then reads fail."""
    monkeypatch.setenv("IOP_CIPHER_KEY", AESCipher.create_key(32))
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    ids = small_program(url)
    monkeypatch.delenv("IOP_CIPHER_KEY")
    with pytest.raises(errors.StoreKeyError):
        EpisodeService(url)
    with EpisodeService(url, check_key=False) as service:
        assert service.mapper.cipher is None
        with pytest.raises(MapperDeserialisationError):
            service.episode(ids["a"])
