"""How each episode event changes the hour schedule and the audit history.

The projector is the same for every backend: it reads and writes through a
``ViewTransaction`` so that a whole batch of events, and the tracking
position after it, commit together or not at all.
"""

from __future__ import annotations

from typing import Any

from iop_episodes.application.recorded import recorded_texts
from iop_episodes.domain.canonical import canonical_form, canonical_time, parse_json
from iop_episodes.domain.catalog import Level
from iop_episodes.domain.events import (
    EPISODE_ENTRY_TYPES,
    AftercareScheduled,
    Assessed,
    Discharged,
    EntryCorrected,
    EpisodeEvent,
    MedicationDispensed,
    PlanCreated,
    Recertified,
    ScreenResulted,
    SessionAttended,
    StepDown,
)
from iop_episodes.domain.screening import screen_meaning
from iop_episodes.domain.weeks import iso_week, local
from projections.rows import AuditRow, EntryRow, EpisodeRow, StepDownRow, evolve
from projections.transaction import ViewTransaction


def json_text(value: Any) -> str:
    """A payload's JSON form (as events carry it) as canonical text."""
    return canonical_form(value).decode("ascii")


def project(event: EpisodeEvent, tx: ViewTransaction) -> None:
    """Apply one event to both views; a disclosure's entry is no episode's, and is skipped."""
    if event.type_name() not in EPISODE_ENTRY_TYPES:
        return
    episode_id = str(event.originator_id)
    tx.add_audit(audit_row(event, episode_id))
    if isinstance(event, Assessed):
        tx.save_episode(assessed_row(event))
        return
    row = tx.episode(episode_id)
    if row is None:  # the view is behind the store: never expected, say so loudly
        msg = f"episode {episode_id} version {event.originator_version} before its assessment"
        raise LookupError(msg)
    row = evolve(row, version=event.originator_version)
    row = _schedule_change(event, row, tx)
    tx.save_episode(row)


def audit_row(event: EpisodeEvent, episode_id: str) -> AuditRow:
    """The entry as recorded: its payload is the stored text the chain covers, not upcast."""
    corrects = int(event.payload["target_version"]) if isinstance(event, EntryCorrected) else None
    occurred_at, payload, recorded_at = recorded_texts(event)
    return AuditRow(
        episode_id=episode_id,
        version=event.originator_version,
        event_type=event.type_name(),
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        actor_id=event.actor["id"],
        actor_role=event.actor["role"],
        command_id=event.command_id,
        payload=payload,
        chain=event.chain,
        corrects_version=corrects,
        late=event.is_late_entry,
    )


def assessed_row(event: Assessed) -> EpisodeRow:
    return EpisodeRow(
        episode_id=str(event.originator_id),
        status="assessed",
        age_group=str(event.age_group),
        program_timezone=event.payload["program_timezone"],
        level=None,
        weekly_hours=None,
        plan_weekly_hours=None,
        modality_hours="{}",
        medications="[]",
        plan_started_at=None,
        last_change_at=None,
        discharged_at=None,
        discharge_reason=None,
        version=event.originator_version,
        payer=event.payload["payer"],
        client_ref=event.payload["client_ref"],
        assessed_at=canonical_time(event.occurred_at),
    )


def _schedule_change(event: EpisodeEvent, row: EpisodeRow, tx: ViewTransaction) -> EpisodeRow:
    if isinstance(event, PlanCreated):
        return _planned(event, row)
    if isinstance(event, StepDown):
        return _stepped_down(event, row, tx)
    if isinstance(event, Discharged):
        return evolve(
            row,
            status="discharged",
            discharged_at=canonical_time(event.occurred_at),
            discharge_reason=int(event.payload["reason"]),
        )
    if isinstance(event, EntryCorrected):
        _corrected(event, row, tx)
        return row
    return _recorded_care(event, row, tx)


def _recorded_care(event: EpisodeEvent, row: EpisodeRow, tx: ViewTransaction) -> EpisodeRow:
    """Sessions, doses and screens add to their week; certifications and aftercare to the row."""
    if isinstance(event, Recertified):
        return _certified(row, event.payload["certified_on"])
    if isinstance(event, AftercareScheduled):
        return evolve(row, aftercare=row.aftercare + 1)
    entry = care_entry(event, row)
    if entry is not None:
        tx.save_entry(entry)
        tx.add_activity(entry.episode_id, entry.week, entry.item, 1, entry.minutes)
    return row


