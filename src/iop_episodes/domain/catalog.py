"""The care catalog: the fixed vocabulary of an intensive outpatient program.

Everything here is reference data taken from the ASAM criteria, SAMHSA's
TEDS codes and common IOP practice. Nothing here reads a clock or a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum, StrEnum


class AgeGroup(StrEnum):
    ADULT = "adult"
    ADOLESCENT = "adolescent"


ADULT_AGE = 18


def age_group_at(age_years: int) -> AgeGroup:
    """Adolescents are under 18 at assessment; the group holds for the episode."""
    return AgeGroup.ADOLESCENT if age_years < ADULT_AGE else AgeGroup.ADULT


class Level(StrEnum):
    """ASAM levels of care that bound an IOP episode's weekly hours."""

    OUTPATIENT = "1"
    INTENSIVE_OUTPATIENT = "2.1"
    PARTIAL_HOSPITALIZATION = "2.5"


@dataclass(frozen=True)
class HourBand:
    """Weekly treatment hours a level admits: ``low <= hours < high``."""

    low: Decimal
    high: Decimal | None

    def admits(self, hours: Decimal) -> bool:
        return hours >= self.low and (self.high is None or hours < self.high)

    def describe(self) -> str:
        if self.high is None:
            return f"{self.low} hours or more"
        return f"at least {self.low} and under {self.high} hours"


IOP_CEILING = Decimal(20)
IOP_FLOOR = {AgeGroup.ADULT: Decimal(9), AgeGroup.ADOLESCENT: Decimal(6)}


def band(level: Level, age_group: AgeGroup) -> HourBand:
    """The weekly-hour band of a level for an age group (ASAM 2.1 and neighbours)."""
    floor = IOP_FLOOR[age_group]
    if level is Level.INTENSIVE_OUTPATIENT:
        return HourBand(floor, IOP_CEILING)
    if level is Level.PARTIAL_HOSPITALIZATION:
        return HourBand(IOP_CEILING, None)
    # Standard outpatient: some treatment, but below the IOP floor.
    return HourBand(Decimal("0.25"), floor)


def level_for_hours(hours: Decimal, age_group: AgeGroup) -> Level:
    for level in Level:
        if band(level, age_group).admits(hours):
            return level
    msg = f"no level of care admits {hours} weekly hours"
    raise ValueError(msg)


class Modality(StrEnum):
    GROUP = "group"
    FAMILY = "family"
    COUPLES = "couples"
    INDIVIDUAL = "individual"
    # Adjunctive therapies.
    ART = "art"
    DANCE = "dance"
    DRAMA = "drama"
    CRAFTS = "crafts"
    SCULPTURE = "sculpture"
    ACUPUNCTURE = "acupuncture"
    MASSAGE = "massage"
    BIOFEEDBACK = "biofeedback"
    MEDITATION = "meditation"
    YOGA = "yoga"


class Topic(StrEnum):
    RELAPSE_PREVENTION = "relapse_prevention"
    STRESS_MANAGEMENT = "stress_management"
    ASSERTIVENESS_TRAINING = "assertiveness_training"
    PARENTING_SKILLS = "parenting_skills"
    COPING_SKILLS = "coping_skills"
    EMOTION_REGULATION = "emotion_regulation"
    COMMUNICATION = "communication"
    EMPLOYMENT = "employment"
    TWELVE_STEP_FACILITATION = "twelve_step_facilitation"
    MEDICATION_EDUCATION = "medication_education"


class Medication(StrEnum):
    DISULFIRAM = "disulfiram"
    METHADONE = "methadone"
    BUPRENORPHINE = "buprenorphine"
    NALTREXONE = "naltrexone"


class DoseForm(StrEnum):
    TABLET = "tablet"
    FILM = "film"
    LIQUID = "liquid"
    INJECTION = "injection"


class DoseUnit(StrEnum):
    """The unit an amount is counted in: tablets, films, millilitres, injections."""

    TABLET = "tablet"
    FILM = "film"
    MILLILITRE = "mL"
    INJECTION = "injection"


class Route(StrEnum):
    ORAL = "oral"
    SUBLINGUAL = "sublingual"
    INTRAMUSCULAR = "intramuscular"


@dataclass(frozen=True)
class MedicationSpec:
    """How a medication is given on site and the largest single dose accepted."""

    forms: frozenset[tuple[DoseForm, DoseUnit, Route]]
    max_dose_mg: Decimal
    take_home_allowed: bool


MEDICATIONS: dict[Medication, MedicationSpec] = {
    Medication.DISULFIRAM: MedicationSpec(
        frozenset({(DoseForm.TABLET, DoseUnit.TABLET, Route.ORAL)}),
        Decimal(500),
        take_home_allowed=False,
    ),
    Medication.METHADONE: MedicationSpec(
        frozenset(
            {
                (DoseForm.LIQUID, DoseUnit.MILLILITRE, Route.ORAL),
                (DoseForm.TABLET, DoseUnit.TABLET, Route.ORAL),
            }
        ),
        Decimal(300),
        take_home_allowed=True,
    ),
    Medication.BUPRENORPHINE: MedicationSpec(
        frozenset(
            {
                (DoseForm.FILM, DoseUnit.FILM, Route.SUBLINGUAL),
                (DoseForm.TABLET, DoseUnit.TABLET, Route.SUBLINGUAL),
            }
        ),
        Decimal(32),
        take_home_allowed=True,
    ),
    Medication.NALTREXONE: MedicationSpec(
        frozenset(
            {
                (DoseForm.TABLET, DoseUnit.TABLET, Route.ORAL),
                (DoseForm.INJECTION, DoseUnit.INJECTION, Route.INTRAMUSCULAR),
            }
        ),
        Decimal(380),
        take_home_allowed=False,
    ),
}

