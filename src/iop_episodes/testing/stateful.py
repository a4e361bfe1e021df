"""A hypothesis state machine that checks the real service against a model.

``EpisodeMachine`` sends random valid and invalid commands for one episode
through ``EpisodeService`` and predicts, from a deliberately simple model,
which succeed and which error each one raises: late entries (before and
after a discharge), take-home methadone by day of treatment, session and
per-day limits, and Medicare recertification included. After every step it checks
the invariants: weekly hours inside their level's band, nothing but
aftercare and corrections after discharge, the episode rebuilt from the
store (with and without snapshots) equal to the cached one, and every chain
verifying. Each step says what it sent and expected with hypothesis's
``note()``, so a failure reads as a story. The machine takes its store in
``__init__``; embedders run it against their own store::

    from hypothesis.stateful import run_state_machine_as_test
    from iop_episodes.testing.stateful import EpisodeMachine

    def test_on_my_store():
        url = "postgresql://postgres@127.0.0.1:5432/test?schema=mine"
        run_state_machine_as_test(lambda: EpisodeMachine(url))

(``EpisodeMachine.TestCase`` runs it in memory.)

Needs the ``hypothesis`` package (the ``dev`` extra installs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from eventsourcing.application import Repository
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import verify_episode
from iop_episodes.domain import errors
from iop_episodes.domain.catalog import AgeGroup, Level, band, level_for_hours
from iop_episodes.domain.episode import Episode
from iop_episodes.domain.permissions import ALLOWED_ROLES
from iop_episodes.domain.state import EpisodeState
from iop_episodes.domain.weeks import iso_week, zone

ROLES = (
    "counselor",
    "therapist",
    "nurse",
    "physician",
    "program_director",
    "scheduler",
    "auditor",
)
MAY = ALLOWED_ROLES  # the domain's table; tests/test_roles.py checks it against the README
CORRECTABLE = {
    "SessionAttended",
    "MedicationDispensed",
    "ScreenResulted",
    "AftercareScheduled",
}
TIMEZONE = "America/Chicago"
AFTER_DISCHARGE = {"AftercareScheduled", "EntryCorrected", "Discharged"}
MAX_SESSION_MINUTES = 720
DAY_MINUTES = 24 * 60
CARE = {"SessionAttended", "MedicationDispensed", "ScreenResulted", "StepDown", "Recertified"}


def methadone_take_home_limit(day_of_treatment: int) -> int:
    """42 CFR 8.12(i) (2024), written out again: 7 days' supply, 14 from day 15, 28 from 31."""
    if day_of_treatment >= 31:
        return 28
    if day_of_treatment >= 15:
        return 14
    return 7


def roles_favouring(role: str) -> st.SearchStrategy[str]:
    """Any role, but the allowed one half the time, so commands get deep."""
    return st.one_of(st.just(role), st.sampled_from(ROLES))


START = datetime(2026, 10, 26, 15, 0, tzinfo=UTC)


@dataclass
class Model:
    """What a careful reader of the README's rules expects the episode to be."""

    age_group: AgeGroup = AgeGroup.ADULT
    severe: bool = False
    assessed_at: datetime | None = None
    plan_at: datetime | None = None
    hours: Decimal | None = None
    level: Level | None = None
    step_week: str | None = None
    discharged_at: datetime | None = None
    medicare: bool = False
    certified: list[date] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    voided: set[int] = field(default_factory=set)
    care: dict[int, tuple[datetime, str, int]] = field(default_factory=dict)
    """version -> (occurred_at, type, minutes) of every care entry."""

    @property
    def discharged(self) -> bool:
        return self.discharged_at is not None

    def live_care(self) -> list[tuple[int, datetime, str, int]]:
        return [(v, *entry) for v, entry in self.care.items() if v not in self.voided]

    def minutes_on(self, day: date, *, besides: int | None = None) -> int:
        return sum(
            minutes
            for version, at, kind, minutes in self.live_care()
            if kind == "SessionAttended"
            and version != besides
            and at.astimezone(zone(TIMEZONE)).date() == day
        )


