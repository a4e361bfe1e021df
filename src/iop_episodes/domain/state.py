"""A read-only summary of an episode's state, safe to hand to callers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from iop_episodes.domain.catalog import AgeGroup, Level, Payer
from iop_episodes.domain.values import Model

if TYPE_CHECKING:
    from iop_episodes.domain.episode import Episode

Status = Literal["assessed", "active", "discharged"]


class EpisodeState(Model):
    episode_id: UUID
    version: int
    status: Status
    client_ref: str
    program_timezone: str
    age_group: AgeGroup
    payer: Payer
    assessed_at: datetime
    plan_started_at: datetime | None
    level: Level | None
    weekly_hours: Decimal | None
    medications: tuple[str, ...]
    step_downs: int
    last_step_down_week: str | None
    discharged_at: datetime | None
    discharge_reason: int | None
    voided_versions: tuple[int, ...]
    chain: str
    recorded_at: datetime

    @classmethod
    def of(cls, episode: Episode) -> EpisodeState:
        status: Status = (
            "discharged" if episode.is_discharged else "active" if episode.has_plan else "assessed"
        )
        return cls(
            episode_id=episode.id,
            version=episode.version,
            status=status,
            client_ref=episode.client_ref,
            program_timezone=episode.program_timezone,
            age_group=episode.age_group,
            payer=episode.payer,
            assessed_at=episode.assessed_at,
            plan_started_at=episode.plan_started_at,
            level=episode.level,
            weekly_hours=episode.weekly_hours,
            medications=tuple(episode.medications),
            step_downs=episode.step_downs,
            last_step_down_week=episode.last_step_down_week,
            discharged_at=episode.discharged_at,
            discharge_reason=episode.discharge_reason,
            voided_versions=tuple(episode.voided),
            chain=episode.chain,
            recorded_at=episode.modified_on,
        )