MAX_TAKE_HOME_DOSES = 28


class Substance(StrEnum):
    """Substances a urine drug screen reports on."""

    ALCOHOL = "alcohol"
    AMPHETAMINES = "amphetamines"
    BENZODIAZEPINES = "benzodiazepines"
    BUPRENORPHINE = "buprenorphine"
    CANNABIS = "cannabis"
    COCAINE = "cocaine"
    FENTANYL = "fentanyl"
    METHADONE = "methadone"
    METHAMPHETAMINE = "methamphetamine"
    OPIATES = "opiates"
    OXYCODONE = "oxycodone"


class ScreenPanel(StrEnum):
    FIVE = "5-panel"
    TEN = "10-panel"
    TWELVE = "12-panel"


PANELS: dict[ScreenPanel, frozenset[Substance]] = {
    ScreenPanel.FIVE: frozenset(
        {
            Substance.AMPHETAMINES,
            Substance.CANNABIS,
            Substance.COCAINE,
            Substance.OPIATES,
            Substance.BENZODIAZEPINES,
        }
    ),
    ScreenPanel.TEN: frozenset(
        {
            Substance.AMPHETAMINES,
            Substance.BENZODIAZEPINES,
            Substance.BUPRENORPHINE,
            Substance.CANNABIS,
            Substance.COCAINE,
            Substance.METHADONE,
            Substance.METHAMPHETAMINE,
            Substance.OPIATES,
            Substance.OXYCODONE,
            Substance.FENTANYL,
        }
    ),
    ScreenPanel.TWELVE: frozenset(Substance),
}

# A positive for a prescribed medication is expected, not a relapse signal.
EXPECTED_WHEN_PRESCRIBED: dict[Substance, Medication] = {
    Substance.BUPRENORPHINE: Medication.BUPRENORPHINE,
    Substance.METHADONE: Medication.METHADONE,
}


class ScreenResult(StrEnum):
    NEGATIVE = "negative"
    POSITIVE = "positive"
    INVALID = "invalid"


class DischargeReason(IntEnum):
    """SAMHSA TEDS reason for discharge."""

    TREATMENT_COMPLETED = 1
    DROPPED_OUT = 2
    TERMINATED_BY_FACILITY = 3
    TRANSFERRED = 4
    INCARCERATED = 5
    DEATH = 6
    OTHER = 7


TEDS_SERVICE_SETTING_IOP = 6


class Payer(StrEnum):
    MEDICARE = "medicare"
    MEDICAID = "medicaid"
    PRIVATE_INSURANCE = "private_insurance"
    SELF_PAY = "self_pay"


class EntryPathway(StrEnum):
    AFTER_INPATIENT_OR_RESIDENTIAL = "after_inpatient_or_residential"
    AFTER_PARTIAL_HOSPITALIZATION = "after_partial_hospitalization"
    FROM_SOBER_LIVING = "from_sober_living"
    PRIMARY_TREATMENT = "primary_treatment"
    RELAPSE_PREVENTION_REFRESHER = "relapse_prevention_refresher"


class AftercareKind(StrEnum):
    THERAPIST_APPOINTMENT = "therapist_appointment"
    TWELVE_STEP_MEETING = "twelve_step_meeting"
    RELAPSE_PREVENTION_PLAN = "relapse_prevention_plan"
    CONTINUED_MEDICATION = "continued_medication"


class Role(StrEnum):
    COUNSELOR = "counselor"
    THERAPIST = "therapist"
    NURSE = "nurse"
    PHYSICIAN = "physician"
    PROGRAM_DIRECTOR = "program_director"
    SCHEDULER = "scheduler"
    AUDITOR = "auditor"


# ASAM dimension 1 rated 3 or 4 is severe withdrawal: detox must come first.
SEVERE_WITHDRAWAL_RATING = 3


class RecordScope(StrEnum):
    """Kinds of record a 42 CFR Part 2 consent may cover (2.31(a)(3): how much and what kind)."""

    ADMISSION_DISCHARGE = "admission_discharge"  # assessment, plan, step-downs, discharge, consents
    SESSIONS = "sessions"
    MEDICATIONS = "medications"
    DRUG_SCREENS = "drug_screens"
    AFTERCARE = "aftercare"


class DisclosureException(StrEnum):
    """Disclosures 42 CFR Part 2 permits without the patient's consent."""

    MEDICAL_EMERGENCY = "medical-emergency"  # 42 CFR 2.51
    RESEARCH = "research"  # 42 CFR 2.52
    AUDIT_AND_EVALUATION = "audit-and-evaluation"  # 42 CFR 2.53
    COURT_ORDER = "court-order"  # 42 CFR 2.61-2.64


class ExportFormat(StrEnum):
    """What left the program, as its Disclosure names it."""

    FHIR_COLLECTION = "fhir-r4-collection"
    FHIR_TRANSACTION = "fhir-r4-transaction"
    TEDS_ADMISSIONS_CSV = "teds-admissions-csv"
    TEDS_ADMISSIONS_JSON = "teds-admissions-json"
    TEDS_DISCHARGES_CSV = "teds-discharges-csv"
    TEDS_DISCHARGES_JSON = "teds-discharges-json"
    AUDIT_REPORT_JSONL = "audit-report-jsonl"
    AUDIT_REPORT_CSV = "audit-report-csv"
    AUDIT_REPORT_HTML = "audit-report-html"  # iop audit report: every entry shown, up to --as-of
    PROOF_BUNDLE = "proof-bundle"  # iop audit prove: each covered entry exactly as stored
