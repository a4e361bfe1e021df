"""Pydantic payloads of the episode events and of the disclosure event.

A payload is what a clinician or system states; the event envelope around
it (who, when, which command, chain link) lives in ``events``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, ValidationInfo, field_validator

from iop_episodes.domain.catalog import (
    AftercareKind,
    DischargeReason,
    DisclosureException,
    DoseForm,
    DoseUnit,
    EntryPathway,
    ExportFormat,
    Level,
    Medication,
    Modality,
    Payer,
    RecordScope,
    Route,
    ScreenPanel,
    ScreenResult,
    Substance,
    Topic,
)
from iop_episodes.domain.values import (
    Hours,
    HoursOrZero,
    Instant,
    Model,
    Note,
    Quantity,
    Reason,
    Reference,
    SortedOnDump,
    Timezone,
)

Rating = Annotated[int, Field(ge=0, le=4)]
Substances = Annotated[frozenset[Substance], SortedOnDump, Field(min_length=1)]
Topics = Annotated[frozenset[Topic], SortedOnDump]
Medications = Annotated[frozenset[Medication], SortedOnDump]


class AsamRatings(Model):
    """Risk ratings 0-4 on the six ASAM dimensions."""

    intoxication_withdrawal: Rating
    biomedical: Rating
    emotional_behavioral_cognitive: Rating
    readiness_to_change: Rating
    relapse_potential: Rating
    recovery_environment: Rating


class AssessmentDetails(Model):
    """What the assessing clinician states; ``Assessed`` adds the program's timezone."""

    client_ref: Reference
    birth_date: date
    entry_pathway: EntryPathway
    payer: Payer
    asam: AsamRatings
    primary_substances: Substances
    substance_use_history: Note = ""
    medical_history: Note = ""
    detox_completed_on: date | None = None
    outside_therapist: bool = False
    has_transport: bool = True
    supportive_network: bool = True


class Assessed(AssessmentDetails):
    program_timezone: Timezone


class PlanCreated(Model):
    weekly_hours: Hours
    days_per_week: Annotated[int, Field(ge=1, le=7)]
    modality_hours: dict[Modality, Hours] = Field(default_factory=dict)
    topics: Topics = frozenset()
    medications: Medications = frozenset()
    screens_per_week: Annotated[int, Field(ge=0, le=7)] = 1
    certifying_physician_id: Reference | None = None
    certified_on: date | None = None
    """Medicare: the day the physician certified (default: the plan's local date)."""
    certified_weekly_hours: Hours | None = None
    """Medicare: the weekly hours certified, at least 9 (default: the plan's hours)."""
    detox_completed_on: date | None = None

    @field_validator("modality_hours")
    @classmethod
    def _breakdown_adds_up(
        cls, breakdown: dict[Modality, Decimal], info: ValidationInfo
    ) -> dict[Modality, Decimal]:
        weekly = info.data.get("weekly_hours")
        if breakdown and weekly is not None and sum(breakdown.values()) != weekly:
            msg = f"must add up to weekly_hours ({sum(breakdown.values())} != {weekly})"
            raise ValueError(msg)
        return breakdown


class SessionAttended(Model):
    modality: Modality
    minutes: Annotated[int, Field(gt=0)]
    """Positive; the program's maximum (default 12 hours) is a rule of the episode."""
    topics: Topics = frozenset()
    setting: Literal["on_site", "telehealth"] = "on_site"
    note: Note = ""


class PolicyRef(Model):
    id: Reference
    version: Annotated[int, Field(ge=1)]


class Dose(Model):
    """What the nurse or physician states about a dose."""

    medication: Medication
    strength_mg: Quantity
    dose_form: DoseForm
    amount: Quantity
    unit: DoseUnit
    route: Route
    lot: Reference
    take_home_doses: Annotated[int, Field(ge=0)] = 0
    """Days' supply taken home (one dose a day), within the take-home policy."""


class MedicationDispensed(Dose):
    """The stored payload adds the take-home policy the dose was judged by."""

    take_home_policy: PolicyRef | None = None


class ScreenResulted(Model):
    panel: ScreenPanel
    results: Annotated[dict[Substance, ScreenResult], Field(min_length=1)]
    specimen: Literal["urine"] = "urine"
    lab_ref: Reference | None = None


