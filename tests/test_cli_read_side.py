"""The read side's commands, run as a user runs them, and killed part way."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest

from iop_episodes.application.service import EpisodeService
from iop_episodes.domain.catalog import AgeGroup, Level, band
from projections.runner import ViewRunner
from tests import tamper
from tests.cli import iop


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "iop.db"
    iop("demo", "--store", f"sqlite:///{path}", "--clients", "12", "--weeks", "8")
    return path


@pytest.fixture
def demo_url(demo_file: Path, tmp_path: Path) -> str:
    """A private copy of the demo store, free to tamper with."""
    copy = tmp_path / "copy.db"
    shutil.copy(demo_file, copy)
    return f"sqlite:///{copy}"


def some_episode(url: str) -> UUID:
    with EpisodeService(url) as service:
        return UUID(str(service.recorder.select_notifications(1, 1)[0].originator_id))


def test_demo_ends_with_the_schedule_above_the_digest(demo_file):
    """The demo catches up the views and prints the program's hour schedule."""
    done = iop(
        "demo",
        "--store",
        f"sqlite:///{demo_file.parent / 'again.db'}",
        "--clients",
        "12",
        "--weeks",
        "8",
    )
    lines = done.stdout.splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("hour schedule for"))
    assert lines[-1].startswith("store digest: ")
    assert table < len(lines) - 1
    assert "episode" in lines[table + 1]
    assert "compliance" in lines[table + 1]


def test_schedule_json_lists_active_clients_inside_their_band(demo_url):
    """Every client in the schedule has target hours inside their level's band."""
    done = iop("schedule", "--store", demo_url, "--week", "2026-W09", "--json")
    rows = json.loads(done.stdout)
    assert rows
    for row in rows:
        hours = Decimal(row["weekly_hours"])
        assert band(Level(row["level"]), AgeGroup(row["age_group"])).admits(hours), row


def test_schedule_of_one_episode_shows_taper_and_weeks(demo_url):
    """--episode prints the plan, the taper and each week."""
    episode_id = some_episode(demo_url)
    done = iop("schedule", "--store", demo_url, "--episode", str(episode_id))
    assert f"episode {episode_id}" in done.stdout
    assert "target" in done.stdout


def test_verify_passes_on_the_untouched_demo(demo_url):
    """iop audit verify exits 0 on a store nobody touched."""
    done = iop("audit", "verify", "--store", demo_url)
    assert "verification: ok" in done.stdout


@pytest.mark.parametrize("damage", ["byte", "delete", "swap"])
def test_verify_fails_naming_episode_and_version(demo_url, damage):
    """A changed byte, a deleted row, two swapped rows: exit 1, episode and version named."""
    episode_id = some_episode(demo_url)
    iop("projections", "catch-up", "--store", demo_url)
    if damage == "byte":
        tamper.replace_text(demo_url, episode_id, 2, '"days_per_week":3', '"days_per_week":4')
        expected = [f"episode {episode_id} version 2: chain-mismatch"]
    elif damage == "delete":
        tamper.delete(demo_url, episode_id, 3)
        expected = [
            f"episode {episode_id} version 3: version-gap",
            f"episode {episode_id} version 3: projection-mismatch",
        ]
    else:
        tamper.swap(demo_url, episode_id, 3, 4)
        expected = [
            f"episode {episode_id} version 3: chain-mismatch",
            f"episode {episode_id} version 4: chain-mismatch",
        ]
    done = iop("audit", "verify", "--store", demo_url, expect=1)
    for line in expected:
        assert line in done.stdout


def test_verify_by_client_reference_lists_the_findings_of_a_damaged_episode(demo_url):
    """A client reference names the episode without loading it: exit 1 with findings, not 4."""
    episode_id = some_episode(demo_url)
    with EpisodeService(demo_url) as service:
        client_ref = service.episode(episode_id).client_ref
    iop("projections", "catch-up", "--store", demo_url)
    tamper.replace_text(demo_url, episode_id, 2, '"days_per_week":3', '"days_per_week":4')
    tamper.delete_snapshots(demo_url, episode_id)  # so that loading it reads the damaged entry
    by_reference = iop("audit", "verify", client_ref, "--store", demo_url, expect=1)
    by_id = iop("audit", "verify", str(episode_id), "--store", demo_url, expect=1)
    assert f"episode {episode_id} version 2: chain-mismatch" in by_reference.stdout
    assert by_reference.stdout == by_id.stdout


