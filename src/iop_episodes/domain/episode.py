"""The Episode aggregate: one client's treatment episode and its rules.

Command methods take a validated command and the current time (never read
from a clock here), check every rule, and trigger one event. A rule broken
raises an ``EpisodeRuleError`` before anything changes. A command whose
``command_id`` was seen before returns the first receipt and triggers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.domain import Snapshot as LibrarySnapshot
from pydantic import ValidationError

from iop_episodes.domain import commands, errors, events, payloads
from iop_episodes.domain.canonical import canonical_time
from iop_episodes.domain.catalog import (
    MAX_TAKE_HOME_DOSES,
    MEDICATIONS,
    PANELS,
    AgeGroup,
    Level,
    Medication,
    Payer,
    band,
    level_for_hours,
)
from iop_episodes.domain.certification import MEDICARE_MIN_CERTIFIED_HOURS
from iop_episodes.domain.entries import entry_fields, first_entry, require_not_future
from iop_episodes.domain.permissions import ALLOWED_ROLES, may_record
from iop_episodes.domain.rules import DEFAULT_RULES, MINUTES_PER_LOCAL_DAY, RuleSettings
from iop_episodes.domain.weeks import age_on, iso_week, local

if TYPE_CHECKING:
    from collections.abc import Callable

    from iop_episodes.domain.values import Model

MIN_AGE, MAX_AGE = 12, 120

AFTER_DISCHARGE = frozenset(
    {"AftercareScheduled", "EntryCorrected", "Discharged", "ConsentRecorded", "ConsentRevoked"}
)
"""Entries that may happen after discharge (a second discharge has its own error).

