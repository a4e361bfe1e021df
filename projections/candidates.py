"""The hour schedule as the step-down job's candidate source."""

from __future__ import annotations

import sys
from datetime import datetime
from uuid import UUID

from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import Candidate
from projections.runner import ViewRunner, reading_views
from projections.schedule import step_down_candidates
from projections.views import EpisodeViews


class ScheduleCandidates:
    """Catch the views up, then read active episodes and their recent weeks.

    On a read-only service (a dry run) the views are caught up only where
    the database allows, else built in memory for the sweep.
    """

    def __init__(self, service: EpisodeService) -> None:
        self.service = service
        self.runner = None if service.store.read_only else ViewRunner(service)

    def _views(self) -> EpisodeViews:
        if self.runner is None:
            return reading_views(self.service, _notice)
        self.runner.catch_up()
        return self.runner.views

    def candidates(self, as_of: datetime, weeks: int) -> list[Candidate]:
        return [
            Candidate(UUID(episode_id), standing, evidence)
            for episode_id, standing, evidence in step_down_candidates(self._views(), as_of, weeks)
        ]


def _notice(text: str) -> None:
    print(f"iop: note: {text}", file=sys.stderr)
