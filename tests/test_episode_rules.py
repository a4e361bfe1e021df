"""Every rule the README lists, on every backend: accepted, or refused with
its typed error and nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance, open_episode, stored_count
from tests.conftest import START


def assert_refused(
    service: EpisodeService,
    error: type[Exception],
    command: Callable[..., Any],
    payload: dict[str, Any],
) -> pytest.ExceptionInfo[Exception]:
    before = stored_count(service)
    with pytest.raises(error) as raised:
        command(payload)
    assert stored_count(service) == before
    return raised


# ---- assessment and plan ----------------------------------------------------


def test_assessment_opens_an_episode_at_version_one(service, clock):
    """An assessment creates the episode."""
    receipt = service.assess(factories.assessment(clock.now()))
    state = service.episode(receipt.episode_id)
    assert (receipt.version, state.status, state.client_ref) == (
        1,
        "assessed",
        "MRN-0001",
    )


def test_plan_needs_an_assessed_episode(service, clock):
    """No plan for an episode that was never assessed."""
    assert_refused(
        service,
        errors.EpisodeNotFound,
        service.create_plan,
        factories.plan(uuid4(), clock.now()),
    )


def test_plan_in_the_iop_band_is_accepted(service, clock):
    """An adult plan of 9 to 19 hours is IOP."""
    episode_id = active_episode(service, clock, weekly_hours="19.5", modality_hours={})
    state = service.episode(episode_id)
    assert (state.status, state.level, state.weekly_hours) == ("active", "2.1", 19.5)


@pytest.mark.parametrize("hours", ["8.75", "20", "24"])
def test_adult_plan_outside_the_band_is_refused(service, clock, hours):
    """Adults need at least 9 and under 20 weekly hours."""
    episode_id = open_episode(service, clock)
    raised = assert_refused(
        service,
        errors.HoursOutOfBand,
        service.create_plan,
        factories.plan(episode_id, advance(clock, hours=1), weekly_hours=hours, modality_hours={}),
    )
    assert f"weekly_hours {hours}" in str(raised.value)
    assert "adult" in str(raised.value)


def test_adolescent_band_starts_at_six_hours(service, clock):
    """Six hours is IOP for an adolescent but not for an adult."""
    teen = open_episode(service, clock, birth_date=date(2010, 5, 1))
    adult = open_episode(service, clock, client_ref="MRN-0002")
    now = advance(clock, hours=1)
    service.create_plan(factories.plan(teen, now, weekly_hours=6, modality_hours={}))
    assert service.episode(teen).age_group == "adolescent"
    assert_refused(
        service,
        errors.HoursOutOfBand,
        service.create_plan,
        factories.plan(adult, now, weekly_hours=6, modality_hours={}),
    )


def test_severe_withdrawal_without_detox_blocks_the_plan(service, clock):
    """ASAM dimension 1 at 3 or more needs a completed detox first."""
    severe = {**factories.ASAM, "intoxication_withdrawal": 3}
    episode_id = open_episode(service, clock, asam=severe)
    now = advance(clock, days=6)
    assert_refused(
        service,
        errors.DetoxRequired,
        service.create_plan,
        factories.plan(episode_id, now),
    )
    service.create_plan(
        factories.plan(episode_id, now, detox_completed_on=now.date() - timedelta(days=1))
    )
    assert service.episode(episode_id).status == "active"


def test_medicare_plan_needs_a_certifying_physician(service, clock):
    """Medicare pays for IOP only with a physician's certification."""
    episode_id = open_episode(service, clock, payer="medicare", birth_date=date(1950, 1, 1))
    now = advance(clock, hours=1)
    raised = assert_refused(
        service,
        errors.CertificationRequired,
        service.create_plan,
        factories.plan(episode_id, now),
    )
    assert raised.value.field == "certifying_physician_id"
    service.create_plan(factories.plan(episode_id, now, certifying_physician_id="dr.fox"))


def test_second_plan_is_refused(service, clock):
    """An episode has one plan; changes in hours are step-downs."""
    episode_id = active_episode(service, clock)
    assert_refused(
        service,
        errors.PlanAlreadyCreated,
        service.create_plan,
        factories.plan(episode_id, advance(clock, hours=1)),
    )


