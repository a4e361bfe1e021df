"""Issue 12: Medicare certification, take-home policy and plausibility limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.domain.events import MedicationDispensed
from iop_episodes.domain.rules import RuleSettings
from iop_episodes.domain.takehome import FEDERAL_TAKE_HOME_POLICY
from iop_episodes.domain.weeks import zone
from iop_episodes.infrastructure.settings import rule_settings
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance, open_episode
from projections import audit
from projections.exports.api import export_audit_report
from projections.runner import ViewRunner
from projections.schedule import episode_schedule
from projections.worklist import build_worklist, recertification
from tests.conftest import START, refused

NEW_YORK = zone("America/New_York")
PLAN_AT = START + timedelta(hours=1)  # Monday 2026-03-02, 10:00 in New York: day 0


@pytest.fixture
def service(clock: SimulatedClock) -> Iterator[EpisodeService]:
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as app:
        yield app


def on_day(day: int, hour: int = 10) -> datetime:
    """A moment on the given day of treatment (local New York days since the plan)."""
    local = PLAN_AT.astimezone(NEW_YORK) + timedelta(days=day)
    return local.replace(hour=hour).astimezone(UTC)


# ---- Medicare certification ---------------------------------------------------------


def medicare_episode(service: EpisodeService, clock: SimulatedClock, **plan: Any) -> UUID:
    episode_id = open_episode(service, clock, payer="medicare")
    service.create_plan(
        factories.plan(
            episode_id,
            advance(clock, hours=1),
            actor=factories.PHYSICIAN,
            certifying_physician_id="dr.fox",
            **plan,
        )
    )
    return episode_id


def test_a_medicare_plan_records_who_certified_when_and_how_many_hours(service, clock):
    """Certified on the plan's local day for the plan's hours unless stated."""
    episode_id = medicare_episode(service, clock)
    plan = list(service.history(episode_id))[1].payload
    assert (plan["certifying_physician_id"], plan["certified_on"]) == ("dr.fox", "2026-03-02")
    assert plan["certified_weekly_hours"] == "12"


def test_medicare_certifies_at_least_nine_hours_for_adolescents_too(service, clock):
    """A 6-hour adolescent plan is in the IOP band but not certifiable; 9 certified hours are."""
    born = date(2010, 1, 1)
    episode_id = open_episode(service, clock, payer="medicare", birth_date=born)
    command = factories.plan(
        episode_id,
        advance(clock, hours=1),
        weekly_hours=6,
        modality_hours={},
        certifying_physician_id="dr.fox",
    )
    error = refused(service, errors.CertificationInvalid, lambda: service.create_plan(command))
    assert "certified_weekly_hours 6" in str(error)
    refused(
        service,
        errors.CertificationInvalid,
        lambda: service.create_plan({**command, "certified_weekly_hours": "8.75"}),
    )
    service.create_plan({**command, "certified_weekly_hours": 9})
    assert service.episode(episode_id).status == "active"


def recertify(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": factories.PHYSICIAN,
        "occurred_at": at,
        "physician_id": "dr.fox",
        "certified_on": at.astimezone(NEW_YORK).date(),
        "certified_weekly_hours": 12,
        **overrides,
    }


def test_only_a_physician_recertifies(service, clock):
    """Recertified is a physician's entry; a counselor is refused."""
    episode_id = medicare_episode(service, clock)
    clock.set(on_day(50))
    refused(
        service,
        errors.PermissionDenied,
        lambda: service.recertify(recertify(episode_id, on_day(50), actor=factories.COUNSELOR)),
    )
    service.recertify(recertify(episode_id, on_day(50)))


def test_recertification_needs_a_medicare_episode_and_nine_hours(service, clock):
    """A private-pay episode has nothing to recertify; 8 certified hours are too few."""
    private = active_episode(service, clock)
    medicare = medicare_episode(service, clock)
    clock.set(on_day(50))
    refused(
        service,
        errors.CertificationInvalid,
        lambda: service.recertify(recertify(private, on_day(50))),
    )
    refused(
        service,
        errors.CertificationInvalid,
        lambda: service.recertify(recertify(medicare, on_day(50), certified_weekly_hours=8)),
    )


def lapsed_flags(service: EpisodeService, episode_id: UUID) -> dict[str, bool]:
    runner = ViewRunner(service)
    runner.catch_up()
    entries = audit.history(runner.views, str(episode_id))
    return {
        e.occurred_at[:10]: e.certification_lapsed
        for e in entries
        if e.event_type == "SessionAttended"
    }


