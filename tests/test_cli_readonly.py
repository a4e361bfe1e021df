"""Reading commands never write: an auditor with a read-only copy or role can run them."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from iop_episodes.application.service import EpisodeService
from tests.clirun import (
    files_under,
    first_episode,
    iop,
    make_demo,
    one_line_error,
    public_directory,
)
from tests.conftest import POSTGRES_SERVER, require_postgres

READING = [
    ("audit", "verify"),
    ("audit", "history", "EPISODE"),
    ("audit", "history", "EPISODE", "--format", "csv"),
    ("schedule", "--week", "2026-W04"),
    ("projections", "status"),
    ("stepdown", "run", "--dry-run", "--as-of", "2026-02-09T07:00:00Z"),
    ("episodes",),
    ("worklist", "--as-of", "2026-02-09T07:00:00Z"),
    ("audit", "disclosures"),
    ("audit", "verify", "--json"),
    ("audit", "history", "EPISODE", "--json"),
    ("schedule", "--episode", "EPISODE", "--json"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    make_demo(path)
    with sqlite3.connect(path) as conn:  # fold the write-ahead log in: one file to copy
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="module")
def episode(demo: Path) -> str:
    return str(first_episode(f"sqlite:///{demo}"))


def commands_for(episode: str) -> list[list[str]]:
    return [[episode if part == "EPISODE" else part for part in command] for command in READING]


@pytest.fixture
def locked_copy(demo: Path) -> Iterator[Path]:
    """A copy of the demo store in a directory; both made read-only."""
    with public_directory() as directory:
        copy = directory / "store.db"
        shutil.copy(demo, copy)
        yield copy


def lock(store: Path) -> None:
    store.chmod(0o444)
    store.parent.chmod(0o555)


@pytest.mark.parametrize("index", range(len(READING)), ids=lambda i: " ".join(READING[i]))
def test_reading_commands_run_on_a_read_only_file_and_change_nothing(locked_copy, episode, index):
    """File and directory read-only, run as an unprivileged user: exit 0, not a byte changed."""
    lock(locked_copy)
    before = files_under(locked_copy.parent)
    done = iop(*commands_for(episode)[index], "--store", f"sqlite:///{locked_copy}", as_reader=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout
    assert files_under(locked_copy.parent) == before


def test_views_behind_a_read_only_store_are_built_from_the_store(locked_copy, episode):
    """New entries the views lack: readers say so, read the store directly, and count them."""
    url = f"sqlite:///{locked_copy}"
    with EpisodeService(url) as service:
        entries = sum(1 for _ in service.history(uuid.UUID(episode)))
        service.correct_entry(
            {
                "episode_id": episode,
                "actor": {"id": "rn.diaz", "role": "nurse"},
                "occurred_at": service.clock.now() - timedelta(days=1),
                "target_version": _correctable(service, episode),
                "action": "void",
                "reason": "entered on the wrong chart",
            }
        )
    with sqlite3.connect(locked_copy) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    lock(locked_copy)
    before = files_under(locked_copy.parent)
    history = iop("audit", "history", episode, "--store", url, "--format", "jsonl", as_reader=True)
    assert history.returncode == 0, history.stderr
    assert "reading the store directly" in history.stderr
    assert len(history.stdout.splitlines()) == entries + 1
    verify = iop("audit", "verify", "--store", url, as_reader=True)
    assert verify.returncode == 0, verify.stderr
    assert "verification: ok" in verify.stdout
    assert files_under(locked_copy.parent) == before


def test_the_html_report_is_refused_on_a_read_only_store(locked_copy, episode):
    """audit report records its disclosure: as the unprivileged user exit 3, no file, store
    untouched."""
    lock(locked_copy)
    before = files_under(locked_copy.parent)
    with public_directory() as out:
        out.chmod(0o777)  # the reader's own place to write the report
        report = out / "report.html"
        done = iop(
            "audit", "report", episode, "--store", f"sqlite:///{locked_copy}",
            "--out", str(report), "--recipient", "State auditor", "--purpose", "audit",
            "--as", "au.hill:auditor", "--exception", "audit-and-evaluation", as_reader=True,
        )  # fmt: skip
        assert done.returncode == 3, done.stderr
        assert one_line_error(done)
        assert list(out.iterdir()) == []
    assert files_under(locked_copy.parent) == before


def _correctable(service: EpisodeService, episode: str) -> int:
    for event in service.history(uuid.UUID(episode)):
        if type(event).__name__ == "SessionAttended":
            return event.originator_version
    raise AssertionError(episode)


# ---- PostgreSQL ----------------------------------------------------------------


def _schema(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def _tables(schema: str) -> list[str]:
    import psycopg  # noqa: PLC0415  (only PostgreSQL tests need the driver)

    with psycopg.connect(POSTGRES_SERVER) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    return sorted(row[0] for row in rows)


@pytest.mark.postgres
@pytest.mark.parametrize("index", [0, 1, 3, 4, 5, 6, 7, 8], ids=lambda i: " ".join(READING[i]))
def test_reading_commands_leave_an_empty_postgresql_schema_empty(postgres_url, index):
    """An empty schema: exit 3, and still no table in it afterwards."""
    done = iop(*READING[index], "--store", postgres_url)
    assert done.returncode == 3, done.stderr
    assert "holds no episode tables" in done.stderr
    assert _tables(_schema(postgres_url)) == []


@pytest.fixture
def reader_role(postgres_url: str) -> Iterator[str]:
    """A demo store in the schema, and a role that may only read it: its store URL."""
    require_postgres()
    import psycopg  # noqa: PLC0415

    assert iop("demo", "--store", postgres_url, "--clients", "6", "--weeks", "5").returncode == 0
    schema, role = _schema(postgres_url), f"iop_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
    try:
        yield f"postgresql://{role}@127.0.0.1:5432/test?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.postgres
def test_an_auditor_with_a_read_only_role_can_run_the_audit_commands(reader_role, postgres_url):
    """SELECT and USAGE only: verify, history, schedule and status all answer."""
    episode = str(first_episode(postgres_url))
    tables = _tables(_schema(postgres_url))
    for command in commands_for(episode):
        done = iop(*command, "--store", reader_role)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout
    assert _tables(_schema(postgres_url)) == tables


@pytest.mark.postgres
def test_a_read_only_role_reads_the_store_directly_when_the_views_are_behind(
    reader_role, postgres_url
):
    """Events the views lack and no right to write them: built in memory, exit 0."""
    episode = str(first_episode(postgres_url))
    with EpisodeService(postgres_url) as service:
        service.correct_entry(
            {
                "episode_id": episode,
                "actor": {"id": "rn.diaz", "role": "nurse"},
                "occurred_at": service.clock.now() - timedelta(days=1),
                "target_version": _correctable(service, episode),
                "action": "void",
                "reason": "entered on the wrong chart",
            }
        )
    done = iop("audit", "history", episode, "--store", reader_role, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    assert "reading the store directly" in done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["event_type"] == "EntryCorrected"