def _planned(event: EpisodeEvent, row: EpisodeRow) -> EpisodeRow:
    hours = event.payload["weekly_hours"]
    started = canonical_time(event.occurred_at)
    certified_on = event.payload.get("certified_on")
    if certified_on is None and row.payer == "medicare":  # version 1: certified that day
        certified_on = local(event.occurred_at, row.program_timezone).date().isoformat()
    if certified_on is not None:
        row = _certified(row, certified_on)
    return evolve(
        row,
        screens_per_week=int(event.payload.get("screens_per_week", 1)),
        status="active",
        level=str(Level.INTENSIVE_OUTPATIENT),
        weekly_hours=hours,
        plan_weekly_hours=hours,
        modality_hours=json_text(event.payload["modality_hours"]),
        medications=json_text(event.payload["medications"]),
        plan_started_at=started,
        last_change_at=started,
    )


def _certified(row: EpisodeRow, certified_on: str) -> EpisodeRow:
    dates = sorted({*_json_list(row.certifications), certified_on})
    return evolve(row, certifications=json_text(dates))


def _stepped_down(event: EpisodeEvent, row: EpisodeRow, tx: ViewTransaction) -> EpisodeRow:
    payload = event.payload
    policy = payload.get("policy")
    tx.add_step_down(
        StepDownRow(
            episode_id=row.episode_id,
            version=event.originator_version,
            occurred_at=canonical_time(event.occurred_at),
            week=iso_week(event.occurred_at, row.program_timezone),
            from_hours=payload["from_weekly_hours"],
            to_hours=payload["to_weekly_hours"],
            to_level=payload["to_level"],
            actor_id=event.actor["id"],
            actor_role=event.actor["role"],
            reason=payload["reason"],
            policy=f"{policy['id']}@{policy['version']}" if policy else None,
        )
    )
    occurred = canonical_time(event.occurred_at)
    if row.last_change_at is not None and occurred < row.last_change_at:
        return row  # a late step-down: the hours now are the clinically later one's
    return evolve(
        row,
        level=payload["to_level"],
        weekly_hours=payload["to_weekly_hours"],
        last_change_at=occurred,
    )


def care_entry(
    event: EpisodeEvent,
    row: EpisodeRow,
    payload: dict[str, Any] | None = None,
) -> EntryRow | None:
    """What a session, dose or screen adds to its week; None for other entries."""
    body = event.payload if payload is None else payload
    week = iso_week(event.occurred_at, row.program_timezone)
    episode_id, version = row.episode_id, event.originator_version
    if isinstance(event, SessionAttended):
        item, minutes = f"session:{body['modality']}", int(body["minutes"])
    elif isinstance(event, MedicationDispensed):
        item, minutes = "dose", 0
    elif isinstance(event, ScreenResulted):
        prescribed = _json_list(row.medications)
        item, minutes = f"screen:{screen_meaning(body['results'], prescribed)}", 0
    else:
        return None
    return EntryRow(episode_id, version, week, item, minutes)


def _corrected(event: EpisodeEvent, row: EpisodeRow, tx: ViewTransaction) -> None:
    target = int(event.payload["target_version"])
    before = tx.entry(row.episode_id, target)
    if before is None or before.voided:
        return  # aftercare corrections change no hours
    tx.add_activity(row.episode_id, before.week, before.item, -1, -before.minutes)
    if event.payload["action"] == "void":
        tx.save_entry(evolve(before, voided=True))
        return
    amended = _amended_entry(before, event.payload["amended"], row)
    tx.save_entry(amended)
    tx.add_activity(row.episode_id, amended.week, amended.item, 1, amended.minutes)


def _amended_entry(before: EntryRow, amended: dict[str, Any], row: EpisodeRow) -> EntryRow:
    if before.item.startswith("session:"):
        item, minutes = f"session:{amended['modality']}", int(amended["minutes"])
    elif before.item.startswith("screen:"):
        prescribed = _json_list(row.medications)
        item, minutes = f"screen:{screen_meaning(amended['results'], prescribed)}", 0
    else:
        item, minutes = before.item, before.minutes
    return evolve(before, item=item, minutes=minutes)


def _json_list(text: str) -> list[str]:
    values: list[str] = parse_json(text)
    return values