def test_care_on_day_60_is_covered_and_on_day_61_is_flagged_lapsed(service, clock):
    """Care while the certification has lapsed is accepted, and flagged in the audit history."""
    episode_id = medicare_episode(service, clock)
    clock.set(on_day(62))
    for day in (60, 61):
        service.record_session(factories.session(episode_id, on_day(day)))
    assert lapsed_flags(service, episode_id) == {"2026-05-01": False, "2026-05-02": True}


def test_a_recertification_covers_care_again_and_the_schedule_flags_the_lapsed_week(service, clock):
    """Day 61 lapsed (W18 flagged); recertified on day 63, the following week is clear."""
    episode_id = medicare_episode(service, clock)
    clock.set(on_day(70))
    service.record_session(factories.session(episode_id, on_day(61)))
    service.recertify(recertify(episode_id, on_day(63)))
    service.record_session(factories.session(episode_id, on_day(64)))
    assert lapsed_flags(service, episode_id) == {"2026-05-02": True, "2026-05-05": False}
    runner = ViewRunner(service)
    schedule = episode_schedule(runner.views, str(episode_id), clock.now())
    assert schedule is not None
    flagged = {w.week for w in schedule.weeks if w.certification_lapsed}
    assert flagged == {"2026-W18"}  # Sat 2 May and Sun 3 May were outside every certification


def test_the_read_side_lists_recertifications_due_within_n_days_and_lapsed(service, clock):
    """Day 50: due within 14 days (by 1 May); day 61: lapsed; a fresh one is neither."""
    due_soon = medicare_episode(service, clock)
    runner = ViewRunner(service)
    runner.catch_up()
    due, lapsed = recertification(runner.views, on_day(46), within_days=14)
    assert (due, lapsed) == ([(str(due_soon), date(2026, 5, 1))], [])
    assert recertification(runner.views, on_day(45), within_days=14) == ([], [])
    assert recertification(runner.views, on_day(61), within_days=14) == (
        [],
        [(str(due_soon), date(2026, 5, 1))],
    )
    kinds = [
        item.kind
        for client in build_worklist(runner.views, on_day(61)).clients
        for item in client.attention
    ]
    assert "recertification-lapsed" in kinds


# ---- take-home policy ------------------------------------------------------------------


def methadone_episode(service: EpisodeService, clock: SimulatedClock) -> UUID:
    episode_id = active_episode(service, clock, medications=["methadone"])
    clock.set(on_day(40))
    return episode_id


def methadone(episode_id: UUID, day: int, take_home: int) -> dict[str, Any]:
    return factories.dose(
        episode_id,
        on_day(day),
        medication="methadone",
        strength_mg=10,
        dose_form="liquid",
        amount=8,
        unit="mL",
        route="oral",
        take_home_doses=take_home,
    )


@pytest.mark.parametrize(("day", "allowed"), [(0, 7), (14, 7), (15, 14), (30, 14), (31, 28)])
def test_federal_take_home_methadone_by_day_of_treatment(service, clock, day, allowed):
    """42 CFR 8.12(i): 7 days' supply in days 0-14, 14 from day 15, 28 from day 31."""
    episode_id = methadone_episode(service, clock)
    receipt = service.dispense_medication(methadone(episode_id, day, allowed))
    stored = list(service.history(episode_id))[receipt.version - 1]
    assert stored.payload["take_home_policy"] == {"id": "federal-42cfr8.12i", "version": 2024}
    if allowed == 28:
        return
    error = refused(
        service,
        errors.TakeHomeLimitExceeded,
        lambda: service.dispense_medication(methadone(episode_id, day, allowed + 1)),
    )
    assert f"day {day} of treatment" in str(error)
    assert f"limit of {allowed} days' supply under policy federal-42cfr8.12i version 2024" in str(
        error
    )
    assert error.field == "take_home_doses"


def test_twenty_eight_take_home_doses_on_day_three_are_refused(service, clock):
    """The issue's case: a month of methadone on day 3 of treatment."""
    episode_id = methadone_episode(service, clock)
    refused(
        service,
        errors.TakeHomeLimitExceeded,
        lambda: service.dispense_medication(methadone(episode_id, 3, 28)),
    )


STATE_POLICY = {
    "policy_id": "state-example-dhs",
    "version": 3,
    "description": "One take-home dose a week in days 31-90.",
    "medications": {
        "methadone": [
            {"from_day": 0, "max_take_home_days_supply": 0},
            {"from_day": 31, "max_take_home_days_supply": 1},
            {"from_day": 91, "max_take_home_days_supply": 2},
        ]
    },
}


