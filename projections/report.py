"""What an auditor's episode report says, built from the episode's own entries.

The report does not read the shared views: the episode's entries are read
from the store, their chain verified, and projected into private in-memory
views, so what it shows is what the entries say (up to ``--as-of``) even when
the views lag or were edited. ``projections.report_html`` renders it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from eventsourcing.persistence import Tracking

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.checkpoints import Checkpoint
from iop_episodes.audit.integrity import verify_records
from iop_episodes.domain.values import Model
from iop_episodes.domain.weeks import zone
from projections import audit
from projections.history_text import ShownEntry, with_corrections
from projections.schedule import EpisodeSchedule, TaperStep, WeekSchedule, episode_schedule
from projections.views import UPSTREAM, MemoryEpisodeViews

MarkKind = Literal["step-down", "unexpected-positive", "certification-lapsed", "other"]


class WeekMark(Model):
    """Something the chart marks on an ISO week; any source can add marks of any kind."""

    week: str
    kind: MarkKind
    label: str


class MedicationSupply(Model):
    medication: str
    in_plan: bool
    doses_dispensed: int
    take_home_doses: int
    last_dispensed_at: datetime | None


class Verification(Model):
    verdict: Literal["ok", "FAILED"]
    entries_checked: int
    chain_head: str
    findings: tuple[str, ...]


class CheckpointRef(Model):
    """The signed checkpoint whose log covers this episode's entries (when the store has one)."""

    log_size: int
    root_hash: str
    made_at: datetime
    key_id: str

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> CheckpointRef:
        return cls(
            log_size=checkpoint.size,
            root_hash=checkpoint.root,
            made_at=datetime.fromisoformat(checkpoint.time),
            key_id=checkpoint.key_id,
        )


class EpisodeSummary(Model):
    episode_id: UUID
    client_ref: str
    status: str
    level: str | None
    age_group: str
    payer: str
    weekly_hours: Decimal | None
    medications: tuple[str, ...]
    assessed_at: datetime
    plan_started_at: datetime | None
    discharged_at: datetime | None
    discharge_reason: int | None
    step_downs: int
    version: int
    program_timezone: str


class AuditReport(Model):
    """Everything ``iop audit report`` writes, times in ``timezone``."""

    summary: EpisodeSummary
    timezone: str
    generated_at: datetime
    as_of: datetime | None
    weeks: tuple[WeekSchedule, ...]
    taper: tuple[TaperStep, ...]
    marks: tuple[WeekMark, ...]
    medications: tuple[MedicationSupply, ...]
    entries: tuple[ShownEntry, ...]
    verification: Verification
    checkpoint: CheckpointRef | None = None


def week_marks(schedule: EpisodeSchedule) -> list[WeekMark]:
    """Step-downs, unexpected positive screens and lapsed certification, by week."""
    marks = [
        WeekMark(
            week=step.week,
            kind="step-down",
            label=f"step-down {step.from_hours} to {step.to_hours} h (v{step.version})",
        )
        for step in schedule.taper
    ]
    marks.extend(
        WeekMark(
            week=week.week,
            kind="unexpected-positive",
            label=f"{week.unexpected_positive_screens} unexpected positive screen(s)",
        )
        for week in schedule.weeks
        if week.unexpected_positive_screens
    )
    # Schedules that know Medicare recertification (issue 12) flag lapsed weeks;
    # read the flag where the week has it, so the chart marks them with no change here.
    marks.extend(
        WeekMark(week=week.week, kind="certification-lapsed", label="certification lapsed")
        for week in schedule.weeks
        if getattr(week, "certification_lapsed", False)
    )
    return marks


def medication_supply(
    entries: Sequence[ShownEntry], planned: Sequence[str]
) -> list[MedicationSupply]:
    """Doses and take-home doses per medication, voided doses left out, amendments applied."""
    totals: dict[str, list[int]] = {}
    last: dict[str, datetime] = {}
    for shown in entries:
        if shown.entry.event_type != "MedicationDispensed" or shown.status == "voided":
            continue
        name = str(shown.values.get("medication"))
        counts = totals.setdefault(name, [0, 0])
        counts[0] += 1
        counts[1] += int(shown.values.get("take_home_doses") or 0)
        last[name] = datetime.fromisoformat(shown.entry.occurred_at)
    names = sorted(set(totals) | set(planned))
    return [
        MedicationSupply(
            medication=name,
            in_plan=name in planned,
            doses_dispensed=totals.get(name, [0, 0])[0],
            take_home_doses=totals.get(name, [0, 0])[1],
            last_dispensed_at=last.get(name),
        )
        for name in names
    ]


def _verification(service: EpisodeService, episode_id: UUID, chain: str) -> Verification:
    records = service.recorder.select_events(episode_id)
    findings = verify_records(service, episode_id, records)
    return Verification(
        verdict="ok" if not findings else "FAILED",
        entries_checked=len(records),
        chain_head=chain,
        findings=tuple(str(finding) for finding in findings),
    )


def build_report(
    service: EpisodeService,
    episode_id: UUID,
    *,
    as_of: datetime | None,
    timezone: str,
    now: datetime,
    extra_marks: Sequence[WeekMark] = (),
    checkpoint: CheckpointRef | None = None,
) -> AuditReport:
    """The report on an episode as recorded by ``as_of`` (default: everything so far)."""
    state = service.episode(episode_id, as_of=as_of)
    events = [e for e in service.history(episode_id) if e.originator_version <= state.version]
    views = MemoryEpisodeViews()  # private: built from these entries alone
    views.project(events, Tracking(UPSTREAM, len(events)), 0)
    entries = with_corrections(audit.history(views, str(episode_id)))
    schedule = episode_schedule(views, str(episode_id), as_of or now, timezone)
    if schedule is None:  # the entries were just projected: never expected
        msg = f"episode {episode_id} projected no schedule"
        raise LookupError(msg)
    local = zone(timezone)
    summary = EpisodeSummary(
        episode_id=state.episode_id,
        client_ref=state.client_ref,
        status=state.status,
        level=state.level,
        age_group=str(state.age_group),
        payer=str(state.payer),
        weekly_hours=state.weekly_hours,
        medications=state.medications,
        assessed_at=state.assessed_at.astimezone(local),
        plan_started_at=state.plan_started_at.astimezone(local) if state.plan_started_at else None,
        discharged_at=state.discharged_at.astimezone(local) if state.discharged_at else None,
        discharge_reason=state.discharge_reason,
        step_downs=state.step_downs,
        version=state.version,
        program_timezone=state.program_timezone,
    )
    return AuditReport(
        summary=summary,
        timezone=timezone,
        generated_at=now.astimezone(local).replace(microsecond=0),
        as_of=as_of.astimezone(local) if as_of else None,
        weeks=tuple(schedule.weeks),
        taper=tuple(schedule.taper),
        marks=(*week_marks(schedule), *extra_marks),
        medications=tuple(medication_supply(entries, state.medications)),
        entries=tuple(entries),
        verification=_verification(service, episode_id, state.chain),
        checkpoint=checkpoint,
    )