def test_modality_breakdown_must_add_up(service, clock):
    """A breakdown by modality that disagrees with weekly_hours names the field."""
    episode_id = open_episode(service, clock)
    raised = assert_refused(
        service,
        ValidationError,
        service.create_plan,
        factories.plan(episode_id, advance(clock, hours=1), modality_hours={"group": 3}),
    )
    assert "modality_hours" in str(raised.value)


# ---- care needs an active plan ---------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "method"),
    [
        (factories.session, "record_session"),
        (factories.dose, "dispense_medication"),
        (factories.screen, "record_screen"),
        (factories.step_down, "step_down"),
    ],
)
def test_care_before_a_plan_is_refused(service, clock, factory, method):
    """Sessions, doses, screens and step-downs need an active plan."""
    episode_id = open_episode(service, clock)
    assert_refused(
        service,
        errors.PlanRequired,
        getattr(service, method),
        factory(episode_id, advance(clock, hours=1)),
    )


def test_care_with_a_plan_is_accepted(service, clock):
    """With a plan, a session, a dose and a screen are recorded in order."""
    episode_id = active_episode(service, clock)
    now = advance(clock, hours=2)
    versions = [
        service.record_session(factories.session(episode_id, now)).version,
        service.dispense_medication(factories.dose(episode_id, now)).version,
        service.record_screen(factories.screen(episode_id, now)).version,
    ]
    assert versions == [3, 4, 5]


def test_session_before_the_plan_started_is_refused(service, clock):
    """A late entry may not predate the plan it counts against."""
    episode_id = active_episode(service, clock)
    assert_refused(
        service,
        errors.OccurredBeforeStart,
        service.record_session,
        factories.session(episode_id, clock.now() - timedelta(days=2)),
    )


# ---- medication ----------------------------------------------------------------


def test_medication_must_be_in_the_plan(service, clock):
    """Only a planned medication is dispensed."""
    episode_id = active_episode(service, clock)
    methadone = factories.dose(
        episode_id,
        advance(clock, hours=1),
        medication="methadone",
        strength_mg=10,
        dose_form="liquid",
        amount=8,
        unit="mL",
        route="oral",
    )
    raised = assert_refused(
        service, errors.MedicationNotInPlan, service.dispense_medication, methadone
    )
    assert "methadone" in str(raised.value)


@pytest.mark.parametrize("amount", [0, -1, "abc"])
def test_dose_amount_must_be_positive(service, clock, amount):
    """A zero, negative or non-numeric amount is a validation error on amount."""
    episode_id = active_episode(service, clock)
    raised = assert_refused(
        service,
        ValidationError,
        service.dispense_medication,
        factories.dose(episode_id, advance(clock, hours=1), amount=amount),
    )
    assert raised.value.errors()[0]["loc"] == ("amount",)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"unit": "mL"}, "dose_form"),
        ({"route": "oral"}, "dose_form"),
        ({"amount": 5}, "amount"),
    ],
)
def test_dose_form_unit_and_ceiling_are_checked(service, clock, overrides, field):
    """Buprenorphine goes under the tongue as films or tablets, at most 32 mg."""
    episode_id = active_episode(service, clock)
    raised = assert_refused(
        service,
        errors.InvalidDose,
        service.dispense_medication,
        factories.dose(episode_id, advance(clock, hours=1), **overrides),
    )
    assert raised.value.field == field


def test_take_home_doses_only_for_methadone_and_buprenorphine(service, clock):
    """Naltrexone tablets are taken on site."""
    episode_id = active_episode(service, clock, medications=["naltrexone"])
    naltrexone = {
        "medication": "naltrexone",
        "strength_mg": 50,
        "dose_form": "tablet",
        "amount": 1,
        "unit": "tablet",
        "route": "oral",
    }
    now = advance(clock, hours=1)
    assert_refused(
        service,
        errors.InvalidDose,
        service.dispense_medication,
        factories.dose(episode_id, now, **naltrexone, take_home_doses=2),
    )
    service.dispense_medication(factories.dose(episode_id, now, **naltrexone, take_home_doses=0))


def test_unknown_medication_is_a_validation_error(service, clock):
    """Only catalog medications are accepted."""
    episode_id = active_episode(service, clock)
    raised = assert_refused(
        service,
        ValidationError,
        service.dispense_medication,
        factories.dose(episode_id, advance(clock, hours=1), medication="oxycodone"),
    )
    assert raised.value.errors()[0]["loc"] == ("medication",)