def test_a_stricter_state_policy_loads_from_json_and_is_recorded(
    tmp_path: Path, clock, monkeypatch
):
    """IOP_TAKE_HOME_POLICY names a JSON file; its id and version judge and mark each dose."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(STATE_POLICY))
    monkeypatch.setenv("IOP_TAKE_HOME_POLICY", str(path))
    rules = rule_settings()
    assert (rules.take_home_policy.policy_id, rules.take_home_policy.version) == (
        "state-example-dhs",
        3,
    )
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        episode_id = methadone_episode(service, clock)
        receipt = service.dispense_medication(methadone(episode_id, 31, 1))
        stored = list(service.history(episode_id))[receipt.version - 1]
        assert stored.payload["take_home_policy"] == {"id": "state-example-dhs", "version": 3}
        error = refused(
            service,
            errors.TakeHomeLimitExceeded,
            lambda: service.dispense_medication(methadone(episode_id, 31, 2)),
        )
        assert "state-example-dhs version 3" in str(error)


def test_an_amended_dose_is_held_to_the_policy_on_its_own_day(service, clock):
    """Amending a day-3 dose to 14 take-homes is refused; the original stays."""
    episode_id = methadone_episode(service, clock)
    receipt = service.dispense_medication(methadone(episode_id, 3, 1))
    amended = {
        k: v
        for k, v in methadone(episode_id, 3, 14).items()
        if k not in {"episode_id", "actor", "occurred_at"}
    }
    refused(
        service,
        errors.TakeHomeLimitExceeded,
        lambda: service.correct_entry(
            factories.correction(
                episode_id,
                clock.now(),
                actor=factories.NURSE,
                target_version=receipt.version,
                action="amend",
                amended=amended,
            )
        ),
    )


def test_a_version_1_dose_upcasts_with_no_policy():
    """Doses stored before the policy existed load as judged by none."""
    state: dict[str, Any] = {"payload": {"take_home_doses": 1}}
    MedicationDispensed.upcast_v1_v2(state)
    assert state["payload"]["take_home_policy"] is None
    assert MedicationDispensed.class_version == 2


def test_the_federal_policy_is_the_default():
    """Without configuration a service judges take-homes by the federal schedule."""
    assert RuleSettings().take_home_policy == FEDERAL_TAKE_HOME_POLICY
    assert FEDERAL_TAKE_HOME_POLICY.limit("buprenorphine", 0) == 28


# ---- plausibility ---------------------------------------------------------------------------


def test_a_session_of_twelve_hours_is_accepted_and_one_minute_more_is_refused(service, clock):
    """The default maximum session is 720 minutes; zero minutes is a validation error."""
    episode_id = active_episode(service, clock)
    at = advance(clock, hours=13)
    service.record_session(factories.session(episode_id, at - timedelta(hours=12), minutes=720))
    error = refused(
        service,
        errors.SessionTooLong,
        lambda: service.record_session(factories.session(episode_id, at, minutes=721)),
    )
    assert error.field == "minutes"
    with pytest.raises(ValueError, match="minutes"):
        service.record_session(factories.session(episode_id, at, minutes=0))


def test_the_session_maximum_is_a_service_setting(clock):
    """A program that caps sessions at 4 hours refuses a 5-hour one."""
    rules = RuleSettings(max_session_minutes=240)
    with EpisodeService("memory://", clock=clock, rules=rules) as service:
        episode_id = active_episode(service, clock)
        refused(
            service,
            errors.SessionTooLong,
            lambda: service.record_session(factories.session(episode_id, clock.now(), minutes=300)),
        )


FALL_BACK = date(2026, 11, 1)  # New York's clocks go back at 02:00: a 25-hour day


def test_a_local_day_holds_24_hours_of_attendance_across_a_dst_change(clock):
    """On the 25-hour day 24 h fit and one more minute does not; the next day is fresh."""
    clock = SimulatedClock(datetime(2026, 10, 30, 14, tzinfo=UTC))
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        episode_id = active_episode(service, clock)
        clock.set(datetime(2026, 11, 3, tzinfo=UTC))
        first = datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK)
        # 00:00 EDT and 12:00 EST: two 12-hour sessions inside the one 25-hour local day.
        for start in (first, first + timedelta(hours=12)):
            service.record_session(factories.session(episode_id, start, minutes=720))
        late = datetime(2026, 11, 1, 23, 59, tzinfo=NEW_YORK)
        error = refused(
            service,
            errors.DayOverbooked,
            lambda: service.record_session(factories.session(episode_id, late, minutes=1)),
        )
        assert "2026-11-01 (America/New_York)" in str(error)
        service.record_session(
            factories.session(episode_id, datetime(2026, 11, 2, 0, 0, tzinfo=NEW_YORK), minutes=60)
        )


def test_a_roster_that_overbooks_a_day_is_refused_whole_naming_the_item(service, clock):
    """Three 9-hour sessions for one client on one day: item 2 breaks 24 h, nothing is stored."""
    episode_id = active_episode(service, clock)
    other = active_episode(service, clock)
    at = advance(clock, hours=1)
    roster = [
        factories.session(other, at, minutes=60),
        factories.session(episode_id, at, minutes=540),
        factories.session(episode_id, at, minutes=540),
        factories.session(episode_id, at, minutes=540),
    ]
    error = refused(service, errors.DayOverbooked, lambda: service.record_roster(roster))
    assert error.field == "[3].minutes"
    assert "roster item 3" in str(error)


def test_ten_thousand_half_hour_sessions_on_one_day_are_refused(service, clock):
    """The issue's case: the 49th half-hour session of a day breaks 24 h and nothing is stored."""
    episode_id = active_episode(service, clock)
    at = advance(clock, hours=1)
    roster = [factories.session(episode_id, at, minutes=30)] * 10_000
    error = refused(service, errors.DayOverbooked, lambda: service.record_roster(roster))
    assert error.field == "[48].minutes"


