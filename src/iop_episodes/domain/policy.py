"""The step-down policy: pure, versioned, and explained by its evidence.

It decides from an episode's weekly record and an explicit ``as_of`` moment;
it never reads a clock. The default rule (``iop-taper`` version 1):

* at least ``weeks_required`` complete ISO weeks since the plan started or
  the last step-down (the week that holds that moment does not count);
* in each of the last ``weeks_required`` complete weeks, hours attended are at
  least ``min_attendance`` of that week's target;
* in those weeks at least one negative screen and no unexpected positive;
* then weekly hours drop by ``step_hours``, but not below the level's floor;
  a client already at the floor steps down to standard outpatient hours and
  the decision says the client leaves IOP hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from iop_episodes.domain.catalog import IOP_FLOOR, AgeGroup, Level
from iop_episodes.domain.payloads import PolicyRef, WeekEvidence
from iop_episodes.domain.values import Hours, Model
from iop_episodes.domain.weeks import iso_week, previous_weeks


def hours_from_minutes(minutes: int) -> Decimal:
    """Attended minutes as hours, to two places, the same way everywhere."""
    return (Decimal(minutes) / 60).quantize(Decimal("0.01")).normalize()


def week_target(
    week: str, plan_hours: Decimal, step_downs: Iterable[tuple[str, Decimal]]
) -> Decimal:
    """A week's target: the plan's hours lowered by every step-down up to that week.

    A step-down counts from the ISO week it happens in, so the policy never
    judges a client against hours they no longer have. Step-downs are taken in
    clinical order (by week), whatever order they were recorded in.
    """
    hours = plan_hours
    for step_week, to_hours in sorted(step_downs, key=lambda step: step[0]):
        if step_week <= week:
            hours = to_hours
    return hours


class StepDownSettings(Model):
    policy_id: str = "iop-taper"
    version: int = 1
    weeks_required: Annotated[int, Field(ge=1, le=12)] = 4
    min_attendance: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.9")
    step_hours: Hours = Decimal(3)
    require_negative_screen: bool = True

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(id=self.policy_id, version=self.version)


class EpisodeStanding(Model):
    """What the policy needs to know about an episode besides its weeks."""

    weekly_hours: Hours
    level: Level
    age_group: AgeGroup
    program_timezone: str
    last_change_at: datetime
    """When the plan started or the client last stepped down."""


class Decision(Model):
    outcome: Literal["step-down", "hold"]
    reason: str
    policy: PolicyRef
    as_of_week: str
    from_weekly_hours: Hours
    to_weekly_hours: Hours | None = None
    leaves_iop: bool = False
    evidence: tuple[WeekEvidence, ...] = ()


def decide(
    standing: EpisodeStanding,
    weeks: Sequence[WeekEvidence],
    as_of: datetime,
    settings: StepDownSettings | None = None,
) -> Decision:
    """Step down or hold, with the weeks considered as evidence."""
    rules = settings or StepDownSettings()
    as_of_week = iso_week(as_of, standing.program_timezone)
    window = previous_weeks(as_of_week, rules.weeks_required)
    by_week = {week.week: week for week in weeks}
    evidence = tuple(
        by_week.get(name) or WeekEvidence(week=name, target_hours=standing.weekly_hours)
        for name in window
    )
    decision = Decision(
        outcome="hold",
        reason="",
        policy=rules.ref,
        as_of_week=as_of_week,
        from_weekly_hours=standing.weekly_hours,
        evidence=evidence,
    )
    held = _hold_reason(standing, evidence, rules)
    if held is not None:
        return decision.model_copy(update={"reason": held})
    floor = IOP_FLOOR[AgeGroup(standing.age_group)]
    current = standing.weekly_hours
    leaves = current <= floor
    target = current - rules.step_hours if leaves else max(floor, current - rules.step_hours)
    if target <= 0:
        reason = f"a step of {rules.step_hours} hours would leave no treatment"
        return decision.model_copy(update={"reason": reason})
    reason = (
        f"{rules.weeks_required} complete weeks at or above "
        f"{rules.min_attendance:.0%} attendance with negative screens"
    )
    if leaves:
        reason += f"; at the IOP floor of {floor} hours, leaves IOP for outpatient"
    return decision.model_copy(
        update={
            "outcome": "step-down",
            "reason": reason,
            "to_weekly_hours": target,
            "leaves_iop": leaves,
        }
    )


def _hold_reason(
    standing: EpisodeStanding,
    evidence: Sequence[WeekEvidence],
    rules: StepDownSettings,
) -> str | None:
    """Why the client holds at the current hours, or None to step down."""
    first, last = evidence[0].week, evidence[-1].week
    change_week = iso_week(standing.last_change_at, standing.program_timezone)
    short = next(
        (
            week
            for week in evidence
            if week.attended_hours < week.target_hours * rules.min_attendance
        ),
        None,
    )
    if standing.level == Level.OUTPATIENT:
        return "already at standard outpatient hours"
    if first <= change_week:
        return (
            f"fewer than {rules.weeks_required} complete weeks since the last "
            f"change in {change_week}"
        )
    if short is not None:
        return (
            f"attended {short.attended_hours} of {short.target_hours} target hours "
            f"in {short.week}, under {rules.min_attendance:.0%}"
        )
    if any(week.unexpected_positive_screens for week in evidence):
        return f"an unexpected positive screen in {first} to {last}"
    if rules.require_negative_screen and not any(w.negative_screens for w in evidence):
        return f"no negative screen in {first} to {last}"
    return None