Consents are too: records of a finished episode still leave only with one. Any
other entry is judged by when it happened: one that occurred before the
discharge is accepted after it (late documentation), one that occurred
after it is refused.
"""

TIMELINE = (
    "plan_weekly_hours",
    "care",
    "tapers",
    "certifications",
    "minutes_by_day",
    "weekly",
)
"""State the clinical rules keep; a snapshot without it predates them."""

NAMED_AT_MOST = 5
"""How many conflicting entries an error message lists."""


@dataclass(frozen=True)
class Receipt:
    """What a command did: the episode, its version after, and whether it was new."""

    episode_id: UUID
    version: int
    replayed: bool = False


class Episode(Aggregate):
    """A client's IOP treatment episode, created by its assessment."""

    # Class defaults, so that snapshots taken before consents existed still load.
    consents: tuple[tuple[int, dict[str, Any]], ...] = ()
    revoked_consents: tuple[int, ...] = ()

    class Snapshot(LibrarySnapshot):
        """A snapshot stamped with its episode's last recording time, not a clock."""

        @classmethod
        def take(cls, aggregate: Any) -> Self:
            taken = super().take(aggregate)
            return cls(
                originator_id=taken.originator_id,
                originator_version=taken.originator_version,
                timestamp=aggregate.modified_on,
                topic=taken.topic,
                state=taken.state,
            )

    def __init__(self) -> None:
        # The Assessed event fills in the assessment; the rest starts empty.
        self.chain: str = ""
        self.program_timezone: str = ""
        self.client_ref: str = ""
        self.age_group: AgeGroup = AgeGroup.ADULT
        self.payer: Payer = Payer.SELF_PAY
        self.assessed_at: datetime = self.created_on
        self.severe_withdrawal: bool = False
        self.detox_completed_on: date | None = None
        self.entries: list[str] = []
        self.receipts: dict[str, list[Any]] = {}
        self.voided: list[int] = []
        self.plan_started_at: datetime | None = None
        self.weekly_hours: Decimal | None = None
        self.level: Level | None = None
        self.medications: list[str] = []
        self.plan_weekly_hours: Decimal | None = None
        # The clinical timeline, kept small: it is in every snapshot. Times are
        # canonical UTC text (it sorts as time and decodes without a transcoder).
        self.care: list[list[Any]] = []  # [version, occurred_at, type, quantity, meaning]
        self.tapers: list[list[Any]] = []  # [version, occurred_at, to_hours, to_level], by time
        self.weekly: dict[str, list[int]] = {}  # ISO week: [minutes, negative, unexpected+]
        self.certifications: list[str] = []  # ISO dates of Medicare certifications
        self.minutes_by_day: dict[str, int] = {}  # attended minutes per local ISO date
        self.last_step_down_week: str | None = None
        self.step_downs: int = 0
        self.discharged_at: datetime | None = None
        self.discharge_reason: int | None = None

    # ---- creation ------------------------------------------------------

    @classmethod
    def assess(
        cls,
        cmd: commands.Assess,
        *,
        episode_id: UUID,
        now: datetime,
    ) -> Episode:
        """Open an episode with its assessment, in the program's timezone."""
        program_timezone = cmd.program_timezone
        if program_timezone is None:
            raise errors.EpisodeRuleError(
                "program_timezone is required to open an episode",
                field="program_timezone",
            )
        _require_role(cmd, "Assessed")
        require_not_future(cmd.occurred_at, now)
        local_day = local(cmd.occurred_at, program_timezone).date()
        age = age_on(cmd.birth_date, local_day)
        if not MIN_AGE <= age <= MAX_AGE:
            raise errors.AgeOutOfRange(
                f"client age at assessment must be {MIN_AGE} to {MAX_AGE}, "
                f"got {age} (birth_date {cmd.birth_date}, assessed {local_day})"
            )
        if cmd.detox_completed_on is not None and cmd.detox_completed_on > local_day:
            raise errors.DetoxDateInvalid(
                f"detox_completed_on {cmd.detox_completed_on} is after the assessment "
                f"on {local_day}: detox is completed before IOP begins"
            )
        return cls._create(
            events.Assessed, id=episode_id, **first_entry(events.Assessed, episode_id, cmd, now)
        )

    # ---- commands --------------------------------------------------------

    def create_plan(
        self, cmd: commands.CreatePlan, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.PlanCreated, self._check_plan)

    def record_session(
        self, cmd: commands.RecordSession, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.SessionAttended, self._check_session)

    def dispense_medication(
        self,
        cmd: commands.DispenseMedication,
        now: datetime,
        rules: RuleSettings = DEFAULT_RULES,
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.MedicationDispensed, self._check_dose)

    def record_screen(
        self, cmd: commands.RecordScreen, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.ScreenResulted, self._check_screen)

    def step_down(
        self, cmd: commands.StepDownHours, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.StepDown, self._check_step_down)

    def recertify(
        self, cmd: commands.Recertify, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.Recertified, self._check_recertification)

    def discharge(
        self, cmd: commands.Discharge, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.Discharged, self._check_discharge)

    def schedule_aftercare(
        self,
        cmd: commands.ScheduleAftercare,
        now: datetime,
        rules: RuleSettings = DEFAULT_RULES,
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.AftercareScheduled, self._check_aftercare)

    def correct_entry(
        self, cmd: commands.CorrectEntry, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.EntryCorrected, self._check_correction)

    def record_consent(
        self, cmd: commands.RecordConsent, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.ConsentRecorded, self._check_consent)

    def revoke_consent(
        self, cmd: commands.RevokeConsent, now: datetime, rules: RuleSettings = DEFAULT_RULES
    ) -> Receipt:
        return self._handle(cmd, now, rules, events.ConsentRevoked, self._check_revocation)

    # ---- reading -----------------------------------------------------------

    @property
    def is_discharged(self) -> bool:
        return self.discharged_at is not None

    @property
    def has_plan(self) -> bool:
        return self.plan_started_at is not None

    def hours_in_effect(self, moment: datetime) -> Decimal:
        """The weekly hours at a moment: the plan's, lowered by every step-down up to it."""
        hours = self.plan_weekly_hours or Decimal(0)
        when = canonical_time(moment)
        for _, at, to_hours, _ in self.tapers:
            if at <= when:
                hours = Decimal(to_hours)
        return hours

    @property
    def last_change_at(self) -> datetime | None:
        """When the plan started or the client last stepped down, in clinical time."""
        if self.tapers:
            return datetime.fromisoformat(self.tapers[-1][1])
        return self.plan_started_at

    def live_care(self) -> list[list[Any]]:
        """Timeline entries that were not voided."""
        voided = set(self.voided)
        return [entry for entry in self.care if entry[0] not in voided]

    def day_of_treatment(self, moment: datetime) -> int:
        """Local days since the plan started: the plan's own day is day 0."""
        start = self.plan_started_at or moment
        tz = self.program_timezone
        return (local(moment, tz).date() - local(start, tz).date()).days

    def receipt_for(self, command_id: str) -> Receipt | None:
        seen = self.receipts.get(command_id)
        return None if seen is None else Receipt(self.id, int(seen[0]), replayed=True)

    # ---- the common path of every command ------------------------------------

    def _handle(
        self,
        cmd: commands.EpisodeCommand,
        now: datetime,
        rules: RuleSettings,
        event_class: type[events.EpisodeEvent],
        check: Callable[[Any, RuleSettings], Model | None],
    ) -> Receipt:
        event_type = event_class.type_name()
        received = cmd.as_received()
        if cmd.command_id is not None and cmd.command_id in self.receipts:
            version, first_digest = self.receipts[cmd.command_id]
            if first_digest != cmd.digest(received):
                raise errors.IdempotencyKeyReused(
                    f"command_id {cmd.command_id!r} already recorded version "
                    f"{version} of episode {self.id} with different content"
                )
            return Receipt(self.id, int(version), replayed=True)
        _require_role(cmd, event_type)
        require_not_future(cmd.occurred_at, now)
        self._require_after(cmd.occurred_at, self.assessed_at, "the assessment")
        discharged_at = self.discharged_at
        if (
            discharged_at is not None
            and event_type not in AFTER_DISCHARGE
            and cmd.occurred_at > discharged_at
        ):
            raise errors.EpisodeDischarged(
                f"episode {self.id} was discharged at {canonical_time(discharged_at)}; "
                f"a {event_type} that occurred after it ({canonical_time(cmd.occurred_at)}) "
                "is not accepted"
            )
        stored = check(cmd, rules)  # None: the command's own payload is what is stored
        payload = cmd.payload_json(received) if stored is None else stored.model_dump(mode="json")
        self.trigger_event(
            event_class,
            **entry_fields(
                event_class,
                episode_id=self.id,
                version=self.version + 1,
                previous=self.chain,
                cmd=cmd,
                received=received,
                payload=payload,
                now=now,
            ),
        )
        return Receipt(self.id, self.version)

    # ---- rules -------------------------------------------------------------

    def _check_plan(self, cmd: commands.CreatePlan, _rules: RuleSettings) -> Model | None:
        if self.has_plan:
            raise errors.PlanAlreadyCreated(
                f"episode {self.id} already has the plan started {self.plan_started_at}"
            )
        plan_day = local(cmd.occurred_at, self.program_timezone).date()
        detox = cmd.detox_completed_on or self.detox_completed_on
        if self.severe_withdrawal and detox is None:
            raise errors.DetoxRequired(
                "ASAM dimension 1 rated severe withdrawal (3 or more): a plan needs "
                "detox_completed_on from the assessment or the plan, got neither"
            )
        if detox is not None and detox > plan_day:
            raise errors.DetoxDateInvalid(
                f"detox_completed_on {detox} is after the plan's start on {plan_day} "
                "(or in the future): detox is completed on or before the plan starts"
            )
        self._require_in_band(cmd.weekly_hours, Level.INTENSIVE_OUTPATIENT)
        if self.payer != Payer.MEDICARE:
            return None
        return self._certified_plan(cmd, plan_day)

    def _certified_plan(self, cmd: commands.CreatePlan, plan_day: date) -> Model:
        """A Medicare plan stores who certified, on which day and for how many hours."""
        if cmd.certifying_physician_id is None:
            raise errors.CertificationRequired(
                "a Medicare IOP plan needs certifying_physician_id (physician "
                "certification of at least 9 hours a week), got none"
            )
        hours = cmd.certified_weekly_hours or cmd.weekly_hours
        certified_on = cmd.certified_on or plan_day
        _require_certified_hours(hours)
        if certified_on > plan_day:
            raise errors.CertificationInvalid(
                f"certified_on {certified_on} is after the plan's start on {plan_day}",
                field="certified_on",
            )
        plan = payloads.PlanCreated.model_validate(cmd.payload_json())
        return plan.model_copy(
            update={"certified_on": certified_on, "certified_weekly_hours": hours}
        )

    def _check_session(self, cmd: commands.RecordSession, rules: RuleSettings) -> None:
        self._require_plan(cmd)
        self._check_session_time(cmd.occurred_at, cmd.minutes, rules, replacing=None)

    def _check_session_time(
        self, moment: datetime, minutes: int, rules: RuleSettings, replacing: int | None
    ) -> None:
        """A session within the program's maximum, and no more than 24 h in its local day."""
        if minutes > rules.max_session_minutes:
            raise errors.SessionTooLong(
                f"minutes {minutes} exceeds the program's maximum session of "
                f"{rules.max_session_minutes} minutes"
            )
        tz = self.program_timezone
        day = local(moment, tz).date()
        booked = self.minutes_by_day.get(day.isoformat(), 0)
        if replacing is not None:
            booked -= next(e[3] for e in self.care if e[0] == replacing)
        if booked + minutes > MINUTES_PER_LOCAL_DAY:
            raise errors.DayOverbooked(
                f"minutes {minutes} would bring attendance on {day} ({tz}) to "
                f"{booked + minutes} minutes; a local day holds at most "
                f"{MINUTES_PER_LOCAL_DAY} (24 hours)"
            )

    def _check_dose(self, cmd: commands.DispenseMedication, rules: RuleSettings) -> Model:
        self._require_plan(cmd)
        check_dose(cmd, self.medications)
        return self._judged_dose(
            payloads.Dose.model_validate(cmd.payload_json()), cmd.occurred_at, rules
        )

    def _judged_dose(
        self, dose: payloads.Dose, moment: datetime, rules: RuleSettings
    ) -> payloads.MedicationDispensed:
        """The dose within the take-home policy for its day, recording that policy."""
        policy = rules.take_home_policy
        day = self.day_of_treatment(moment)
        limit = policy.limit(dose.medication, day)
        if limit is not None and dose.take_home_doses > limit:
            raise errors.TakeHomeLimitExceeded(
                f"take_home_doses {dose.take_home_doses} of {dose.medication} on day {day} "
                f"of treatment exceeds the limit of {limit} days' supply under policy "
                f"{policy.policy_id} version {policy.version}"
            )
        return payloads.MedicationDispensed(
            **dose.model_dump(),
            take_home_policy=policy.ref if policy.covers(dose.medication) else None,
        )

    def _check_screen(self, cmd: commands.RecordScreen, _rules: RuleSettings) -> None:
        self._require_plan(cmd)
        check_screen(cmd)

    def _check_step_down(self, cmd: commands.StepDownHours, _rules: RuleSettings) -> Model:
        self._require_plan(cmd)
        at, tz = cmd.occurred_at, self.program_timezone
        current = self.hours_in_effect(at)
        if cmd.to_weekly_hours >= current:
            raise errors.StepDownNotLower(
                f"a step-down must lower weekly hours below {current} (in effect at "
                f"{canonical_time(at)}), got to_weekly_hours {cmd.to_weekly_hours}"
            )
        week = iso_week(at, tz)
        same_week = next(
            (t for t in self.tapers if iso_week(datetime.fromisoformat(t[1]), tz) == week), None
        )
        if same_week is not None:
            raise errors.StepDownAlreadyThisWeek(
                f"episode {self.id} already stepped down in ISO week {week} "
                f"(version {same_week[0]} at {same_week[1]})"
            )
        when = canonical_time(at)
        later = next((t for t in self.tapers if t[1] > when), None)
        if later is not None and Decimal(later[2]) >= cmd.to_weekly_hours:
            raise errors.TaperOutOfOrder(
                f"to_weekly_hours {cmd.to_weekly_hours} at {canonical_time(at)} is not above "
                f"the later step-down to {later[2]} hours already recorded (version "
                f"{later[0]} at {later[1]}): the taper would go up"
            )
        return payloads.StepDown(
            **cmd.payload().model_dump(),
            from_weekly_hours=current,
            to_level=level_for_hours(cmd.to_weekly_hours, self.age_group),
        )

    def _check_recertification(self, cmd: commands.Recertify, _rules: RuleSettings) -> None:
        self._require_plan(cmd)
        if self.payer != Payer.MEDICARE or not self.certifications:
            raise errors.CertificationInvalid(
                f"episode {self.id} is not a certified Medicare episode (payer "
                f"{self.payer}); only Medicare IOP is recertified",
                field="episode_id",
            )
        _require_certified_hours(cmd.certified_weekly_hours)
        day = local(cmd.occurred_at, self.program_timezone).date()
        first = date.fromisoformat(self.certifications[0])
        if not first <= cmd.certified_on <= day:
            raise errors.CertificationInvalid(
                f"certified_on {cmd.certified_on} must lie between the plan's "
                f"certification on {first} and the entry's own day {day}",
                field="certified_on",
            )

    def _check_discharge(self, cmd: commands.Discharge, _rules: RuleSettings) -> None:
        if self.is_discharged:
            raise errors.AlreadyDischarged(
                f"episode {self.id} was already discharged at {self.discharged_at} "
                f"with TEDS reason {self.discharge_reason}"
            )
        when = canonical_time(cmd.occurred_at)
        after = [entry for entry in self.live_care() if entry[1] > when]
        if after:
            named = ", ".join(
                f"version {v} {kind} at {at}"
                for v, at, kind, _, _ in sorted(after, key=lambda e: e[1])[:NAMED_AT_MOST]
            )
            raise errors.DischargeBeforeCare(
                f"a discharge at {canonical_time(cmd.occurred_at)} is before "
                f"{len(after)} care entries already recorded: {named}"
            )

    def _check_aftercare(self, _cmd: commands.ScheduleAftercare, _rules: RuleSettings) -> None:
        if not self.has_plan:
            raise errors.PlanRequired(
                f"episode {self.id} has no plan; aftercare follows a plan",
                field="episode_id",
            )

    def _check_consent(self, cmd: commands.RecordConsent, _rules: RuleSettings) -> None:
        self._require_after(cmd.occurred_at, self.assessed_at, "the assessment")

    def _check_revocation(self, cmd: commands.RevokeConsent, _rules: RuleSettings) -> None:
        target = cmd.consent_version
        given = dict(self.consents)
        if target not in given:
            raise errors.ConsentInvalid(
                f"consent_version {target} is not a ConsentRecorded entry of episode {self.id}"
            )
        if target in self.revoked_consents:
            raise errors.ConsentInvalid(f"consent at version {target} was already revoked")

    def _check_correction(self, cmd: commands.CorrectEntry, rules: RuleSettings) -> Model | None:
        target = cmd.target_version
        if target > self.version:
            raise errors.CorrectionInvalid(
                f"target_version {target} does not exist (episode {self.id} is at "
                f"version {self.version})",
                field="target_version",
            )
        target_type = self.entries[target - 1]
        if target_type not in events.CORRECTABLE:
            raise errors.CorrectionInvalid(
                f"target_version {target} is a {target_type}; only "
                f"{', '.join(sorted(events.CORRECTABLE))} entries can be corrected",
                field="target_version",
            )
        if target in self.voided:
            raise errors.CorrectionInvalid(
                f"target_version {target} was already voided", field="target_version"
            )
        if cmd.action == "void":
            return None
        amended = self._validate_amendment(target, target_type, cmd.amended or {}, rules)
        return payloads.EntryCorrected(
            target_version=target,
            action="amend",
            reason=cmd.reason,
            amended=amended.model_dump(mode="json"),
        )

    def _validate_amendment(
        self, target: int, target_type: str, amended: dict[str, object], rules: RuleSettings
    ) -> Model:
        payload_type = events.EVENT_TYPES[target_type].payload_type
        try:
            replacement = payload_type.model_validate(amended)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise errors.CorrectionInvalid(
                f"amended {target_type} is invalid at {where}: {first['msg']}",
                field=f"amended.{where}",
            ) from error
        recorded = next((e[1] for e in self.care if e[0] == target), None)
        moment = None if recorded is None else datetime.fromisoformat(recorded)
        if isinstance(replacement, payloads.SessionAttended) and moment is not None:
            self._check_session_time(moment, replacement.minutes, rules, replacing=target)
        if isinstance(replacement, payloads.MedicationDispensed):
            check_dose(replacement, self.medications)
            if moment is not None:
                dose = payloads.Dose(**replacement.model_dump(exclude={"take_home_policy"}))
                replacement = self._judged_dose(dose, moment, rules)
        if isinstance(replacement, payloads.ScreenResulted):
            check_screen(replacement)
        return replacement

    def _require_plan(self, cmd: commands.EpisodeCommand) -> None:
        if self.plan_started_at is None:
            raise errors.PlanRequired(
                f"episode {self.id} has no treatment plan yet", field="episode_id"
            )
        self._require_after(cmd.occurred_at, self.plan_started_at, "the plan start")

    def _require_after(self, moment: datetime, start: datetime, what: str) -> None:
        if moment < start:
            raise errors.OccurredBeforeStart(
                f"occurred_at {canonical_time(moment)} is before {what} at {canonical_time(start)}"
            )

    def _require_in_band(self, hours: Decimal, level: Level) -> None:
        hour_band = band(level, self.age_group)
        if not hour_band.admits(hours):
            raise errors.HoursOutOfBand(
                f"weekly_hours {hours} is outside the level {level} band for "
                f"{self.age_group} clients ({hour_band.describe()})"
            )