def test_twenty_two_eight_hour_sessions_in_one_week_do_not_fit(service, clock):
    """The issue's case: 21 sessions of 480 minutes fill a week's 168 hours; the 22nd is refused."""
    episode_id = active_episode(service, clock)
    monday = datetime(2026, 3, 9, 0, 0, tzinfo=NEW_YORK)
    clock.set(monday.astimezone(UTC) + timedelta(days=8))
    for day in range(7):
        for start in (0, 8, 16):
            at = monday + timedelta(days=day, hours=start)
            service.record_session(factories.session(episode_id, at, minutes=480))
    refused(
        service,
        errors.DayOverbooked,
        lambda: service.record_session(
            factories.session(episode_id, monday + timedelta(days=3, hours=12), minutes=480)
        ),
    )


def test_an_exported_audit_report_flags_lapsed_care_like_the_audit_history(service, clock):
    """The report read from the store marks day 61 lapsed, byte for byte as iop audit history."""
    episode_id = medicare_episode(service, clock)
    clock.set(on_day(62))
    for day in (60, 61):
        service.record_session(factories.session(episode_id, on_day(day)))
    data = export_audit_report(
        service,
        episode_id,
        exception="audit-and-evaluation",
        actor={"id": "au.hill", "role": "auditor"},
        recipient="State",
        purpose="audit",
    )
    runner = ViewRunner(service)
    runner.catch_up()
    assert data == audit.to_jsonl(audit.history(runner.views, str(episode_id))).encode("ascii")
    flags = [json.loads(line)["certification_lapsed"] for line in data.decode().splitlines()]
    assert flags[-2:] == [False, True]


def test_the_session_maximum_comes_from_iop_max_session_minutes(clock, monkeypatch):
    """Without explicit rules the service reads IOP_MAX_SESSION_MINUTES."""
    monkeypatch.setenv("IOP_MAX_SESSION_MINUTES", "90")
    with EpisodeService("memory://", clock=clock) as service:
        assert service.rules.max_session_minutes == 90
        episode_id = active_episode(service, clock)
        refused(
            service,
            errors.SessionTooLong,
            lambda: service.record_session(factories.session(episode_id, clock.now(), minutes=91)),
        )


def test_a_recertification_dated_before_the_plan_or_after_its_own_day_is_refused(service, clock):
    """certified_on lies between the plan's certification and the entry's own local day."""
    episode_id = medicare_episode(service, clock)
    clock.set(on_day(50))
    for certified_on in (date(2026, 3, 1), on_day(51).astimezone(NEW_YORK).date()):
        error = refused(
            service,
            errors.CertificationInvalid,
            lambda certified_on=certified_on: service.recertify(
                recertify(episode_id, on_day(50), certified_on=certified_on)
            ),
        )
        assert error.field == "certified_on"
