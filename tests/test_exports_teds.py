"""TEDS export: admissions, transfers at a step-down out of IOP, discharges, LOS buckets."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories
from projections.exports import export_teds
from projections.exports.teds import episode_records, los_code, stay_days
from tests.exports_scenario import PHYSICIAN, START, scenario

YEAR = {"start": date(2026, 1, 1), "end": date(2026, 12, 31)}
CONSENTED = {"recipient": "County EHR", "purpose": "treatment", "actor": PHYSICIAN}


@pytest.fixture
def scenario_store() -> tuple[EpisodeService, object]:
    clock = SimulatedClock(START)
    service = EpisodeService("memory://", clock=clock, timezone="America/New_York")
    return service, scenario(service, clock)


def test_scenario_makes_an_admission_a_transfer_pair_and_a_final_discharge(scenario_store):
    """IOP admission (6), transfer out (6, reason 4), transfer admission (7), discharge (7)."""
    service, episode = scenario_store
    records = episode_records(list(service.history(episode)))
    shape = [
        (r.kind, r.fields.get("SERVICES", r.fields.get("SERVICES_D")), r.fields["TRANSFER"])
        for r in records
    ]
    assert shape == [
        ("admission", 6, 0),
        ("discharge", 6, 1),
        ("admission", 7, 1),
        ("discharge", 7, 0),
    ]
    admission, transfer_out, transfer_in, final = (r.fields for r in records)
    assert admission["ADMDATE"] == "2026-03-02"
    assert (admission["PSOURCE"], admission["PRIMPAY"]) == (2, 4)  # care provider; Medicaid
    assert (admission["SUB1"], admission["SUB2"], admission["SUB3"]) == (3, 7, 1)
    assert admission["DOB"] == "1988-06-01"
    assert admission["FREQ1"] == -9
    assert (transfer_out["ADMDATE"], transfer_out["DISDATE"]) == ("2026-03-02", "2026-04-06")
    assert (transfer_out["REASON"], transfer_out["LOS_DAYS"], transfer_out["LOS"]) == (4, 35, 31)
    assert transfer_in["ADMDATE"] == "2026-04-06"
    assert (final["ADMDATE"], final["DISDATE"]) == ("2026-04-06", "2026-04-27")
    assert (final["REASON"], final["LOS_DAYS"], final["LOS"]) == (1, 21, 21)


def test_unfilled_fields_are_minus_nine_with_a_reason(scenario_store):
    """Every field the engine cannot fill is -9 and named with why, in the JSON form."""
    service, episode = scenario_store
    records = episode_records(list(service.history(episode)))
    for record in records:
        assert record.unfilled
        for name, reason in record.unfilled.items():
            assert record.fields[name] == -9
            assert reason
    assert records[0].unfilled["FREQ1"] == "frequency of use is not recorded at assessment"


@pytest.mark.parametrize(
    ("days", "code"),
    [
        (1, 1), (30, 30), (31, 31), (45, 31), (46, 32), (60, 32), (61, 33), (90, 33),
        (91, 34), (120, 34), (121, 35), (180, 35), (181, 36), (365, 36), (366, 37),
    ],
)  # fmt: skip
def test_length_of_stay_buckets_follow_teds(days, code):
    """1-30 days exactly; 31-45, 46-60, 61-90, 91-120, 121-180, 181-365, over 365."""
    assert los_code(days) == code


def test_a_same_day_discharge_is_one_day():
    """TEDS-D has no zero-day code: admitted and discharged on one day is 1."""
    assert stay_days(date(2026, 3, 2), date(2026, 3, 2)) == 1
    assert stay_days(date(2026, 3, 2), date(2026, 3, 3)) == 1
    assert stay_days(date(2026, 3, 2), date(2026, 4, 1)) == 30


@pytest.mark.parametrize("days", [30, 31, 45, 46, 60, 61, 90, 91, 120, 121, 180, 181, 365, 366])
def test_an_episode_discharged_after_n_days_gets_its_bucket(days):
    """The discharge record's LOS comes from the plan's start and the discharge date."""
    clock = SimulatedClock(START)
    service = EpisodeService("memory://", clock=clock, timezone="America/New_York")
    episode = service.assess(factories.assessment(START)).episode_id
    service.create_plan(factories.plan(episode, START))
    clock.advance(timedelta(days=days))
    service.discharge(factories.discharge(episode, clock.now(), reason=2))
    *_, discharge = episode_records(list(service.history(episode)))
    assert discharge.fields["LOS_DAYS"] == days
    assert discharge.fields["LOS"] == los_code(days)
    assert discharge.fields["REASON"] == 2


def test_a_step_down_within_iop_is_not_a_change_of_service(service, clock):
    """12 to 9 weekly hours stays at ASAM 2.1: no transfer records."""
    episode = service.assess(factories.assessment(clock.now())).episode_id
    service.create_plan(factories.plan(episode, clock.now()))
    clock.advance(timedelta(days=30))
    service.step_down(factories.step_down(episode, clock.now(), to_weekly_hours=9))
    kinds = [r.kind for r in episode_records(list(service.history(episode)))]
    assert kinds == ["admission"]


def test_teds_csv_and_json_exports_carry_the_period_only(scenario_store):
    """Discharges dated in the period: the April transfer out is in, the final one is not."""
    service, _ = scenario_store
    export = export_teds(
        service,
        kind="discharge",
        start=date(2026, 4, 1),
        end=date(2026, 4, 20),
        consent=True,
        **CONSENTED,
    )
    rows = list(csv.DictReader(io.StringIO(export.data.decode("ascii"))))
    assert [(row["RECORD_TYPE"], row["REASON"], row["SERVICES_D"]) for row in rows] == [
        ("D", "4", "6")
    ]
    as_json = export_teds(
        service, kind="admission", output="json", consent=True, **YEAR, **CONSENTED
    )
    body = json.loads(as_json.data)
    assert [item["record"]["SERVICES"] for item in body] == [6, 7]
    assert body[0]["unfilled"]["RACE"] == "not recorded by the engine"


@pytest.mark.parametrize(
    ("pathway", "payer", "psource", "primpay"),
    [
        ("after_inpatient_or_residential", "self_pay", 2, 1),
        ("after_partial_hospitalization", "private_insurance", 2, 2),
        ("from_sober_living", "medicare", 6, 3),
        ("primary_treatment", "medicaid", 1, 4),
        ("relapse_prevention_refresher", "self_pay", 1, 1),
    ],
)
def test_referral_source_and_payment_come_from_the_assessment(pathway, payer, psource, primpay):
    """PSOURCE from the entry pathway, PRIMPAY from the payer (docs/teds.md)."""
    clock = SimulatedClock(START)
    service = EpisodeService("memory://", clock=clock, timezone="America/New_York")
    assessment = factories.assessment(
        START, entry_pathway=pathway, payer=payer, birth_date=date(1950, 1, 1)
    )
    episode = service.assess(assessment).episode_id
    plan = {"certifying_physician_id": "dr.fox"} if payer == "medicare" else {}
    service.create_plan(factories.plan(episode, START, **plan))
    (admission,) = episode_records(list(service.history(episode)))
    assert (admission.fields["PSOURCE"], admission.fields["PRIMPAY"]) == (psource, primpay)


@pytest.mark.parametrize(
    ("substances", "codes"),
    [
        (["alcohol"], (2, 1, 1)),
        (["fentanyl", "opiates"], (7, 1, 1)),
        (["amphetamines", "benzodiazepines", "cannabis", "methadone"], (11, 13, 4)),
        (["methamphetamine", "oxycodone"], (10, 7, 1)),
    ],
)
def test_substances_are_coded_per_teds_without_repeats(substances, codes):
    """SUB1-SUB3 are distinct TEDS codes in stored order, padded with 1 (none)."""
    clock = SimulatedClock(START)
    service = EpisodeService("memory://", clock=clock, timezone="America/New_York")
    episode = service.assess(factories.assessment(START, primary_substances=substances)).episode_id
    service.create_plan(factories.plan(episode, START))
    (admission,) = episode_records(list(service.history(episode)))
    assert (admission.fields["SUB1"], admission.fields["SUB2"], admission.fields["SUB3"]) == codes
