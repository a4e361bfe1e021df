"""The scheduler process: APScheduler runs the step-down sweep on a cron trigger.

* The trigger fires in the program's timezone (default daily at 02:00).
* A sweep missed while the process was down runs once on start (as of the
  latest fire time); overdue runs coalesce into one (``coalesce=True``,
  no misfire grace limit) and only one instance runs at a time.
* Across processes and nodes a ``SweepGuard`` lets one process sweep each run.
* SIGTERM and SIGINT stop it cleanly after the episode being swept.
* With a ``checkpoint`` action (the integrity key is set), a signed
  checkpoint follows every sweep this process runs, and also every
  ``checkpoint_every`` seconds when given; a failing checkpoint is logged
  and the scheduler goes on.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import CandidateSource, SweepSummary, run_stepdown_sweep
from iop_episodes.domain.policy import StepDownSettings
from iop_episodes.domain.weeks import zone
from iop_episodes.infrastructure.sweeplock import SweepGuard, guard_for

LOG = logging.getLogger(__name__)
DEFAULT_CRON = "0 2 * * *"


def parse_cron(expression: str, timezone: str) -> CronTrigger:
    """Five crontab fields, or six with seconds first (``*/1 * * * * *``)."""
    fields = expression.split()
    if len(fields) == 5:
        return CronTrigger.from_crontab(expression, timezone=zone(timezone))
    if len(fields) == 6:
        second, minute, hour, day, month, day_of_week = fields
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            timezone=zone(timezone),
        )
    msg = f"--cron must have 5 fields (or 6 with seconds first), got {expression!r}"
    raise ValueError(msg)


def run_key(now: datetime) -> datetime:
    """The run a fire belongs to: its moment to the whole second.

    APScheduler wakes within milliseconds of the scheduled second, so every
    process on the same trigger derives the same key for the same run, and
    the two runs of a repeated daylight-saving hour get different keys.
    """
    return now.replace(microsecond=0)


class SweepJob:
    """What each fire of the trigger does: take the guard, sweep, log the run."""

    def __init__(
        self,
        service: EpisodeService,
        source: CandidateSource,
        guard: SweepGuard,
        *,
        settings: StepDownSettings | None = None,
        stop: threading.Event | None = None,
        now: Callable[[], datetime] | None = None,
        checkpoint: Callable[[], object] | None = None,
    ) -> None:
        self.service = service
        self.source = source
        self.guard = guard
        self.settings = settings
        self.stop = stop or threading.Event()
        self.now = now or service.clock.now
        self.checkpoint = checkpoint

    def __call__(self) -> SweepSummary | None:
        return self.run(run_key(self.now()))

    def run(self, run_at: datetime) -> SweepSummary | None:
        with self.guard.hold(run_at) as skip:
            if skip is not None:
                LOG.info("run at %s skipped: %s", run_at.isoformat(), skip)
                return None
            LOG.info("run at %s: sweep started", run_at.isoformat())
            summary = run_stepdown_sweep(
                self.service, self.source, run_at, settings=self.settings, stop=self.stop
            )
            if not summary.interrupted:
                self.guard.finished(run_at, summary.line())
            LOG.info("run at %s: %s", run_at.isoformat(), summary.line())
        if self.checkpoint is not None:
            logged_checkpoint(self.checkpoint)
        return summary


def logged_checkpoint(checkpoint: Callable[[], object]) -> None:
    """Make a checkpoint, logging what it signed or why it failed; never raises."""
    try:
        made = checkpoint()
    except Exception:
        LOG.exception("checkpoint failed")
        return
    LOG.info("%s", made)


def run_scheduler(
    service: EpisodeService,
    source: CandidateSource,
    *,
    cron: str = DEFAULT_CRON,
    timezone: str | None = None,
    settings: StepDownSettings | None = None,
    checkpoint: Callable[[], object] | None = None,
    checkpoint_every: float | None = None,
) -> None:
    """Block, sweeping on the trigger (and checkpointing), until SIGTERM or SIGINT."""
    tz = timezone or service.program_timezone
    trigger = parse_cron(cron, tz)
    stop = threading.Event()
    guard = guard_for(service.store, service)
    job = SweepJob(service, source, guard, settings=settings, stop=stop, checkpoint=checkpoint)
    scheduler = BlockingScheduler(timezone=zone(tz))
    common: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    scheduler.add_job(job, trigger, id="stepdown-sweep", **common)
    if checkpoint is not None and checkpoint_every:
        scheduler.add_job(
            logged_checkpoint,
            IntervalTrigger(seconds=checkpoint_every),
            args=[checkpoint],
            id="checkpoint",
            **common,
        )
    # A run missed while the process was down happens once, now: a sweep as of
    # now decides on the same complete weeks and records nothing twice.
    scheduler.add_job(job, id="stepdown-catch-up", **common)

    def shut_down(signum: int, frame: FrameType | None) -> None:
        del frame
        LOG.info("signal %s: stopping after the current episode", signal.Signals(signum).name)
        stop.set()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    LOG.info("scheduler: step-down sweep on %r in %s", cron, tz)
    scheduler.start()
    LOG.info("scheduler stopped")