def test_screen_results_must_be_on_the_panel(service, clock):
    """A 5-panel does not report fentanyl."""
    episode_id = active_episode(service, clock)
    assert_refused(
        service,
        errors.ScreenNotOnPanel,
        service.record_screen,
        factories.screen(
            episode_id,
            advance(clock, hours=1),
            panel="5-panel",
            results={"fentanyl": "positive"},
        ),
    )


# ---- step-down ------------------------------------------------------------------


def test_step_down_lowers_hours_and_records_who_and_why(service, clock):
    """A step-down stores the hours before and after, the actor and the reason."""
    episode_id = active_episode(service, clock)
    receipt = service.step_down(factories.step_down(episode_id, advance(clock, days=28)))
    state = service.episode(episode_id)
    assert (state.weekly_hours, state.step_downs) == (9, 1)
    entry = list(service.history(episode_id))[receipt.version - 1]
    assert entry.actor == factories.COUNSELOR
    assert entry.payload["from_weekly_hours"] == "12"
    assert entry.payload["reason"].startswith("Four weeks")


def test_step_down_must_lower_the_hours(service, clock):
    """Raising or keeping the hours is not a step-down."""
    episode_id = active_episode(service, clock)
    assert_refused(
        service,
        errors.StepDownNotLower,
        service.step_down,
        factories.step_down(episode_id, advance(clock, days=28), to_weekly_hours=12),
    )


def test_step_down_at_most_once_per_iso_week(service, clock):
    """A second step-down in the same ISO week is refused; the next week is fine."""
    episode_id = active_episode(service, clock)
    service.step_down(factories.step_down(episode_id, advance(clock, days=28)))
    assert_refused(
        service,
        errors.StepDownAlreadyThisWeek,
        service.step_down,
        factories.step_down(episode_id, advance(clock, days=2), to_weekly_hours=6),
    )
    service.step_down(factories.step_down(episode_id, advance(clock, days=7), to_weekly_hours=6))
    assert service.episode(episode_id).level == "1"


def test_step_down_needs_a_reason(service, clock):
    """Who decided is the actor; why is a required, non-blank reason."""
    episode_id = active_episode(service, clock)
    raised = assert_refused(
        service,
        ValidationError,
        service.step_down,
        factories.step_down(episode_id, advance(clock, days=28), reason="   "),
    )
    assert raised.value.errors()[0]["loc"] == ("reason",)


# ---- discharge and after ------------------------------------------------------------


def test_discharge_happens_once(service, clock):
    """A second discharge is refused."""
    episode_id = active_episode(service, clock)
    service.discharge(factories.discharge(episode_id, advance(clock, days=60)))
    assert service.episode(episode_id).discharge_reason == 1
    assert_refused(
        service,
        errors.AlreadyDischarged,
        service.discharge,
        factories.discharge(episode_id, advance(clock, hours=1), reason=2),
    )


@pytest.mark.parametrize("reason", [0, 8, "completed"])
def test_discharge_reason_is_a_teds_code(service, clock, reason):
    """TEDS reasons run 1 to 7."""
    episode_id = active_episode(service, clock)
    raised = assert_refused(
        service,
        ValidationError,
        service.discharge,
        factories.discharge(episode_id, advance(clock, days=1), reason=reason),
    )
    assert raised.value.errors()[0]["loc"] == ("reason",)


@pytest.mark.parametrize(
    ("factory", "method"),
    [
        (factories.session, "record_session"),
        (factories.dose, "dispense_medication"),
        (factories.screen, "record_screen"),
        (factories.step_down, "step_down"),
    ],
)
def test_care_after_discharge_is_refused(service, clock, factory, method):
    """After discharge nothing but aftercare and corrections."""
    episode_id = active_episode(service, clock)
    service.discharge(factories.discharge(episode_id, advance(clock, days=30)))
    assert_refused(
        service,
        errors.EpisodeDischarged,
        getattr(service, method),
        factory(episode_id, advance(clock, hours=1)),
    )


def test_aftercare_and_corrections_after_discharge_are_accepted(service, clock):
    """Aftercare is planned at discharge and records can still be corrected."""
    episode_id = active_episode(service, clock)
    service.record_session(factories.session(episode_id, advance(clock, hours=1)))
    service.discharge(factories.discharge(episode_id, advance(clock, days=30)))
    now = advance(clock, hours=1)
    service.schedule_aftercare(factories.aftercare(episode_id, now))
    receipt = service.correct_entry(factories.correction(episode_id, now, target_version=3))
    assert receipt.version == 6
    assert service.episode(episode_id).voided_versions == (3,)


