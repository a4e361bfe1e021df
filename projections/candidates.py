"""The hour schedule as the step-down job's candidate source."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import Candidate
from projections.runner import ViewRunner
from projections.schedule import step_down_candidates


class ScheduleCandidates:
    """Catch the views up, then read active episodes and their recent weeks."""

    def __init__(self, service: EpisodeService) -> None:
        self.runner = ViewRunner(service)

    def candidates(self, as_of: datetime, weeks: int) -> list[Candidate]:
        self.runner.catch_up()
        return [
            Candidate(UUID(episode_id), standing, evidence)
            for episode_id, standing, evidence in step_down_candidates(
                self.runner.views, as_of, weeks
            )
        ]
