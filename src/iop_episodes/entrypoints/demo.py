"""The main job: simulate a realistic IOP program through the public service.

Clients arrive by every entry pathway over the first half of the run, are
assessed (some adolescents, some on Medicare, some needing detox first),
get a plan, attend three program days a week (group, individual, family and
adjunctive sessions, with missed days), take medication on site with
take-home doses, give weekly urine screens, step down when the policy says
so, and are discharged with TEDS reasons and aftercare. Most sign a 42 CFR
Part 2 consent for the county EHR with their plan; every eighth does not.
Medicare clients are recertified every 8 weeks. A few entries are recorded
late and a few are corrected. Everything goes through ``EpisodeService`` on
a ``SimulatedClock``, so a seed fixes every byte.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID, uuid5

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import (
    SCHEDULER_ACTOR,
    CandidateSource,
    run_stepdown_sweep,
)
from iop_episodes.audit.integrity import notifications
from iop_episodes.domain import errors
from iop_episodes.domain.catalog import (
    EXPECTED_WHEN_PRESCRIBED,
    PANELS,
    AftercareKind,
    DischargeReason,
    EntryPathway,
    Medication,
    Modality,
    Payer,
    RecordScope,
    ScreenPanel,
    Substance,
    Topic,
)
from iop_episodes.domain.events import EpisodeEvent
from iop_episodes.domain.state import EpisodeState
from iop_episodes.domain.weeks import iso_week, zone

DEMO_NAMESPACE = UUID("0b6b3f4e-8d0a-5e62-a1c4-7c9e2d5f8a31")
START_MONDAY = date(2026, 1, 5)
PROGRAM_DAYS = (0, 2, 4)  # Monday, Wednesday, Friday
SCREEN_DAY = 2
RECERTIFY_EVERY_DAYS = 56

STAFF = {
    "counselor": ["c.adams", "c.baker"],
    "therapist": ["t.chen"],
    "nurse": ["rn.diaz", "rn.evans"],
    "physician": ["dr.fox"],
    "program_director": ["pd.gray"],
}

Action = Callable[[], Any]

CONSENT_RECIPIENT, CONSENT_PURPOSE = "County EHR", "treatment"
WITHOUT_CONSENT_EVERY = 8
"""Every eighth client (index 7, 15, ...) gives no consent, so exports refuse them."""


@dataclass
class Client:
    index: int
    episode_id: UUID
    intake_day: int
    adolescent: bool
    medicare: bool
    severe_withdrawal: bool
    engagement: float
    relapse_risk: float
    planned_weeks: int
    medication: Medication | None
    substances: list[Substance]
    status: str = "waiting"
    plan_day: int | None = None
    weekly_hours: Decimal = Decimal(0)
    sessions: list[int] = field(default_factory=list)


@dataclass
class DemoResult:
    episodes_by_status: Counter[str]
    events_by_type: Counter[str]
    rejected: Counter[str]
    events: int
    last_week: str = ""
    active_in_last_week: int = 0
    """Clients with a plan during the last week, discharged in it or not: the schedule's count."""


def actor(rng: random.Random, role: str) -> dict[str, str]:
    return {"id": rng.choice(STAFF[role]), "role": role}


