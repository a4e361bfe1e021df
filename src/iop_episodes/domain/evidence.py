"""What the step-down policy sees of an episode, computed from its own entries.

The step-down job decides from these, never from a view's rows: the weeks'
targets follow the taper in clinical order, attended hours and screens come
from the episode's timeline with voids and amendments applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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
    wanted = set(weeks)
    minutes: Counter[str] = Counter()
    negative: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    for _, moment, kind, quantity, meaning in episode.live_care():
        week = iso_week(moment, tz)
        if week not in wanted:
            continue
        if kind == "SessionAttended":
            minutes[week] += quantity
        elif meaning == "negative":
            negative[week] += 1
        elif meaning == "unexpected-positive":
            unexpected[week] += 1
    plan_hours = episode.plan_weekly_hours
    if plan_hours is None:
        return []
    steps = [(iso_week(at, tz), to_hours) for _, at, to_hours, _ in episode.tapers]
    return [
        WeekEvidence(
            week=week,
            target_hours=week_target(week, plan_hours, ((w, h) for w, h in _decimal(steps))),
            attended_hours=hours_from_minutes(minutes[week]),
            negative_screens=negative[week],
            unexpected_positive_screens=unexpected[week],
        )
        for week in weeks
    ]


def _decimal(steps: list[tuple[str, str]]) -> list[tuple[str, Decimal]]:
    return [(week, Decimal(hours)) for week, hours in steps]
