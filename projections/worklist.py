"""The program's worklist: per client, what needs attention now, from the views.

Read-side hints for the people who run the program, never decisions: a
Medicare recertification due within N days or lapsed, a screen overdue
against the plan's cadence, a step-down the policy would make from the
schedule's weeks, a discharge without aftercare, an unexpected positive
screen this week. One episode's bad data is that episode's error: logged
with its id, listed under ``errors``, and the others are read as usual.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import date, datetime
from typing import Literal

from iop_episodes.domain.certification import recertification_due
from iop_episodes.domain.policy import StepDownSettings, decide
from iop_episodes.domain.values import Model
from iop_episodes.domain.weeks import iso_week, local, previous_weeks
from projections.rows import EpisodeRow
from projections.schedule import step_down_candidates
from projections.views import Activity, EpisodeViews

LOG = logging.getLogger(__name__)
RECERTIFY_WITHIN_DAYS = 14

Kind = Literal[
    "recertification-lapsed",
    "recertification-due",
    "screen-overdue",
    "step-down-due",
    "discharged-without-aftercare",
    "unexpected-positive-this-week",
]


class Attention(Model):
    kind: Kind
    detail: str
    due_on: date | None = None


class WorklistClient(Model):
    episode_id: str
    status: str
    level: str | None
    attention: tuple[Attention, ...]


class Worklist(Model):
    as_of: datetime
    recertify_within_days: int
    clients: tuple[WorklistClient, ...]
    errors: tuple[str, ...] = ()
    """Episodes whose view rows could not be read (each logged with its id)."""


def build_worklist(
    views: EpisodeViews,
    as_of: datetime,
    *,
    recertify_within_days: int = RECERTIFY_WITHIN_DAYS,
    settings: StepDownSettings | None = None,
) -> Worklist:
    """Every client with at least one item needing attention as of a moment."""
    rules = settings or StepDownSettings()
    hints = _step_down_hints(views, as_of, rules)
    weeks = sorted(
        {
            week
            for tz in {row.program_timezone for row in views.episodes()}
            for week in (iso_week(as_of, tz), *previous_weeks(iso_week(as_of, tz), 1))
        }
    )
    activity: dict[tuple[str, str], list[Activity]] = defaultdict(list)
    for item in views.activity(weeks=weeks):
        activity[(item[0], item[1])].append(item)
    clients, failed = [], []
    for row in views.episodes():
        try:
            items = _attention(row, as_of, recertify_within_days, activity)
        except (ValueError, KeyError, ArithmeticError):
            LOG.exception("worklist: episode %s left out, its data is bad", row.episode_id)
            failed.append(row.episode_id)
            continue
        hint = hints.get(row.episode_id)
        if hint is not None:
            items.append(hint)
        if items:
            clients.append(
                WorklistClient(
                    episode_id=row.episode_id,
                    status=row.status,
                    level=row.level,
                    attention=tuple(items),
                )
            )
    return Worklist(
        as_of=as_of,
        recertify_within_days=recertify_within_days,
        clients=tuple(clients),
        errors=tuple(failed),
    )


def recertification(
    views: EpisodeViews, as_of: datetime, within_days: int = RECERTIFY_WITHIN_DAYS
) -> tuple[list[tuple[str, date]], list[tuple[str, date]]]:
    """Active Medicare clients due for recertification within N days, and those lapsed.

    Each is ``(episode_id, last day covered)``.
    """
    due: list[tuple[str, date]] = []
    lapsed: list[tuple[str, date]] = []
    for row in views.episodes():
        item = _recertification(row, as_of, within_days)
        if item is not None:
            (lapsed if item.kind == "recertification-lapsed" else due).append(
                (row.episode_id, item.due_on or as_of.date())
            )
    return due, lapsed


def _attention(
    row: EpisodeRow,
    as_of: datetime,
    within_days: int,
    activity: dict[tuple[str, str], list[Activity]],
) -> list[Attention]:
    items: list[Attention] = []
    if row.status == "discharged":
        if not row.aftercare:
            items.append(
                Attention(
                    kind="discharged-without-aftercare",
                    detail=f"discharged {row.discharged_at} with no aftercare scheduled",
                )
            )
        return items
    if row.status != "active":
        return items
    recert = _recertification(row, as_of, within_days)
    if recert is not None:
        items.append(recert)
    tz = row.program_timezone
    this_week = iso_week(as_of, tz)
    last_week = previous_weeks(this_week, 1)[0]
    unexpected = _count(activity[(row.episode_id, this_week)], "screen:unexpected-positive")
    if unexpected:
        items.append(
            Attention(
                kind="unexpected-positive-this-week",
                detail=f"{unexpected} unexpected positive screen(s) in {this_week}",
            )
        )
    overdue = _screen_overdue(row, last_week, activity[(row.episode_id, last_week)])
    if overdue is not None:
        items.append(overdue)
    return items


def _recertification(row: EpisodeRow, as_of: datetime, within_days: int) -> Attention | None:
    if row.status != "active":
        return None
    certified = json.loads(row.certifications)
    covered_until = recertification_due(certified)
    if covered_until is None:
        return None
    today = local(as_of, row.program_timezone).date()
    last = max(certified)
    if today > covered_until:
        return Attention(
            kind="recertification-lapsed",
            detail=f"certification lapsed after {covered_until} (last certified {last})",
            due_on=covered_until,
        )
    if (covered_until - today).days <= within_days:
        return Attention(
            kind="recertification-due",
            detail=f"recertify by {covered_until} (last certified {last})",
            due_on=covered_until,
        )
    return None


def _screen_overdue(row: EpisodeRow, week: str, items: list[Activity]) -> Attention | None:
    """Fewer screens in the last complete week than the plan's cadence asks for."""
    if not row.screens_per_week or row.plan_started_at is None:
        return None
    started = iso_week(datetime.fromisoformat(row.plan_started_at), row.program_timezone)
    if started >= week:
        return None  # the plan's first (partial) week is not held to the cadence
    screens = sum(count for _, _, item, count, _ in items if item.startswith("screen:"))
    if screens >= row.screens_per_week:
        return None
    return Attention(
        kind="screen-overdue",
        detail=f"{screens} of {row.screens_per_week} screens in {week}",
    )


def _step_down_hints(
    views: EpisodeViews, as_of: datetime, rules: StepDownSettings
) -> dict[str, Attention]:
    hints = {}
    for episode_id, standing, weeks in step_down_candidates(views, as_of, rules.weeks_required):
        if not weeks:
            continue  # its weeks could not be read (logged by the schedule)
        decision = decide(standing, weeks, as_of, rules)
        if decision.outcome == "step-down" and decision.to_weekly_hours is not None:
            hints[episode_id] = Attention(
                kind="step-down-due",
                detail=(
                    f"policy {decision.policy.id}@{decision.policy.version} would step down "
                    f"from {decision.from_weekly_hours} to {decision.to_weekly_hours} hours"
                ),
            )
    return hints


def _count(items: list[Activity], wanted: str) -> int:
    return sum(count for _, _, item, count, _ in items if item == wanted)


def worklist_text(worklist: Worklist) -> str:
    header = (
        f"worklist as of {worklist.as_of.isoformat()}: "
        f"{len(worklist.clients)} clients need attention"
    )
    lines = [header]
    lines.extend(
        f"{client.episode_id}  {item.kind:<30}  {item.detail}"
        for client in worklist.clients
        for item in client.attention
    )
    lines.extend(
        f"{episode_id}  error: its view rows could not be read" for episode_id in worklist.errors
    )
    return "\n".join(lines)
