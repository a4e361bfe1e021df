"""Settings a program chooses for its rules, passed to every command as data."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from iop_episodes.domain.takehome import FEDERAL_TAKE_HOME_POLICY, TakeHomePolicy
from iop_episodes.domain.values import Model

MINUTES_PER_LOCAL_DAY = 24 * 60
DEFAULT_MAX_SESSION_MINUTES = 12 * 60


class RuleSettings(Model):
    """The program's limits: the longest session and its take-home policy."""

    max_session_minutes: Annotated[int, Field(ge=1, le=MINUTES_PER_LOCAL_DAY)] = (
        DEFAULT_MAX_SESSION_MINUTES
    )
    take_home_policy: TakeHomePolicy = FEDERAL_TAKE_HOME_POLICY


DEFAULT_RULES = RuleSettings()
