"""Properties of the step-down policy: pure, floored, weekly, and screen-safe."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from iop_episodes.domain.catalog import IOP_FLOOR, AgeGroup
from iop_episodes.domain.payloads import WeekEvidence
from iop_episodes.domain.policy import EpisodeStanding, StepDownSettings, decide, week_target
from iop_episodes.domain.weeks import iso_week, previous_weeks
from tests.strategies import TIMEZONES, policy_inputs


@given(policy_inputs())
def test_never_below_the_floor_without_saying_the_client_leaves_iop(inputs):
    """A step-down under the IOP floor always says the client leaves IOP hours."""
    standing, weeks, as_of = inputs
    decision = decide(standing, weeks, as_of)
    if decision.outcome == "step-down":
        assert decision.to_weekly_hours is not None
        floor = IOP_FLOOR[AgeGroup(standing.age_group)]
        below = decision.to_weekly_hours < floor
        assert below == decision.leaves_iop
        assert ("leaves IOP" in decision.reason) == below
        assert decision.to_weekly_hours < standing.weekly_hours


@given(policy_inputs(), st.integers(0, 6 * 24))
def test_never_twice_in_one_iso_week(inputs, hours_later):
    """After a step-down, no second one until the rule's weeks have passed."""
    standing, weeks, as_of = inputs
    first = decide(standing, weeks, as_of)
    if first.outcome != "step-down" or first.to_weekly_hours is None:
        return
    after = standing.model_copy(
        update={
            "weekly_hours": first.to_weekly_hours,
            "last_change_at": as_of,
            "level": "1" if first.leaves_iop else standing.level,
        }
    )
    later = as_of + timedelta(hours=hours_later)
    if iso_week(later, standing.program_timezone) == first.as_of_week:
        assert decide(after, weeks, later).outcome == "hold"


@given(policy_inputs())
def test_decision_depends_only_on_history_and_as_of(inputs):
    """Same inputs, same output, whatever order the weeks come in."""
    standing, weeks, as_of = inputs
    shuffled = weeks[:]
    random.Random(7).shuffle(shuffled)
    assert decide(standing, weeks, as_of) == decide(standing, shuffled, as_of)


@given(policy_inputs(), st.integers(0, 3))
def test_an_unexpected_positive_in_the_window_always_blocks(inputs, which):
    """One unexpected positive screen in the last four weeks holds the client."""
    standing, weeks, as_of = inputs
    window = previous_weeks(iso_week(as_of, standing.program_timezone), 4)
    tainted = [
        w.model_copy(update={"unexpected_positive_screens": 1}) if w.week == window[which] else w
        for w in weeks
    ]
    assert decide(standing, tainted, as_of).outcome == "hold"


def test_full_attendance_and_negative_screens_step_down_by_one_session_day():
    """Four good weeks after the change: 12 hours become 9, with the evidence."""
    as_of = datetime(2026, 3, 30, 7, tzinfo=UTC)
    tz = TIMEZONES[0]
    window = previous_weeks(iso_week(as_of, tz), 4)
    weeks = [
        WeekEvidence(week=w, target_hours=12, attended_hours=12, negative_screens=1) for w in window
    ]
    standing = EpisodeStanding(
        weekly_hours=Decimal(12),
        level="2.1",
        age_group="adult",
        program_timezone=tz,
        last_change_at=as_of - timedelta(weeks=6),
    )
    decision = decide(standing, weeks, as_of, StepDownSettings())
    assert (decision.outcome, decision.to_weekly_hours, decision.leaves_iop) == (
        "step-down",
        9,
        False,
    )
    assert [w.week for w in decision.evidence] == window
    assert decision.policy.id == "iop-taper"


def test_a_weeks_target_counts_step_downs_from_their_own_week():
    """Plan 12 h; down to 9 in W11 and 6 in W14: W10 12, W11 9, W13 9, W14 6."""
    steps = [("2026-W11", Decimal(9)), ("2026-W14", Decimal(6))]
    targets = [
        week_target(w, Decimal(12), steps) for w in ("2026-W10", "2026-W11", "2026-W13", "2026-W14")
    ]
    assert targets == [12, 9, 9, 6]