def _require_certified_hours(hours: Decimal) -> None:
    if hours < MEDICARE_MIN_CERTIFIED_HOURS:
        raise errors.CertificationInvalid(
            f"certified_weekly_hours {hours} is under the {MEDICARE_MIN_CERTIFIED_HOURS} "
            "hours a week Medicare IOP certifies, for every age group"
        )


def _require_role(cmd: commands.Command, event_type: str) -> None:
    if not may_record(cmd.actor.role, event_type):
        allowed = ", ".join(sorted(ALLOWED_ROLES[event_type]))
        raise errors.PermissionDenied(
            f"role {cmd.actor.role} (actor {cmd.actor.id}) may not record "
            f"{event_type}; allowed roles: {allowed}"
        )


def check_dose(dose: payloads.Dose, prescribed: list[str]) -> None:
    """A dispensed dose must be prescribed, given in a known form, and sane."""
    if dose.medication not in prescribed:
        raise errors.MedicationNotInPlan(
            f"medication {dose.medication} is not in the plan "
            f"(plan medications: {', '.join(prescribed) or 'none'})"
        )
    spec = MEDICATIONS[Medication(dose.medication)]
    if (dose.dose_form, dose.unit, dose.route) not in spec.forms:
        known = "; ".join(sorted(f"{f} in {u} by {r}" for f, u, r in spec.forms))
        raise errors.InvalidDose(
            f"{dose.medication} is not given as {dose.dose_form} in {dose.unit} by "
            f"{dose.route}; known forms: {known}",
            field="dose_form",
        )
    total_mg = dose.strength_mg * dose.amount
    if total_mg > spec.max_dose_mg:
        raise errors.InvalidDose(
            f"{dose.medication} dose of {total_mg} mg (strength_mg x amount) exceeds "
            f"the {spec.max_dose_mg} mg single-dose ceiling",
            field="amount",
        )
    if dose.take_home_doses and not spec.take_home_allowed:
        raise errors.InvalidDose(
            f"take_home_doses must be 0 for {dose.medication}; only methadone and "
            f"buprenorphine go home, got {dose.take_home_doses}",
            field="take_home_doses",
        )
    if dose.take_home_doses > MAX_TAKE_HOME_DOSES:
        raise errors.InvalidDose(
            f"take_home_doses must be at most {MAX_TAKE_HOME_DOSES}, got {dose.take_home_doses}",
            field="take_home_doses",
        )


def check_screen(screen: payloads.ScreenResulted) -> None:
    """Results may only name substances the panel tests for."""
    outside = sorted(set(screen.results) - PANELS[screen.panel])
    if outside:
        raise errors.ScreenNotOnPanel(
            f"results for {', '.join(outside)} are not on the {screen.panel} panel"
        )
