"""The read side as an ``iop`` extension: its commands and the demo's schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from iop_episodes.application.output import progress_bar
from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import CandidateSource
from iop_episodes.audit import commands as attestation
from iop_episodes.domain.weeks import iso_week
from projections import cli
from projections.candidates import ScheduleCandidates
from projections.runner import ViewRunner
from projections.schedule import program_schedule


class ReadSide:
    def register(self, commands: Any) -> None:
        cli.register(commands)

    def candidates(self, service: EpisodeService) -> CandidateSource:
        return ScheduleCandidates(service)

    def json_models(self) -> dict[str, type[BaseModel]]:
        return {**cli.JSON_MODELS, **attestation.JSON_MODELS}

    def after_demo(self, service: EpisodeService, now: datetime) -> str:
        runner = ViewRunner(service)
        with progress_bar("projecting") as progress:
            runner.catch_up(progress)
        week = iso_week(now, service.program_timezone)
        return cli.schedule_table(program_schedule(runner.views, week), week)