# ---- corrections ------------------------------------------------------------------


def test_amendment_is_validated_against_the_corrected_entry(service, clock):
    """An amended session must still be a valid session."""
    episode_id = active_episode(service, clock)
    service.record_session(factories.session(episode_id, advance(clock, hours=1)))
    raised = assert_refused(
        service,
        errors.CorrectionInvalid,
        service.correct_entry,
        factories.correction(
            episode_id,
            clock.now(),
            action="amend",
            amended={"modality": "group", "minutes": 0},
        ),
    )
    assert raised.value.field == "amended.minutes"


def test_only_care_records_can_be_corrected(service, clock):
    """Plans, step-downs and discharges are not corrected by EntryCorrected."""
    episode_id = active_episode(service, clock)
    raised = assert_refused(
        service,
        errors.CorrectionInvalid,
        service.correct_entry,
        factories.correction(episode_id, advance(clock, hours=1), target_version=2),
    )
    assert "PlanCreated" in str(raised.value)


def test_a_voided_entry_cannot_be_corrected_again(service, clock):
    """Void is final; the original entry is kept."""
    episode_id = active_episode(service, clock)
    service.record_session(factories.session(episode_id, advance(clock, hours=1)))
    service.correct_entry(factories.correction(episode_id, clock.now()))
    assert_refused(
        service,
        errors.CorrectionInvalid,
        service.correct_entry,
        factories.correction(episode_id, clock.now(), reason="again"),
    )
    assert [type(e).__name__ for e in service.history(episode_id)][2] == "SessionAttended"


def test_correction_of_a_missing_version_is_refused(service, clock):
    """A correction points at an entry that exists."""
    episode_id = active_episode(service, clock)
    assert_refused(
        service,
        errors.CorrectionInvalid,
        service.correct_entry,
        factories.correction(episode_id, advance(clock, hours=1), target_version=9),
    )


# ---- time and roles -----------------------------------------------------------------


def test_future_entry_beyond_clock_skew_is_refused(service, clock):
    """occurred_at may be up to five minutes ahead of the service clock."""
    episode_id = active_episode(service, clock)
    service.record_session(factories.session(episode_id, clock.now() + timedelta(minutes=4)))
    assert_refused(
        service,
        errors.OccurredInFuture,
        service.record_session,
        factories.session(episode_id, clock.now() + timedelta(minutes=6)),
    )


def test_late_entry_is_accepted(service, clock):
    """A session charted three days later is an ordinary late entry."""
    episode_id = active_episode(service, clock)
    session_time = advance(clock, hours=2)
    advance(clock, days=3)
    receipt = service.record_session(factories.session(episode_id, session_time))
    assert receipt.version == 3


def test_naive_datetime_is_a_validation_error(service, clock):
    """A time without a zone is ambiguous and refused on occurred_at."""
    episode_id = active_episode(service, clock)
    naive = clock.now().replace(tzinfo=None)
    raised = assert_refused(
        service,
        ValidationError,
        service.record_session,
        factories.session(episode_id, naive),
    )
    assert raised.value.errors()[0]["loc"] == ("occurred_at",)


def test_role_not_allowed_is_refused(service, clock):
    """A counselor does not dispense medication."""
    episode_id = active_episode(service, clock)
    raised = assert_refused(
        service,
        errors.PermissionDenied,
        service.dispense_medication,
        factories.dose(episode_id, advance(clock, hours=1), actor=factories.COUNSELOR),
    )
    assert "role counselor" in str(raised.value)


def test_auditor_records_nothing(service, clock):
    """An auditor reads histories but cannot assess a client."""
    assert_refused(
        service,
        errors.PermissionDenied,
        service.assess,
        factories.assessment(clock.now(), actor=factories.AUDITOR),
    )


def test_client_age_must_be_plausible(service, clock):
    """A birth date that makes the client 5 years old is refused."""
    raised = assert_refused(
        service,
        errors.AgeOutOfRange,
        service.assess,
        factories.assessment(clock.now(), birth_date=date(2021, 1, 1)),
    )
    assert raised.value.field == "birth_date"


def test_clock_must_not_go_back():
    """A simulated clock refuses to run backwards."""
    clock = SimulatedClock(START)
    with pytest.raises(ValueError, match="does not go back"):
        clock.set(START - timedelta(seconds=1))
