"""Whole-store work shared out over processes, one shard each."""

from __future__ import annotations

import os

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.shards import Shard, in_processes


def where_it_ran(service: EpisodeService, shard: Shard) -> tuple[int, Shard, str]:
    """Run in a worker: its process id, its shard and the store it opened."""
    return os.getpid(), shard, service.store.url


def test_each_shard_runs_in_a_process_of_its_own_on_the_same_store(sqlite_url):
    """Three jobs: three other processes, shards 0, 1 and 2 of 3, each on the caller's store."""
    with EpisodeService(sqlite_url) as service:
        ran = in_processes(service, where_it_ran, 3)
    assert [shard for _, shard, _ in ran] == [(0, 3), (1, 3), (2, 3)]
    assert os.getpid() not in {pid for pid, _, _ in ran}
    assert len({pid for pid, _, _ in ran}) == 3
    assert {url for _, _, url in ran} == {sqlite_url}


def test_an_in_memory_store_is_worked_in_this_process_as_one_shard():
    """No other process can see an in-memory store, so the work runs here over everything."""
    with EpisodeService("memory://") as service:
        assert in_processes(service, where_it_ran, 4) == [(os.getpid(), (0, 1), "memory://")]


def test_one_job_runs_here(sqlite_url):
    """--jobs 1 starts no process."""
    with EpisodeService(sqlite_url) as service:
        assert in_processes(service, where_it_ran, 1) == [(os.getpid(), (0, 1), sqlite_url)]
