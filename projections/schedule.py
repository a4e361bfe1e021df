"""Hour schedules read from the views: per episode, per program week, per policy.

Targets are not stored per week: a week's target is the weekly hours in
effect at its end (the plan's hours, lowered by every step-down up to and
including that week, in clinical order), so a step-down counts from the
week it happens in. A Medicare week is flagged ``certification_lapsed`` when
any of its local days between the plan start and the discharge (or today)
fell outside every certification (more than 60 days after the last one).

One episode's bad data is that episode's error: it is logged with its id and
left out, and the other episodes are read as usual.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

from pydantic import RootModel

from iop_episodes.application.output import Number
from iop_episodes.domain.catalog import Level
from iop_episodes.domain.certification import lapsed_on
from iop_episodes.domain.payloads import WeekEvidence
from iop_episodes.domain.policy import EpisodeStanding, hours_from_minutes, week_target
from iop_episodes.domain.values import Model
from iop_episodes.domain.weeks import iso_week, local, next_week, previous_weeks, week_start, zone
from projections.rows import EpisodeRow, StepDownRow
from projections.sealing import still_sealed
from projections.views import Activity, EpisodeViews

LOG = logging.getLogger(__name__)


class WeekSchedule(Model):
    week: str
    target_hours: Number
    attended_hours: Number
    hours_by_modality: dict[str, Number]
    sessions: int
    compliance: Number
    """Attended over target, as a fraction rounded to two places."""
    negative_screens: int
    unexpected_positive_screens: int
    doses_dispensed: int
    partial: bool
    """The week the plan started or the client was discharged."""
    certification_lapsed: bool = False
    """Medicare: some active day of the week had no certification in force."""

    def evidence(self) -> WeekEvidence:
        return WeekEvidence(
            week=self.week,
            target_hours=self.target_hours,
            attended_hours=self.attended_hours,
            negative_screens=self.negative_screens,
            unexpected_positive_screens=self.unexpected_positive_screens,
        )


class TaperStep(Model):
    version: int
    occurred_at: datetime
    week: str
    from_hours: Number
    to_hours: Number
    to_level: str
    decided_by: str
    decided_by_role: str
    policy: str | None
    reason: str


class EpisodeSchedule(Model):
    episode_id: str
    client_ref: str | None
    """None when the view holds none yet, or it is sealed and no key was given."""
    client_ref_sealed: bool
    status: str
    age_group: str
    level: str | None
    weekly_hours: Number | None
    plan_weekly_hours: Number | None
    plan_modality_hours: dict[str, Number]
    plan_started_at: datetime | None
    discharged_at: datetime | None
    taper: list[TaperStep]
    weeks: list[WeekSchedule]


class ProgramRow(Model):
    """One active client's line in the program's schedule for a week."""

    episode_id: str
    client_ref: str | None
    client_ref_sealed: bool
    level: str
    age_group: str
    weekly_hours: Number
    week: WeekSchedule


def target_for(week: str, row: EpisodeRow, steps: Sequence[StepDownRow]) -> Decimal:
    plan_hours = Decimal(row.plan_weekly_hours or 0)
    return week_target(week, plan_hours, ((s.week, Decimal(s.to_hours)) for s in steps))


def _hours(minutes: int) -> Decimal:
    return hours_from_minutes(minutes)


def certification_lapsed(week: str, row: EpisodeRow, today: date | None = None) -> bool:
    """Whether any day of the week the episode was active on fell outside certification."""
    certified = json.loads(row.certifications)
    if not certified or row.plan_started_at is None:
        return False
    tz = row.program_timezone
    first = local(datetime.fromisoformat(row.plan_started_at), tz).date()
    last = (
        local(datetime.fromisoformat(row.discharged_at), tz).date() if row.discharged_at else today
    )
    monday = week_start(week, tz).date()
    days = (monday + timedelta(days=n) for n in range(7))
    return any(
        lapsed_on(day, certified) for day in days if day >= first and (last is None or day <= last)
    )


def week_schedule(
    week: str,
    row: EpisodeRow,
    steps: Sequence[StepDownRow],
    activity: Iterable[Activity],
    today: date | None = None,
) -> WeekSchedule:
    by_modality: dict[str, Decimal] = {}
    sessions = doses = negative = unexpected = minutes = 0
    for _, _, item, count, item_minutes in activity:
        kind, _, detail = item.partition(":")
        if kind == "session" and count:
            by_modality[detail] = _hours(item_minutes)
            sessions += count
            minutes += item_minutes
        elif kind == "dose":
            doses += count
        elif item == "screen:negative":
            negative += count
        elif item == "screen:unexpected-positive":
            unexpected += count
    target = target_for(week, row, steps)
    attended = _hours(minutes)
    compliance = (attended / target).quantize(Decimal("0.01")) if target else Decimal(0)
    timezone = row.program_timezone
    edges = {
        iso_week(datetime.fromisoformat(moment), timezone)
        for moment in (row.plan_started_at, row.discharged_at)
        if moment is not None
    }
    return WeekSchedule(
        week=week,
        target_hours=target,
        attended_hours=attended,
        hours_by_modality=by_modality,
        sessions=sessions,
        compliance=compliance,
        negative_screens=negative,
        unexpected_positive_screens=unexpected,
        doses_dispensed=doses,
        partial=week in edges,
        certification_lapsed=certification_lapsed(week, row, today),
    )


def weeks_between(first: str, last: str) -> list[str]:
    weeks = []
    week = first
    while week <= last:
        weeks.append(week)
        week = next_week(week)
    return weeks


def _local(text: str | None, timezone: str) -> datetime | None:
    """A stored time in ``timezone``, to the second."""
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(zone(timezone)).replace(microsecond=0)


def _client(row: EpisodeRow) -> tuple[str | None, bool]:
    sealed = still_sealed(row.client_ref)
    return (None if sealed else row.client_ref), sealed


def episode_schedule(
    views: EpisodeViews, episode_id: str, now: datetime, timezone: str | None = None
) -> EpisodeSchedule | None:
    """One episode's schedule, taper and every week from plan start to now or discharge.

    Weeks are the program's ISO weeks; times are shown in ``timezone``
    (default: the program's).
    """
    rows = views.episodes([episode_id])
    if not rows:
        return None
    row = rows[0]
    shown_in = timezone or row.program_timezone
    client_ref, sealed = _client(row)
    steps = views.step_downs(episode_id)
    weeks: list[WeekSchedule] = []
    if row.plan_started_at is not None:
        tz = row.program_timezone
        first = iso_week(datetime.fromisoformat(row.plan_started_at), tz)
        end = datetime.fromisoformat(row.discharged_at) if row.discharged_at else now
        grouped: dict[str, list[Activity]] = defaultdict(list)
        for item in views.activity(episode_id):
            grouped[item[1]].append(item)
        today = local(now, tz).date()
        weeks = [
            week_schedule(week, row, steps, grouped[week], today)
            for week in weeks_between(first, iso_week(end, tz))
        ]
    return EpisodeSchedule(
        episode_id=row.episode_id,
        client_ref=client_ref,
        client_ref_sealed=sealed,
        status=row.status,
        age_group=row.age_group,
        level=row.level,
        weekly_hours=Decimal(row.weekly_hours) if row.weekly_hours else None,
        plan_weekly_hours=Decimal(row.plan_weekly_hours) if row.plan_weekly_hours else None,
        plan_modality_hours={k: Decimal(v) for k, v in json.loads(row.modality_hours).items()},
        plan_started_at=_local(row.plan_started_at, shown_in),
        discharged_at=_local(row.discharged_at, shown_in),
        taper=[_taper_step(step, shown_in) for step in steps],
        weeks=weeks,
    )


def _taper_step(step: StepDownRow, timezone: str) -> TaperStep:
    return TaperStep(
        version=step.version,
        occurred_at=_local(step.occurred_at, timezone),
        week=step.week,
        from_hours=Decimal(step.from_hours),
        to_hours=Decimal(step.to_hours),
        to_level=step.to_level,
        decided_by=step.actor_id,
        decided_by_role=step.actor_role,
        policy=step.policy,
        reason=step.reason,
    )


def active_during(row: EpisodeRow, week: str) -> bool:
    if row.plan_started_at is None:
        return False
    tz = row.program_timezone
    if iso_week(datetime.fromisoformat(row.plan_started_at), tz) > week:
        return False
    return row.discharged_at is None or (
        iso_week(datetime.fromisoformat(row.discharged_at), tz) >= week
    )


def in_clinical_order(steps: Iterable[StepDownRow]) -> list[StepDownRow]:
    return sorted(steps, key=lambda step: (step.occurred_at, step.version))


def program_schedule(
    views: EpisodeViews, week: str, level: str | None = None, today: date | None = None
) -> list[ProgramRow]:
    """One row per client active that week, ordered by level (highest first)."""
    steps_by_episode: dict[str, list[StepDownRow]] = defaultdict(list)
    for step in views.step_downs():
        steps_by_episode[step.episode_id].append(step)
    activity: dict[str, list[Activity]] = defaultdict(list)
    for item in views.activity(weeks=[week]):
        activity[item[0]].append(item)
    rows = []
    for row in views.episodes():
        if not active_during(row, week):
            continue
        steps = in_clinical_order(s for s in steps_by_episode[row.episode_id] if s.week <= week)
        current_level = steps[-1].to_level if steps else str(Level.INTENSIVE_OUTPATIENT)
        if level is not None and current_level != level:
            continue
        try:
            schedule = week_schedule(week, row, steps, activity[row.episode_id], today)
        except (ValueError, ArithmeticError):
            LOG.exception("hour schedule: episode %s left out, its data is bad", row.episode_id)
            continue
        client_ref, sealed = _client(row)
        rows.append(
            ProgramRow(
                episode_id=row.episode_id,
                client_ref=client_ref,
                client_ref_sealed=sealed,
                level=current_level,
                age_group=row.age_group,
                weekly_hours=schedule.target_hours,
                week=schedule,
            )
        )
    return sorted(rows, key=lambda r: (-Decimal(r.level), r.episode_id))


def step_down_candidates(
    views: EpisodeViews, as_of: datetime, weeks: int
) -> list[tuple[str, EpisodeStanding, list[WeekEvidence]]]:
    """Active episodes with their last ``weeks`` complete weeks, from the views alone."""
    candidates = []
    steps_by_episode: dict[str, list[StepDownRow]] = defaultdict(list)
    for step in views.step_downs():
        steps_by_episode[step.episode_id].append(step)
    active = [row for row in views.episodes() if row.status == "active"]
    window_by_zone = {
        tz: previous_weeks(iso_week(as_of, tz), weeks)
        for tz in {row.program_timezone for row in active}
    }
    all_weeks = sorted({w for window in window_by_zone.values() for w in window})
    activity: dict[tuple[str, str], list[Activity]] = defaultdict(list)
    for item in views.activity(weeks=all_weeks):
        activity[(item[0], item[1])].append(item)
    for row in active:
        if row.weekly_hours is None or row.level is None or row.last_change_at is None:
            continue
        steps = steps_by_episode[row.episode_id]
        try:
            evidence = [
                week_schedule(week, row, steps, activity[(row.episode_id, week)]).evidence()
                for week in window_by_zone[row.program_timezone]
            ]
        except (ValueError, ArithmeticError):
            # A hint only: the step-down job decides from the episode's own entries.
            LOG.exception("step-down candidates: episode %s has bad week data", row.episode_id)
            evidence = []
        standing = EpisodeStanding(
            weekly_hours=Decimal(row.weekly_hours),
            level=row.level,
            age_group=row.age_group,
            program_timezone=row.program_timezone,
            last_change_at=datetime.fromisoformat(row.last_change_at),
        )
        candidates.append((row.episode_id, standing, evidence))
    return candidates


class ProgramSchedule(RootModel[list[ProgramRow]]):
    """``iop schedule --json`` (without ``--episode``): one object per client in the week."""
