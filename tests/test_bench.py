"""The benchmark's baselines are frozen standard-library code that measure real work."""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from iop_episodes.application.service import EpisodeService
from iop_episodes.domain.rules import MINUTES_PER_LOCAL_DAY
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from scripts import bench
from tests import tamper

ENGINE_WORDS = ("iop_episodes", "projections", "canonical_", "next_link", "as_received", "mapper")


@pytest.mark.parametrize("baseline", bench.BASELINES, ids=lambda f: f.__name__)
def test_no_baseline_names_the_engine(baseline):
    """Its source never mentions the engine; every global it uses is stdlib or the script's."""
    source = inspect.getsource(baseline)
    for word in ENGINE_WORDS:
        assert word not in source, word
    for name in baseline.__code__.co_names:
        used = vars(bench).get(name)
        module = getattr(used, "__module__", "") or ""
        assert not module.startswith(("iop_episodes", "projections", "eventsourcing")), name


def test_every_baseline_and_floor_is_listed_for_that_check():
    """No baseline_* or floor_* function escapes the check above."""
    named = {
        name
        for name in vars(bench)
        if name.startswith(("baseline_", "floor_")) and callable(vars(bench)[name])
    }
    assert named == {function.__name__ for function in bench.BASELINES}


def store_with_sessions(path: Path, clock) -> object:
    with EpisodeService(f"sqlite:///{path}", clock=clock) as service:
        episode_id = active_episode(service, clock)
        for minutes in (60, 90, 120):
            service.record_session(
                factories.session(episode_id, advance(clock, hours=1), minutes=minutes)
            )
        return episode_id


def test_the_hashing_baseline_checks_every_link_and_notices_a_changed_byte(tmp_path, clock):
    """Its work is the verifier's: all five links check out, and one edit breaks one."""
    path = tmp_path / "b.db"
    episode_id = store_with_sessions(path, clock)
    assert bench.baseline_read_and_hash(path) == 5
    tamper.replace_text(f"sqlite:///{path}", episode_id, 4, '"minutes":90', '"minutes":91')
    assert bench.baseline_read_and_hash(path) == 4


def test_the_parsing_baseline_reads_every_stored_event(tmp_path, clock):
    """Its work is the catch-up's reading: one parse per stored event."""
    path = tmp_path / "b.db"
    store_with_sessions(path, clock)
    assert bench.baseline_read_and_parse(path) == 5


def test_the_raw_sqlite_baseline_has_the_engines_durability(tmp_path):
    """WAL and synchronous=FULL, as the engine's store."""
    conn = bench.baseline_sqlite(tmp_path / "raw.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_figure_is_the_median_of_its_repetitions_with_their_spread():
    """value is the median ratio, min and max the extreme repetitions; JSON has the fields."""
    figure = bench.ratio_figure("B9", "what", [0.5, 0.2, 0.9, 0.4, 0.6], 0.45, "detail")
    record = json.loads(json.dumps(asdict(figure)))
    assert {key: record[key] for key in ("id", "value", "target", "holds", "min", "max")} == {
        "id": "B9",
        "value": 0.5,
        "target": ">= 0.45",
        "holds": True,
        "min": 0.2,
        "max": 0.9,
    }


def test_a_missed_target_makes_the_run_exit_1():
    """An upper bound exceeded by the median is a miss, and a miss is exit status 1."""
    held = bench.ratio_figure("B3", "load", [1.0, 1.1, 1.2, 1.3, 1.4], 2, "", at_most=True)
    missed = bench.ratio_figure("B5", "sweep", [1.1, 1.3, 1.4, 1.3, 1.0], 1.2, "", at_most=True)
    report = bench.ratio_figure("B8", "plain", [3.0] * 5, None, "")
    assert bench.exit_status([held, report]) == 0
    assert missed.holds is False
    assert bench.exit_status([held, missed, report]) == 1


def test_a_figure_prints_as_a_row_of_the_readme_table_with_its_floor_when_missed():
    """--markdown: median, spread, target and verdict in cells; a missed target shows its floor."""
    figure = bench.with_floor(
        bench.ratio_figure("B9", "what", [0.1, 0.2, 0.3, 0.25, 0.15], 0.5, "1 vs 2"), 0.4, "x"
    )
    assert (
        figure.markdown() == "| B9 | 0.200 | 0.100-0.300 | >= 0.5 | missed (floor 0.400) | 1 vs 2 |"
    )
    assert bench.MARKDOWN_HEAD.count("|") == figure.markdown().count("|") * 2


@pytest.mark.parametrize(("episodes", "commands"), [(50, 800), (50, 6000), (50, 72_000)])
def test_the_lag_writers_sessions_fit_in_each_episodes_local_day(episodes, commands):
    """B7c's writer gives each episode at most 24 hours of sessions (the day's limit)."""
    minutes = bench.session_minutes(episodes, commands)
    assert 1 <= minutes <= 60
    assert -(-commands // episodes) * minutes <= MINUTES_PER_LOCAL_DAY


def test_more_sessions_than_the_days_hold_are_refused_before_the_run():
    """Rather than a writer failing half-way with DayOverbooked."""
    with pytest.raises(ValueError, match="do not fit"):
        bench.session_minutes(3, 10_000)