def test_verify_over_two_processes_reports_what_one_process_reports(demo_url):
    """iop audit verify --jobs 2 on a damaged store: the same findings, order and exit code."""
    iop("projections", "catch-up", "--store", demo_url)
    with EpisodeService(demo_url) as service:
        episodes = list(
            dict.fromkeys(
                str(n.originator_id) for n in service.recorder.select_notifications(1, 10_000)
            )
        )
    tamper.replace_text(demo_url, UUID(episodes[0]), 2, '"days_per_week":3', '"days_per_week":4')
    tamper.delete(demo_url, UUID(episodes[3]), 3)
    tamper.swap(demo_url, UUID(episodes[-1]), 3, 4)
    one = iop("audit", "verify", "--store", demo_url, "--json", expect=1)
    two = iop("audit", "verify", "--store", demo_url, "--json", "--jobs", "2", expect=1)
    report = json.loads(one.stdout)
    assert len({finding["episode_id"] for finding in report["findings"]}) == 3
    assert report["entries"] > 0
    assert json.loads(two.stdout) == report  # findings, their order and the counts


def test_history_exports(demo_url):
    """text, jsonl and csv; --version cuts the history and shows that state."""
    episode_id = str(some_episode(demo_url))
    jsonl = iop(
        "audit",
        "history",
        episode_id,
        "--store",
        demo_url,
        "--format",
        "jsonl",
        "--version",
        "3",
    )
    assert [json.loads(line)["version"] for line in jsonl.stdout.splitlines()] == [
        1,
        2,
        3,
    ]
    text = iop("audit", "history", episode_id, "--store", demo_url, "--version", "2")
    assert "version 2" in text.stdout.splitlines()[0]
    csv_text = iop("audit", "history", episode_id, "--store", demo_url, "--format", "csv")
    assert csv_text.stdout.splitlines()[0].startswith("episode_id,client_ref,version,event_type")
    naive = iop(
        "audit",
        "history",
        episode_id,
        "--store",
        demo_url,
        "--as-of",
        "2026-01-20T00:00",
        expect=2,
    )
    assert "timezone" in naive.stderr


def test_projection_status_catch_up_and_rebuild(demo_url):
    """status reports position, head and lag; rebuild ends where catch-up ends."""
    status = json.loads(iop("projections", "status", "--store", demo_url, "--json").stdout)
    assert status["lag"] == status["head"] - status["position"]
    iop("projections", "rebuild", "--store", demo_url)
    after = json.loads(iop("projections", "status", "--store", demo_url, "--json").stdout)
    assert after["lag"] == 0
    assert after["position"] == after["head"]


# ---- a real crash -----------------------------------------------------------------


def kill_catch_up_part_way(url: str) -> int:
    """Start a catch-up in a subprocess and SIGKILL it after some batches commit."""
    with EpisodeService(url) as service:
        runner = ViewRunner(service)
        runner.views.reset()  # the demo caught up; start from an empty read side
        head = runner.status().head
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iop_episodes.entrypoints.cli",
                "projections",
                "catch-up",
                "--store",
                url,
                "--batch",
                "10",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while runner.views.position() < head // 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        position = runner.views.position()
    assert 0 < position < head, f"killed at {position} of {head}: not part way"
    return position


def assert_caught_up_views_equal_a_rebuild(url: str) -> None:
    with EpisodeService(url) as service:
        runner = ViewRunner(service)
        assert runner.status().lag == 0
        caught_up = runner.views.dump()
        runner.rebuild()
        assert runner.views.dump() == caught_up


def assert_restart_equals_rebuild(url: str) -> None:
    kill_catch_up_part_way(url)
    iop("projections", "catch-up", "--store", url)
    assert_caught_up_views_equal_a_rebuild(url)


@pytest.mark.slow
def test_catch_up_killed_part_way_resumes_to_what_a_rebuild_gives_on_sqlite(tmp_path):
    """SIGKILL mid-backlog, restart: every view equals a rebuild."""
    url = f"sqlite:///{tmp_path / 'backlog.db'}"
    iop("demo", "--store", url, "--clients", "40", "--weeks", "12")
    assert_restart_equals_rebuild(url)


@pytest.mark.slow
def test_catch_up_killed_part_way_resumes_to_what_a_rebuild_gives_on_postgres(
    postgres_url,
):
    """The same against PostgreSQL."""
    iop("demo", "--store", postgres_url, "--clients", "40", "--weeks", "12")
    assert_restart_equals_rebuild(postgres_url)


def test_stepdown_run_after_the_demo_reports_and_a_rerun_adds_nothing(demo_url):
    """`iop stepdown run --as-of ... --json` twice: decisions, then zero new step-downs."""
    as_of = "2026-03-02T07:00:00+00:00"  # the Monday after the demo's eighth week
    first = iop("stepdown", "run", "--store", demo_url, "--as-of", as_of, "--json")
    report = json.loads(first.stdout)
    assert report["examined"] == len(report["decisions"]) > 0
    assert all(d["decision"]["evidence"] for d in report["decisions"])
    again = json.loads(
        iop("stepdown", "run", "--store", demo_url, "--as-of", as_of, "--json").stdout
    )
    assert again["counts"]["stepped_down"] == 0
    dry = iop(
        "stepdown", "run", "--store", demo_url, "--as-of", "2026-03-02T07:00", "--json", expect=2
    )
    assert "argument --as-of" in dry.stderr
    assert "needs a timezone offset" in dry.stderr


