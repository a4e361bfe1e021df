"""Whole-store passes split across processes, episodes partitioned by id.

An episode belongs to shard ``last hex digit of its id % count``
(``rawlog.shard_of``): the same on every backend, and tested in SQL, so a
process reads only its own episodes' rows. Each process
opens its own service on the store (a connection cannot cross a process),
so an in-memory store, which no other process can see, runs in one.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from iop_episodes.infrastructure.rawlog import shard_of

__all__ = ["Shard", "in_processes", "shard_of"]

if TYPE_CHECKING:
    from iop_episodes.application.service import EpisodeService

Shard = tuple[int, int]
"""(index, count): this process takes the episodes whose shard number is index."""

T = TypeVar("T")


def in_processes(
    service: EpisodeService,
    work: Callable[[EpisodeService, Shard], T],
    jobs: int,
) -> list[T]:
    """``work(service_in_that_process, (index, jobs))`` for every shard, one process each.

    Each worker process takes one shard and exits, so no two shards share one.

    ``work`` must be a module-level function (it is pickled to the workers,
    which are spawned, not forked: a forked child would share the parent's
    database connections). With one job, or an in-memory store, the work
    runs here over a single shard.
    """
    if jobs <= 1 or service.store.backend == "memory":
        return [work(service, (0, 1))]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [
            pool.submit(_in_worker, service.store.url, dict(service.env), work, (index, jobs))
            for index in range(jobs)
        ]
        return [future.result() for future in futures]


def _in_worker(
    url: str, env: dict[str, str], work: Callable[[EpisodeService, Shard], Any], shard: Shard
) -> Any:
    from iop_episodes.application.service import EpisodeService  # noqa: PLC0415  (in the worker)

    with EpisodeService(url, env=env) as service:
        return work(service, shard)