class WeekEvidence(Model):
    """What a step-down decision saw for one ISO week."""

    week: Annotated[str, Field(pattern=r"^\d{4}-W\d{2}$")]
    target_hours: Hours
    attended_hours: HoursOrZero = Decimal(0)
    negative_screens: Annotated[int, Field(ge=0)] = 0
    unexpected_positive_screens: Annotated[int, Field(ge=0)] = 0


class StepDownRequested(Model):
    to_weekly_hours: Hours
    reason: Reason
    policy: PolicyRef | None = None
    evidence: tuple[WeekEvidence, ...] = ()


class StepDown(StepDownRequested):
    """The stored payload adds what the episode knew when it stepped down."""

    from_weekly_hours: Hours
    to_level: Level


class Recertified(Model):
    """A physician renews a Medicare IOP certification (due within 60 days of the last)."""

    physician_id: Reference
    certified_on: date
    certified_weekly_hours: Hours


class Discharged(Model):
    reason: DischargeReason
    summary: Note = ""
    transferred_to: Reference | None = None


class AftercareScheduled(Model):
    kind: AftercareKind
    scheduled_for: Instant | None = None
    provider: Note = ""
    note: Note = ""


class EntryCorrected(Model):
    target_version: Annotated[int, Field(ge=1)]
    action: Literal["void", "amend"]
    reason: Reason
    amended: dict[str, object] | None = Field(default=None, validate_default=True)

    @field_validator("amended")
    @classmethod
    def _amend_carries_replacement(
        cls, amended: dict[str, object] | None, info: ValidationInfo
    ) -> dict[str, object] | None:
        action = info.data.get("action")
        if action == "amend" and amended is None:
            msg = "an amend correction needs the amended payload"
            raise ValueError(msg)
        if action == "void" and amended is not None:
            msg = "a void correction carries no amended payload"
            raise ValueError(msg)
        return amended


Scopes = Annotated[frozenset[RecordScope], SortedOnDump, Field(min_length=1)]
Label = Annotated[Reason, Field(max_length=200)]
"""A recipient or purpose: free text a person types, at most 200 characters."""


class ConsentRecorded(Model):
    """A 42 CFR Part 2 consent: to whom, for what, which kinds of record, until when."""

    recipient: Label
    purpose: Label
    scope: Scopes
    expires_on: date
    note: Note = ""


class ConsentRevoked(Model):
    consent_version: Annotated[int, Field(ge=1)]
    reason: Reason


class DisclosedRecords(Model):
    """One episode's entries that left the program, and the consent they left under."""

    episode_id: UUID
    client_ref: Reference
    from_version: Annotated[int, Field(ge=1)]
    to_version: Annotated[int, Field(ge=1)]
    consent_version: Annotated[int, Field(ge=1)] | None = None


class DisclosureBasis(Model):
    """A disclosure's basis: a consent in force, or the one Part 2 exception it names."""

    basis: Literal["consent", "exception"]
    exception: DisclosureException | None = Field(default=None, validate_default=True)

    @field_validator("exception")
    @classmethod
    def _exception_only_under_an_exception_basis(
        cls, exception: DisclosureException | None, info: ValidationInfo
    ) -> DisclosureException | None:
        basis = info.data.get("basis")
        if basis == "consent" and exception is not None:
            msg = "a disclosure on consent names no exception"
            raise ValueError(msg)
        if basis == "exception" and exception is None:
            msg = "a disclosure under an exception names the exception"
            raise ValueError(msg)
        return exception


class Disclosed(DisclosureBasis):
    """Who received what, why, on what basis, and a digest of exactly the bytes sent."""

    recipient: Label
    purpose: Label
    format: ExportFormat
    scope: Scopes
    records: Annotated[tuple[DisclosedRecords, ...], Field(min_length=1)]
    checkpoint: Reference | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size_bytes: Annotated[int, Field(ge=0)]

    @field_validator("records")
    @classmethod
    def _basis_names_consents(
        cls, records: tuple[DisclosedRecords, ...], info: ValidationInfo
    ) -> tuple[DisclosedRecords, ...]:
        basis = info.data.get("basis")
        with_consent = [record.consent_version is not None for record in records]
        if basis == "consent" and not all(with_consent):
            msg = "a disclosure on consent names the consent_version of every record"
            raise ValueError(msg)
        if basis == "exception" and any(with_consent):
            msg = "a disclosure under an exception names no consent_version"
            raise ValueError(msg)
        return records