def run_at_once(count: int, *args: str) -> None:
    """Start ``count`` identical ``iop`` processes together; every one must succeed."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "iop_episodes.entrypoints.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err


def assert_racing_catch_ups_project_each_event_once(url: str) -> None:
    with EpisodeService(url) as service:
        ViewRunner(service).views.reset()
    run_at_once(4, "projections", "catch-up", "--store", url, "--batch", "3")
    assert_caught_up_views_equal_a_rebuild(url)


@pytest.mark.slow
def test_four_catch_ups_at_once_on_sqlite(demo_url):
    """Four runners racing over one backlog: each event projected once, all succeed."""
    assert_racing_catch_ups_project_each_event_once(demo_url)


@pytest.mark.slow
def test_four_catch_ups_at_once_on_postgres(postgres_url):
    """The same on PostgreSQL."""
    iop("demo", "--store", postgres_url, "--clients", "12", "--weeks", "8")
    assert_racing_catch_ups_project_each_event_once(postgres_url)


def assert_processes_opening_the_views_together_all_start(url: str) -> None:
    with EpisodeService(url) as service:  # the event tables exist; the view tables do not
        assert service.recorder.max_notification_id() is None
    run_at_once(6, "projections", "catch-up", "--store", url)


@pytest.mark.slow
def test_processes_opening_the_views_together_all_start_on_sqlite(tmp_path):
    """Six processes creating the view tables at once: none fails (found by the soak)."""
    assert_processes_opening_the_views_together_all_start(f"sqlite:///{tmp_path / 'v.db'}")


@pytest.mark.slow
def test_processes_opening_the_views_together_all_start_on_postgres(postgres_url):
    """The same on PostgreSQL."""
    assert_processes_opening_the_views_together_all_start(postgres_url)


def test_verify_reports_what_it_checked(demo_url):
    """The summary line counts the episodes, entries, snapshots and view rows of the store."""
    with EpisodeService(demo_url) as service:
        entries = service.recorder.max_notification_id()
        view_rows = sum(len(rows) for rows in ViewRunner(service).views.dump().values())
    done = iop("audit", "verify", "--store", demo_url)
    summary = done.stdout.splitlines()[-2]
    counted = re.fullmatch(
        r"checked (\d+) episodes, (\d+) entries, (\d+) snapshots, (\d+) view rows", summary
    )
    assert counted is not None, summary
    episodes, checked_entries, snapshots, rows = map(int, counted.groups())
    assert (episodes, checked_entries, rows) == (12, entries, view_rows)
    assert snapshots > 0


def test_verify_json_is_one_report_with_counts_and_findings(demo_url):
    """--json prints one object: ok, the counts, and each finding with episode and version."""
    episode_id = some_episode(demo_url)
    tamper.replace_text(demo_url, episode_id, 2, '"days_per_week":3', '"days_per_week":4')
    done = iop("audit", "verify", "--store", demo_url, "--json", expect=1)
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert report["episodes"] == 12
    assert report["entries"] > report["episodes"]
    assert report["view_rows"] > report["entries"]
    assert {
        "episode_id": str(episode_id),
        "version": 2,
        "problem": "chain-mismatch",
    }.items() <= report["findings"][0].items()


def test_verify_of_an_unknown_episode_is_an_error(demo_url):
    """An episode id the store does not hold is a finding, not ok: exit 1."""
    unknown = "00000000-0000-4000-8000-000000000001"
    done = iop("audit", "verify", unknown, "--store", demo_url, expect=1)
    assert f"episode {unknown} version 0: unknown-episode" in done.stdout


def test_verify_does_not_copy_a_forged_row_into_the_views(demo_url):
    """verify leaves the views as they stand: an entry appended after them is not projected."""
    with EpisodeService(demo_url) as service:
        runner = ViewRunner(service)
        before = runner.status()
    episode_id = some_episode(demo_url)
    with EpisodeService(demo_url) as service:
        last = len(service.recorder.select_events(episode_id))
    tamper.insert_copy(demo_url, episode_id, 3, last + 1)
    done = iop("audit", "verify", "--store", demo_url, expect=1)
    assert f"episode {episode_id} version {last + 1}: chain-mismatch" in done.stdout
    with EpisodeService(demo_url) as service:
        assert ViewRunner(service).status().position == before.position