class ProgramSimulation:
    """One simulated program; ``run`` drives it day by day."""

    def __init__(
        self,
        service: EpisodeService,
        clock: SimulatedClock,
        *,
        clients: int,
        weeks: int,
        seed: int,
        candidates: CandidateSource | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.service = service
        self.candidates = candidates
        self.clock = clock
        self.rng = random.Random(seed)
        self.weeks = weeks
        self.seed = seed
        self.progress = progress
        self.tz = zone(service.program_timezone)
        self.rejected: Counter[str] = Counter()
        self.late: list[tuple[datetime, Action]] = []
        self.clients = [self._new_client(index, clients) for index in range(clients)]

    # ---- set-up ----------------------------------------------------------

    def _new_client(self, index: int, total: int) -> Client:
        rng = self.rng
        substances = rng.choice(
            [
                [Substance.OPIATES],
                [Substance.FENTANYL, Substance.OPIATES],
                [Substance.ALCOHOL],
                [Substance.ALCOHOL, Substance.CANNABIS],
                [Substance.COCAINE],
                [Substance.METHAMPHETAMINE],
            ]
        )
        opioid = Substance.OPIATES in substances
        medication = None
        if opioid:
            medication = rng.choice([Medication.BUPRENORPHINE, Medication.METHADONE, None])
        elif Substance.ALCOHOL in substances:
            medication = rng.choice([Medication.NALTREXONE, Medication.DISULFIRAM, None])
        intake_window = max(1, self.weeks * 7 // 2)
        adolescent = rng.random() < 0.12
        return Client(
            index=index,
            episode_id=uuid5(DEMO_NAMESPACE, f"{self.seed}:{index}"),
            intake_day=rng.randrange(intake_window) if index >= total // 4 else 0,
            adolescent=adolescent,
            medicare=rng.random() < 0.15 and not adolescent,
            severe_withdrawal=rng.random() < 0.12,
            engagement=rng.uniform(0.7, 1.0),
            relapse_risk=rng.uniform(0.0, 0.12),
            planned_weeks=rng.randint(8, 16),
            medication=medication,
            substances=substances,
        )

    # ---- the day loop ----------------------------------------------------

    def run(self) -> DemoResult:
        for day in range(self.weeks * 7):
            today = START_MONDAY + timedelta(days=day)
            self._day(day, today)
            if self.progress and today.weekday() == 6:
                self.progress(day // 7 + 1, self.weeks)  # weeks simulated, of all
        return self._result()

    def _at(self, today: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(today, time(hour, minute), tzinfo=self.tz)

    def _day(self, day: int, today: date) -> None:
        agenda: list[tuple[datetime, int, Action]] = []
        due_late = [(when, act) for when, act in self.late if when.date() <= today]
        self.late = [(when, act) for when, act in self.late if when.date() > today]
        for order, (when, act) in enumerate(due_late):
            agenda.append((when, order, act))
        if today.weekday() == 0:
            agenda.append((self._at(today, 2), -1, partial(self._sweep, today)))
        for client in self.clients:
            agenda.extend(self._client_day(client, day, today))
        agenda.sort(key=lambda item: (item[0], item[1]))
        for when, _, act in agenda:
            self.clock.set(max(when.astimezone(UTC), self.clock.now()))
            try:
                act()
            except errors.EpisodeRuleError as error:
                self.rejected[type(error).__name__] += 1

    def _client_day(
        self, client: Client, day: int, today: date
    ) -> list[tuple[datetime, int, Action]]:
        act: Action | None = None
        if client.status == "waiting" and day == client.intake_day:
            client.status = "assessed"
            at = self._at(today, 9, self.rng.randrange(60))
            detox_days = self.rng.randint(5, 8) if client.severe_withdrawal else 0
            client.plan_day = day + 1 + detox_days
            act = partial(self._assess, client, at)
        elif client.status == "assessed" and day == client.plan_day:
            client.status = "active"
            at = self._at(today, 10)
            act = partial(self._plan, client, at, today)
        elif client.status == "active":
            return self._active_day(client, day, today)
        return [] if act is None else [(at, client.index, act)]

    def _active_day(
        self, client: Client, day: int, today: date
    ) -> list[tuple[datetime, int, Action]]:
        assert client.plan_day is not None  # noqa: S101  (active clients have a plan day)
        completed = day - client.plan_day >= client.planned_weeks * 7
        dropped = today.weekday() == 6 and (self.rng.random() < (1 - client.engagement) / 6)
        if completed or dropped:
            at = self._at(today, 16 if completed else 12)
            client.status = "discharged"
            act = partial(self._discharge, client, at, completed=completed)
            return [(at, client.index, act)]
        recertification = self._recertification(client, day, today)
        if today.weekday() not in PROGRAM_DAYS:
            return recertification
        return recertification + self._program_day(client, today)

    def _recertification(
        self, client: Client, day: int, today: date
    ) -> list[tuple[datetime, int, Action]]:
        """Medicare clients are recertified every 8 weeks, inside the 60 days allowed."""
        assert client.plan_day is not None  # noqa: S101  (active clients have a plan day)
        since = day - client.plan_day
        if not client.medicare or since == 0 or since % RECERTIFY_EVERY_DAYS:
            return []
        at = self._at(today, 9)

        def recertify() -> None:
            self.service.recertify(
                {
                    "episode_id": client.episode_id,
                    "command_id": f"demo-{self.seed}-{client.index}-recert-{since}",
                    "actor": {"id": "dr.fox", "role": "physician"},
                    "occurred_at": at,
                    "physician_id": "dr.fox",
                    "certified_on": today,
                    "certified_weekly_hours": max(client.weekly_hours, Decimal(9)),
                }
            )

        return [(at, client.index, recertify)]

    def _program_day(self, client: Client, today: date) -> list[tuple[datetime, int, Action]]:
        key = client.index
        if self.rng.random() > client.engagement:
            return []  # missed the whole program day
        items: list[tuple[datetime, int, Action]] = []
        start = self._at(today, 17, 30)
        for modality, minutes in self._sessions_for(client, today):
            at = start
            start += timedelta(minutes=minutes)
            items.append((start, key, self._session_action(client, at, modality, minutes)))
        if client.medication is not None:
            at = self._at(today, 17)
            items.append((at, key, partial(self._dispense, client, at)))
        if today.weekday() == SCREEN_DAY:
            at = self._at(today, 17, 10)
            items.append((at, key, partial(self._screen, client, at)))
        return items

    def _sessions_for(self, client: Client, today: date) -> list[tuple[Modality, int]]:
        weekly_minutes = int(client.weekly_hours * 60)
        extras: list[tuple[Modality, int]] = []
        if today.weekday() == 2:
            extras.append((Modality.INDIVIDUAL, 60))
        if today.weekday() == 4 and today.isocalendar()[1] % 2 == 0:
            extras.append((Modality.FAMILY, 60))
        if today.weekday() == 0 and weekly_minutes >= 9 * 60:
            extras.append(
                (
                    self.rng.choice([Modality.YOGA, Modality.ART, Modality.MEDITATION]),
                    60,
                )
            )
        group_week = weekly_minutes - 60 - 30 - (60 if weekly_minutes >= 9 * 60 else 0)
        group_minutes = max(30, group_week // len(PROGRAM_DAYS))
        return [(Modality.GROUP, group_minutes), *extras]

    # ---- commands --------------------------------------------------------

    def _assess(self, client: Client, at: datetime) -> None:
        rng = self.rng
        age = rng.randint(14, 17) if client.adolescent else rng.randint(19, 70)
        if client.medicare:
            age = max(age, 66)
        pathway = rng.choice(list(EntryPathway))
        payer = (
            Payer.MEDICARE
            if client.medicare
            else rng.choice(
                [
                    Payer.MEDICAID,
                    Payer.PRIVATE_INSURANCE,
                    Payer.PRIVATE_INSURANCE,
                    Payer.SELF_PAY,
                ]
            )
        )
        birth = date(at.year - age, rng.randint(1, 12), rng.randint(1, 28))
        if birth >= at.date().replace(year=at.year - age):
            birth = birth.replace(year=birth.year - 1)
        self.service.assess(
            {
                "episode_id": client.episode_id,
                "command_id": f"demo-{self.seed}-{client.index}-assess",
                "actor": actor(rng, "counselor"),
                "occurred_at": at,
                "client_ref": f"MRN-{self.seed:03d}-{client.index:05d}",
                "birth_date": birth,
                "entry_pathway": pathway,
                "payer": payer,
                "asam": {
                    "intoxication_withdrawal": 3 if client.severe_withdrawal else rng.randint(0, 2),
                    "biomedical": rng.randint(0, 2),
                    "emotional_behavioral_cognitive": rng.randint(0, 3),
                    "readiness_to_change": rng.randint(1, 3),
                    "relapse_potential": rng.randint(1, 3),
                    "recovery_environment": rng.randint(0, 3),
                },
                "primary_substances": client.substances,
                "substance_use_history": f"Uses {', '.join(client.substances)}.",
                "outside_therapist": rng.random() < 0.4,
                "has_transport": rng.random() < 0.9,
                "supportive_network": rng.random() < 0.8,
            }
        )

    def _consent(self, client: Client, at: datetime) -> None:
        """Most clients sign a Part 2 consent for the county EHR with their plan (to year 5)."""
        self.service.record_consent(
            {
                "episode_id": client.episode_id,
                "command_id": f"demo-{self.seed}-{client.index}-consent",
                "actor": {"id": STAFF["counselor"][0], "role": "counselor"},
                "occurred_at": at,
                "recipient": CONSENT_RECIPIENT,
                "purpose": CONSENT_PURPOSE,
                "scope": list(RecordScope),
                "expires_on": date(at.year + 5, 12, 31),
                "note": "Signed on the program's 42 CFR Part 2 consent form.",
            }
        )

    def _plan(self, client: Client, at: datetime, today: date) -> None:
        rng = self.rng
        hours = Decimal(rng.choice([6, 9]) if client.adolescent else rng.choice([9, 12, 12, 15]))
        non_group = {Modality.INDIVIDUAL: Decimal(1), Modality.FAMILY: Decimal("0.5")}
        if hours >= 9:
            non_group[Modality.YOGA] = Decimal(1)
        modality_hours = {Modality.GROUP: hours - sum(non_group.values()), **non_group}
        detox = today - timedelta(days=1) if client.severe_withdrawal else None
        self.service.create_plan(
            {
                "episode_id": client.episode_id,
                "command_id": f"demo-{self.seed}-{client.index}-plan",
                "actor": actor(rng, "physician" if client.medicare else "counselor"),
                "occurred_at": at,
                "weekly_hours": hours,
                "days_per_week": 3,
                "modality_hours": modality_hours,
                "topics": rng.sample(list(Topic), 4),
                "medications": [client.medication] if client.medication else [],
                "screens_per_week": 1,
                "certifying_physician_id": "dr.fox" if client.medicare else None,
                "detox_completed_on": detox,
            }
        )
        client.weekly_hours = hours
        if client.index % WITHOUT_CONSENT_EVERY != WITHOUT_CONSENT_EVERY - 1:
            self._consent(client, at)

    def _session_action(
        self, client: Client, at: datetime, modality: Modality, minutes: int
    ) -> Action:
        def record() -> None:
            receipt = self.service.record_session(
                {
                    "episode_id": client.episode_id,
                    "actor": actor(
                        self.rng,
                        "therapist" if modality != Modality.GROUP else "counselor",
                    ),
                    "occurred_at": at,
                    "modality": modality,
                    "minutes": minutes,
                    "topics": self.rng.sample(list(Topic), 2),
                }
            )
            client.sessions.append(receipt.version)
            self._maybe_correct(client, at, receipt.version, modality, minutes)

        if self.rng.random() < 0.03:  # charted late, after the next day
            late_at = at + timedelta(hours=27)
            self.late.append((late_at, record))
            return lambda: None
        return record

    def _maybe_correct(
        self,
        client: Client,
        at: datetime,
        version: int,
        modality: Modality,
        minutes: int,
    ) -> None:
        roll = self.rng.random()
        if roll >= 0.02:
            return
        when = at + timedelta(days=1, hours=2)
        if roll < 0.005:
            cmd: dict[str, Any] = {
                "action": "void",
                "reason": "Charted for the wrong client.",
            }
        else:
            cmd = {
                "action": "amend",
                "reason": "Session ended early; duration corrected.",
                "amended": {"modality": modality, "minutes": minutes - 30},
            }
        correction = {
            "episode_id": client.episode_id,
            "actor": actor(self.rng, "counselor"),
            "occurred_at": when,
            "target_version": version,
            **cmd,
        }
        self.late.append((when, partial(self.service.correct_entry, correction)))

    def _dispense(self, client: Client, at: datetime) -> None:
        rng = self.rng
        med = client.medication
        take_home = 0
        if med == Medication.BUPRENORPHINE:
            form = {
                "strength_mg": 8,
                "dose_form": "film",
                "amount": rng.choice([1, 2]),
                "unit": "film",
                "route": "sublingual",
            }
            take_home = 1 if at.weekday() != 4 else 2
        elif med == Medication.METHADONE:
            form = {
                "strength_mg": 10,
                "dose_form": "liquid",
                "amount": rng.choice([6, 8, 10]),
                "unit": "mL",
                "route": "oral",
            }
            take_home = 1 if at.weekday() != 4 else 2
        elif med == Medication.NALTREXONE:
            form = {
                "strength_mg": 50,
                "dose_form": "tablet",
                "amount": 1,
                "unit": "tablet",
                "route": "oral",
            }
        else:
            form = {
                "strength_mg": 250,
                "dose_form": "tablet",
                "amount": 1,
                "unit": "tablet",
                "route": "oral",
            }
        self.service.dispense_medication(
            {
                "episode_id": client.episode_id,
                "actor": actor(rng, "nurse"),
                "occurred_at": at,
                "medication": med,
                "lot": f"LOT-{at:%y%m}-{rng.randrange(100):02d}",
                "take_home_doses": take_home,
                **form,
            }
        )

    def _screen(self, client: Client, at: datetime) -> None:
        rng = self.rng
        panel = ScreenPanel.TEN
        results = dict.fromkeys(sorted(PANELS[panel]), "negative")
        for substance, medication in EXPECTED_WHEN_PRESCRIBED.items():
            if client.medication == medication:
                results[substance] = "positive"
        relapsed = rng.random() < client.relapse_risk
        if relapsed:
            used = next((s for s in client.substances if s in PANELS[panel]), Substance.COCAINE)
            results[used] = "positive"
        self.service.record_screen(
            {
                "episode_id": client.episode_id,
                "actor": actor(rng, "nurse"),
                "occurred_at": at,
                "panel": panel,
                "results": results,
            }
        )

    def _discharge(self, client: Client, at: datetime, *, completed: bool) -> None:
        rng = self.rng
        if completed:
            reason = DischargeReason.TREATMENT_COMPLETED
        else:
            reason = rng.choice(
                [
                    DischargeReason.DROPPED_OUT,
                    DischargeReason.DROPPED_OUT,
                    DischargeReason.TERMINATED_BY_FACILITY,
                    DischargeReason.TRANSFERRED,
                    DischargeReason.INCARCERATED,
                    DischargeReason.OTHER,
                ]
            )
        self.service.discharge(
            {
                "episode_id": client.episode_id,
                "actor": actor(rng, "counselor"),
                "occurred_at": at,
                "reason": reason,
                "summary": f"Discharged: TEDS reason {int(reason)}.",
                "transferred_to": "RES-NORTH" if reason == DischargeReason.TRANSFERRED else None,
            }
        )
        if reason not in {
            DischargeReason.TREATMENT_COMPLETED,
            DischargeReason.TRANSFERRED,
        }:
            return
        kinds = [
            AftercareKind.THERAPIST_APPOINTMENT,
            AftercareKind.TWELVE_STEP_MEETING,
            AftercareKind.RELAPSE_PREVENTION_PLAN,
        ]
        if client.medication is not None:
            kinds.append(AftercareKind.CONTINUED_MEDICATION)
        for offset, kind in enumerate(kinds):
            self.service.schedule_aftercare(
                {
                    "episode_id": client.episode_id,
                    "actor": actor(rng, "counselor"),
                    "occurred_at": at,
                    "kind": kind,
                    "scheduled_for": at + timedelta(days=7 * (offset + 1)),
                    "provider": "Community clinic"
                    if kind != AftercareKind.TWELVE_STEP_MEETING
                    else "Local AA/NA group",
                }
            )

    # ---- weekly step-down sweep -------------------------------------------

    def _sweep(self, today: date) -> None:
        """Monday 02:00: the real step-down job, as the scheduler would run it."""
        if self.candidates is None:
            return
        summary = run_stepdown_sweep(self.service, self.candidates, self._at(today, 2))
        by_id = {client.episode_id: client for client in self.clients}
        for outcome in summary.outcomes:
            decision = outcome.decision
            if outcome.outcome == "stepped-down" and decision and decision.to_weekly_hours:
                by_id[outcome.episode_id].weekly_hours = decision.to_weekly_hours

    # ---- bookkeeping -------------------------------------------------------

    def _result(self) -> DemoResult:
        by_type: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        events = active_in_last_week = 0
        timezone = self.service.program_timezone
        last_week = iso_week(self.clock.now(), timezone)
        for client in self.clients:
            if client.status == "waiting":
                continue
            state = self.service.episode(client.episode_id)
            by_status[state.status] += 1
            active_in_last_week += _active_during(state, last_week)
            for entry in self.service.history(client.episode_id):
                by_type[type(entry).__name__] += 1
                events += 1
        return DemoResult(by_status, by_type, self.rejected, events, last_week, active_in_last_week)


def _active_during(state: EpisodeState, week: str) -> bool:
    """In the program that week: planned by its end, not discharged before it began."""
    timezone = state.program_timezone
    if state.plan_started_at is None or iso_week(state.plan_started_at, timezone) > week:
        return False
    return state.discharged_at is None or iso_week(state.discharged_at, timezone) >= week


def demo_clock() -> SimulatedClock:
    return SimulatedClock(datetime.combine(START_MONDAY, time(0), tzinfo=UTC))


DEMO_ASSESSMENT = re.compile(r"demo-(\d+)-(\d+)-assess")
DEMO_ACTORS = frozenset(
    {member for members in STAFF.values() for member in members} | {SCHEDULER_ACTOR["id"]}
)


def not_demo_data(service: EpisodeService) -> str | None:
    """Why the store holds something the demo did not write, or None when it holds only demo data.

    A demo episode's id is derived from the demo's namespace and its
    assessment's ``command_id``; every entry is by a demo staff member or
    the step-down job.
    """
    for notification in notifications(service):
        event = service.mapper.to_domain_event(notification)
        episode = event.originator_id
        if not isinstance(event, EpisodeEvent):
            return f"entry {notification.id} is not an episode entry"
        if event.actor.get("id") not in DEMO_ACTORS:
            return f"episode {episode} has an entry by {event.actor.get('id')!r}, not demo staff"
        if event.originator_version == 1:
            found = DEMO_ASSESSMENT.fullmatch(str(getattr(event, "command_id", "")))
            if found is None or episode != uuid5(DEMO_NAMESPACE, f"{found[1]}:{found[2]}"):
                return f"episode {episode} is not a demo episode"
    return None