class EpisodeMachine(RuleBasedStateMachine):
    """The real service on ``store_url`` against the model; each run opens one new episode."""

    def __init__(self, store_url: str = "memory://") -> None:
        super().__init__()
        self.clock = SimulatedClock(START)
        self.service = EpisodeService(store_url, clock=self.clock, timezone=TIMEZONE)
        self.model = Model()
        self.episode_id: Any = None

    def teardown(self) -> None:
        self.service.close()

    # ---- running a command against its prediction -----------------------

    def check(
        self,
        expected: type[Exception] | None,
        event_type: str,
        call: Any,
        care: tuple[datetime, int] | None = None,
    ) -> None:
        """Run the command; on success note it (and its time and minutes, for care)."""
        note(f"{event_type}: expect {'success' if expected is None else expected.__name__}")
        if expected is None:
            call()
            self.model.entries.append(event_type)
            if care is not None:
                self.model.care[len(self.model.entries)] = (care[0], event_type, care[1])
            return
        before = len(self.model.entries)
        try:
            call()
        except expected:
            pass
        else:
            msg = f"{event_type}: expected {expected.__name__}, the command succeeded"
            raise AssertionError(msg)
        stored = len(list(self.service.recorder.select_events(self.episode_id)))
        assert stored == before, f"{event_type} refused but {stored - before} stored"

    def common_error(self, role: str, event_type: str, at: datetime) -> type[Exception] | None:
        if role not in MAY[event_type]:
            return errors.PermissionDenied
        if at > self.clock.now() + timedelta(minutes=5):
            return errors.OccurredInFuture
        if self.model.assessed_at is not None and at < self.model.assessed_at:
            return errors.OccurredBeforeStart
        discharged_at = self.model.discharged_at
        if discharged_at is not None and event_type not in AFTER_DISCHARGE and at > discharged_at:
            return errors.EpisodeDischarged  # late entries from before the discharge are fine
        return None

    def care_error(self, role: str, event_type: str, at: datetime) -> type[Exception] | None:
        error = self.common_error(role, event_type, at)
        if error is not None:
            return error
        if self.model.plan_at is None:
            return errors.PlanRequired
        if at < self.model.plan_at:
            return errors.OccurredBeforeStart
        return None

    def envelope(self, role: str, offset: timedelta) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "actor": {"id": f"staff.{role}", "role": role},
            "occurred_at": self.clock.now() + offset,
        }

    # ---- rules -----------------------------------------------------------

    @initialize(
        adolescent=st.booleans(),
        severe=st.booleans(),
        detox_at_intake=st.booleans(),
        planned=st.sampled_from([True, True, True, False]),
        medicare=st.booleans(),
    )
    def assess(
        self,
        adolescent: bool,  # noqa: FBT001  (hypothesis passes booleans)
        severe: bool,  # noqa: FBT001
        detox_at_intake: bool,  # noqa: FBT001
        planned: bool,  # noqa: FBT001
        medicare: bool,  # noqa: FBT001
    ) -> None:
        """Open the episode; most runs then plan at once so that care gets deep."""
        born = date(2011, 1, 1) if adolescent else date(1980, 1, 1)
        receipt = self.service.assess(
            {
                "actor": {"id": "c.one", "role": "counselor"},
                "occurred_at": self.clock.now(),
                "client_ref": "MRN-SM-1",
                "birth_date": born,
                "entry_pathway": "primary_treatment",
                "payer": "medicare" if medicare else "self_pay",
                "asam": {
                    "intoxication_withdrawal": 3 if severe else 1,
                    "biomedical": 0,
                    "emotional_behavioral_cognitive": 1,
                    "readiness_to_change": 1,
                    "relapse_potential": 1,
                    "recovery_environment": 1,
                },
                "primary_substances": ["alcohol"],
                "detox_completed_on": date(2026, 10, 20) if detox_at_intake else None,
            }
        )
        self.episode_id = receipt.episode_id
        self.model = Model(
            age_group=AgeGroup.ADOLESCENT if adolescent else AgeGroup.ADULT,
            severe=severe and not detox_at_intake,
            assessed_at=self.clock.now(),
            medicare=medicare,
            entries=["Assessed"],
        )
        if planned:
            self.clock.advance(timedelta(hours=1))
            self.create_plan(hours="12", role="counselor", detox=True)

    @rule(days=st.sampled_from([0, 0, 1, 2, 7, 9, 20]), hours=st.integers(0, 23))
    def time_passes(self, days: int, hours: int) -> None:
        self.clock.advance(timedelta(days=days, hours=hours))

    @rule(
        hours=st.sampled_from(["5", "6", "9", "12", "12", "15", "19.5", "20"]),
        role=roles_favouring("counselor"),
        detox=st.booleans(),
    )
    def create_plan(self, hours: str, role: str, detox: bool) -> None:  # noqa: FBT001  (hypothesis passes booleans)
        command = {
            **self.envelope(role, timedelta(0)),
            "weekly_hours": hours,
            "days_per_week": 3,
            "medications": ["naltrexone", "methadone"],
            "detox_completed_on": date(2026, 10, 25) if detox else None,
            "certifying_physician_id": "dr.fox" if self.model.medicare else None,
        }
        expected = self.common_error(role, "PlanCreated", command["occurred_at"])
        if expected is None:
            if self.model.plan_at is not None:
                expected = errors.PlanAlreadyCreated
            elif self.model.severe and not detox:
                expected = errors.DetoxRequired
            elif not band(Level.INTENSIVE_OUTPATIENT, self.model.age_group).admits(Decimal(hours)):
                expected = errors.HoursOutOfBand
            elif self.model.medicare and Decimal(hours) < 9:
                expected = errors.CertificationInvalid  # certified hours default to the plan's
        self.check(expected, "PlanCreated", lambda: self.service.create_plan(command))
        if expected is None:
            if self.model.medicare:
                self.model.certified = [self.local_day(command["occurred_at"])]
            self.model.plan_at = command["occurred_at"]
            self.model.hours = Decimal(hours)
            self.model.level = Level.INTENSIVE_OUTPATIENT

    @staticmethod
    def local_day(moment: datetime) -> date:
        return moment.astimezone(zone(TIMEZONE)).date()

    @rule(
        role=roles_favouring("therapist"),
        minutes=st.sampled_from([5, 60, 180, 480, 720, 721]),
        offset=st.sampled_from(
            [timedelta(0), timedelta(hours=-30), timedelta(days=-3), timedelta(minutes=10)]
        ),
    )
    def record_session(self, role: str, minutes: int, offset: timedelta) -> None:
        command = {
            **self.envelope(role, offset),
            "modality": "group",
            "minutes": minutes,
        }
        at = command["occurred_at"]
        expected = self.care_error(role, "SessionAttended", at)
        if expected is None and minutes > MAX_SESSION_MINUTES:
            expected = errors.SessionTooLong
        if expected is None and self.model.minutes_on(self.local_day(at)) + minutes > DAY_MINUTES:
            expected = errors.DayOverbooked
        self.check(
            expected,
            "SessionAttended",
            lambda: self.service.record_session(command),
            care=(at, minutes),
        )

    @rule(
        role=roles_favouring("nurse"),
        medication=st.sampled_from(["naltrexone", "disulfiram", "methadone"]),
        take_home=st.sampled_from([0, 7, 8, 14, 15, 28, 29]),
    )
    def dispense(self, role: str, medication: str, take_home: int) -> None:
        form = ("liquid", "mL") if medication == "methadone" else ("tablet", "tablet")
        command = {
            **self.envelope(role, timedelta(0)),
            "medication": medication,
            "strength_mg": {"naltrexone": 50, "disulfiram": 250, "methadone": 10}[medication],
            "dose_form": form[0],
            "amount": 8 if medication == "methadone" else 1,
            "unit": form[1],
            "route": "oral",
            "lot": "LOT-1",
            "take_home_doses": take_home if medication == "methadone" else 0,
        }
        at = command["occurred_at"]
        expected = self.care_error(role, "MedicationDispensed", at)
        if expected is None and medication == "disulfiram":
            expected = errors.MedicationNotInPlan
        if expected is None and medication == "methadone":
            assert self.model.plan_at is not None
            day = (self.local_day(at) - self.local_day(self.model.plan_at)).days
            if take_home > 28:
                expected = errors.InvalidDose
            elif take_home > methadone_take_home_limit(day):
                expected = errors.TakeHomeLimitExceeded
        self.check(
            expected,
            "MedicationDispensed",
            lambda: self.service.dispense_medication(command),
            care=(at, 0),
        )

    @rule(role=roles_favouring("nurse"), positive=st.booleans())
    def screen(self, role: str, positive: bool) -> None:  # noqa: FBT001  (hypothesis passes booleans)
        command = {
            **self.envelope(role, timedelta(0)),
            "panel": "5-panel",
            "results": {"cocaine": "positive" if positive else "negative"},
        }
        at = command["occurred_at"]
        expected = self.care_error(role, "ScreenResulted", at)
        self.check(
            expected, "ScreenResulted", lambda: self.service.record_screen(command), care=(at, 0)
        )

    @rule(
        role=roles_favouring("physician"),
        hours=st.sampled_from(["3", "6", "9", "12", "16"]),
    )
    def step_down(self, role: str, hours: str) -> None:
        target = hours
        command = {
            **self.envelope(role, timedelta(0)),
            "to_weekly_hours": target,
            "reason": "Progress in treatment.",
        }
        at = command["occurred_at"]
        expected = self.care_error(role, "StepDown", at)
        week = iso_week(at, TIMEZONE)
        if expected is None:
            assert self.model.hours is not None
            if Decimal(target) >= self.model.hours:
                expected = errors.StepDownNotLower
            elif week == self.model.step_week:
                expected = errors.StepDownAlreadyThisWeek
        self.check(expected, "StepDown", lambda: self.service.step_down(command), care=(at, 0))
        if expected is None:
            self.model.hours = Decimal(target)
            self.model.level = level_for_hours(Decimal(target), self.model.age_group)
            self.model.step_week = week

    @rule(
        role=roles_favouring("physician"),
        days_ago=st.sampled_from([0, 2]),
        hours=st.sampled_from(["9", "12", "6"]),
    )
    def recertify(self, role: str, days_ago: int, hours: str) -> None:
        command = {
            **self.envelope(role, timedelta(0)),
            "physician_id": "dr.fox",
            "certified_on": self.local_day(self.clock.now()) - timedelta(days=days_ago),
            "certified_weekly_hours": hours,
        }
        at = command["occurred_at"]
        expected = self.care_error(role, "Recertified", at)
        if expected is None and not self.model.medicare:
            expected = errors.CertificationInvalid
        if expected is None and Decimal(hours) < 9:
            expected = errors.CertificationInvalid
        if expected is None and command["certified_on"] < self.model.certified[0]:
            expected = errors.CertificationInvalid
        self.check(expected, "Recertified", lambda: self.service.recertify(command), care=(at, 0))
        if expected is None:
            self.model.certified.append(command["certified_on"])

    @precondition(lambda self: len(self.model.entries) >= 12)  # let care happen first
    @rule(role=roles_favouring("program_director"), reason=st.integers(1, 7))
    def discharge(self, role: str, reason: int) -> None:
        command = {**self.envelope(role, timedelta(0)), "reason": reason}
        at = command["occurred_at"]
        expected = self.common_error(role, "Discharged", at)
        if expected is None and self.model.discharged:
            expected = errors.AlreadyDischarged
        if expected is None and any(when > at for _, when, _, _ in self.model.live_care()):
            expected = errors.DischargeBeforeCare  # care recorded (a little ahead) after it
        self.check(expected, "Discharged", lambda: self.service.discharge(command))
        if expected is None:
            self.model.discharged_at = at

    @rule(role=roles_favouring("counselor"))
    def aftercare(self, role: str) -> None:
        command = {**self.envelope(role, timedelta(0)), "kind": "twelve_step_meeting"}
        expected = self.common_error(role, "AftercareScheduled", command["occurred_at"])
        if expected is None and self.model.plan_at is None:
            expected = errors.PlanRequired
        self.check(
            expected,
            "AftercareScheduled",
            lambda: self.service.schedule_aftercare(command),
        )

    @precondition(lambda self: len(self.model.entries) > 1)
    @rule(role=roles_favouring("counselor"), data=st.data(), void=st.booleans())
    def correct(self, role: str, data: st.DataObject, void: bool) -> None:  # noqa: FBT001  (hypothesis passes booleans)
        versions = st.integers(1, len(self.model.entries) + 1)
        sessions = [
            version
            for version, kind in enumerate(self.model.entries, start=1)
            if kind == "SessionAttended"
        ]
        if sessions:  # aim at correctable entries, voided ones included
            versions = st.one_of(versions, st.sampled_from(sessions))
        target = data.draw(versions, label="version")
        command: dict[str, Any] = {
            **self.envelope(role, timedelta(0)),
            "target_version": target,
            "action": "void" if void else "amend",
            "reason": "Correction.",
        }
        target_type = self.model.entries[target - 1] if target <= len(self.model.entries) else None
        if not void:
            command["amended"] = {"modality": "individual", "minutes": 45}
        expected = self.common_error(role, "EntryCorrected", command["occurred_at"])
        if expected is None and (target_type not in CORRECTABLE or target in self.model.voided):
            expected = errors.CorrectionInvalid
        if expected is None and not void and target_type != "SessionAttended":
            expected = errors.CorrectionInvalid  # a session payload amends only sessions
        if expected is None and not void:
            at = self.model.care[target][0]
            if self.model.minutes_on(self.local_day(at), besides=target) + 45 > DAY_MINUTES:
                expected = errors.DayOverbooked
        self.check(expected, "EntryCorrected", lambda: self.service.correct_entry(command))
        if expected is None and void:
            self.model.voided.add(target)
        elif expected is None:
            at, kind, _ = self.model.care[target]
            self.model.care[target] = (at, kind, 45)

    # ---- invariants --------------------------------------------------------

    @invariant()
    def state_matches_the_model(self) -> None:
        if self.episode_id is None:
            return
        state = self.service.episode(self.episode_id)
        assert state.version == len(self.model.entries)
        assert state.weekly_hours == self.model.hours
        assert state.level == self.model.level
        assert (state.status == "discharged") == self.model.discharged
        assert set(state.voided_versions) == self.model.voided

    @invariant()
    def no_local_day_holds_more_than_24_hours(self) -> None:
        days = {self.local_day(at) for _, at, _, _ in self.model.live_care()}
        assert all(self.model.minutes_on(day) <= DAY_MINUTES for day in days)

    @invariant()
    def weekly_hours_inside_their_level_band(self) -> None:
        if self.episode_id is None or self.model.level is None:
            return
        state = self.service.episode(self.episode_id)
        assert state.level is not None
        assert state.weekly_hours is not None
        assert band(state.level, state.age_group).admits(state.weekly_hours)

    @invariant()
    def nothing_but_aftercare_and_corrections_happened_after_discharge(self) -> None:
        if "Discharged" not in self.model.entries:
            return
        history = list(self.service.history(self.episode_id))
        discharged = next(e for e in history if type(e).__name__ == "Discharged")
        after = {type(e).__name__ for e in history if e.occurred_at > discharged.occurred_at}
        assert after <= {"AftercareScheduled", "EntryCorrected"}

    @invariant()
    def rebuilt_from_the_store_equals_the_live_episode(self) -> None:
        if self.episode_id is None:
            return
        live: Episode = self.service.repository.get(self.episode_id)
        for snapshots in (self.service.snapshots, None):
            rebuilt: Episode = Repository(self.service.events, snapshot_store=snapshots).get(
                self.episode_id
            )
            assert EpisodeState.of(rebuilt) == EpisodeState.of(live)
            assert rebuilt.__dict__ == live.__dict__

    @invariant()
    def chains_verify(self) -> None:
        if self.episode_id is not None:
            assert verify_episode(self.service, self.episode_id) == []
