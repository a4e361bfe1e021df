"""What the step-down policy sees of an episode, computed from its own entries.

The step-down job decides from these, never from a view's rows: the weeks'
targets follow the taper in clinical order, attended hours and screens come
from the episode's timeline with voids and amendments applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from iop_episodes.domain.payloads import WeekEvidence
from iop_episodes.domain.policy import EpisodeStanding, hours_from_minutes, week_target
from iop_episodes.domain.weeks import iso_week

if TYPE_CHECKING:
    from iop_episodes.domain.episode import Episode


def standing_of(episode: Episode) -> EpisodeStanding | None:
    """The episode's hours, level and last change; None unless it is active."""
    changed = episode.last_change_at
    if episode.is_discharged or episode.weekly_hours is None or episode.level is None:
        return None
    if changed is None:
        return None
    return EpisodeStanding(
        weekly_hours=episode.weekly_hours,
        level=episode.level,
        age_group=episode.age_group,
        program_timezone=episode.program_timezone,
        last_change_at=changed,
    )


def weeks_of(episode: Episode, weeks: Sequence[str]) -> list[WeekEvidence]:
    """Target, attended hours and screens of each named ISO week (program timezone)."""
    tz = episode.program_timezone
    plan_hours = episode.plan_weekly_hours
    if plan_hours is None:
        return []
    steps = [
        (iso_week(datetime.fromisoformat(at), tz), Decimal(to_hours))
        for _, at, to_hours, _ in episode.tapers
    ]
    evidence = []
    for week in weeks:
        minutes, negative, unexpected = episode.weekly.get(week, (0, 0, 0))
        evidence.append(
            WeekEvidence(
                week=week,
                target_hours=week_target(week, plan_hours, steps),
                attended_hours=hours_from_minutes(minutes),
                negative_screens=negative,
                unexpected_positive_screens=unexpected,
            )
        )
    return evidence
