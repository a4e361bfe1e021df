"""An episode's history as a person reads it: text and CSV, corrections applied, originals kept.

Each entry shows the values in force: an amended entry shows its amended
values with the recorded ones beside them (``minutes 60 (recorded 90)``),
a voided entry says so, and both name the correction. Times are local with
their offset, flags are ``yes``/``no``, lists and breakdowns are written out
(``group 6, individual 3``). Every field is escaped (``projections.escaping``)
so no stored text can start a line of its own or reorder what is shown.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from iop_episodes.domain.canonical import canonical_decimal
from iop_episodes.domain.events import EVENT_TYPES
from iop_episodes.domain.state import EpisodeState
from iop_episodes.domain.values import Model
from projections.audit import AuditEntry
from projections.escaping import spreadsheet_cell, visible
from projections.localtime import shown

TIME_FIELDS = frozenset({"scheduled_for"})
"""Payload fields that hold a moment (shown in local time)."""

PAYLOAD_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        name
        for event in EVENT_TYPES.values()
        for name in event.payload_type.model_fields
        if name != "client_ref"  # a column of every row already
    )
)
"""Every payload field of every entry type, once, in the catalog's order."""

CSV_COLUMNS = (
    "episode_id",
    "client_ref",
    "version",
    "event_type",
    "occurred_at",
    "recorded_at",
    "actor_id",
    "actor_role",
    "command_id",
    "late",
    "certification_lapsed",
    "corrects",
    "corrected_by",
    "status",
    *PAYLOAD_COLUMNS,
    "recorded_values",
    "chain",
)
"""The readable CSV's header; payload columns are empty where an entry has no such field."""


class ShownEntry(Model):
    """An entry with its corrections applied."""

    entry: AuditEntry
    status: Literal["as recorded", "amended", "voided"]
    values: dict[str, Any]
    """The payload in force: the last amendment's, or as recorded."""
    replaced: dict[str, Any]
    """Recorded values an amendment changed (empty unless amended)."""


def with_corrections(entries: Sequence[AuditEntry]) -> list[ShownEntry]:
    """Each entry with the corrections that point at it applied, in version order."""
    corrections = {e.version: e for e in entries if e.corrects is not None}
    shown_entries = []
    for entry in entries:
        status: Literal["as recorded", "amended", "voided"] = "as recorded"
        values = dict(entry.payload)
        for version in entry.corrected_by:
            correction = corrections.get(version)
            if correction is None:
                continue  # the correction lies after the version shown
            if correction.payload.get("action") == "void":
                status = "voided"
            elif isinstance(correction.payload.get("amended"), dict):
                status, values = "amended", dict(correction.payload["amended"])
        replaced = (
            {k: v for k, v in entry.payload.items() if values.get(k) != v}
            if status == "amended"
            else {}
        )
        shown_entries.append(
            ShownEntry(entry=entry, status=status, values=values, replaced=replaced)
        )
    return shown_entries


def value_text(name: str, value: Any, timezone: str) -> str:
    """One payload value in words: yes/no, plain numbers, lists and breakdowns written out."""
    if value is None or isinstance(value, bool | Decimal):
        return _scalar_text(value)
    if isinstance(value, Mapping):
        written = ((k, value_text(k, v, timezone)) for k, v in value.items())
        return ", ".join(f"{k} {text}" for k, text in written if text)
    if isinstance(value, list | tuple):
        parts = [value_text(name, item, timezone) for item in value]
        return "; ".join(parts) if any(isinstance(i, Mapping) for i in value) else ", ".join(parts)
    if name in TIME_FIELDS and isinstance(value, str):
        return shown(value, timezone)
    return str(value)


def _scalar_text(value: object) -> str:
    """None, a flag or a decimal."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return canonical_decimal(value) if isinstance(value, Decimal) else str(value)


def _fields_line(shown_entry: ShownEntry, timezone: str) -> str:
    parts = []
    for name, value in shown_entry.values.items():
        text = value_text(name, value, timezone)
        if name in shown_entry.replaced:
            was = value_text(name, shown_entry.replaced[name], timezone) or "none"
            parts.append(f"{name}: {text or 'none'} (recorded {was})")
        elif text:
            parts.append(f"{name}: {text}")
    parts.extend(
        f"{name}: none (recorded {value_text(name, value, timezone)})"
        for name, value in shown_entry.replaced.items()
        if name not in shown_entry.values
    )
    return visible(" · ".join(parts))


def _marks(entry: AuditEntry, status: str) -> list[str]:
    marks = []
    if entry.late:
        marks.append("LATE")
    if entry.certification_lapsed:
        marks.append("CERTIFICATION LAPSED")
    if entry.corrects is not None:
        marks.append(f"corrects v{entry.corrects}")
    if entry.corrected_by:
        by = ", ".join(f"v{v}" for v in entry.corrected_by)
        marks.append(f"{status} by {by}" if status != "as recorded" else f"corrected by {by}")
    return marks


def state_lines(state: EpisodeState, timezone: str) -> list[str]:
    hours = canonical_decimal(state.weekly_hours) if state.weekly_hours is not None else "-"
    return [
        (
            f"episode {state.episode_id}  client {visible(state.client_ref)}  version "
            f"{state.version}  status {state.status}  level {state.level or '-'}  "
            f"weekly hours {hours}"
        ),
        (
            f"assessed {shown(state.assessed_at, timezone)}  plan started "
            f"{shown(state.plan_started_at, timezone)}  discharged "
            f"{shown(state.discharged_at, timezone)}"
        ),
        f"times in {timezone}; chain head {state.chain}",
    ]


def to_text(entries: Sequence[AuditEntry], state: EpisodeState | None, timezone: str) -> str:
    """A heading, then two lines per entry: who and when, then what it says."""
    lines = [*state_lines(state, timezone), ""] if state is not None else []
    for shown_entry in with_corrections(entries):
        entry = shown_entry.entry
        marks = _marks(entry, shown_entry.status)
        lines.append(
            f"v{entry.version:<4} {visible(entry.event_type):<19} "
            f"{shown(entry.occurred_at, timezone)}  by {visible(entry.actor_id)} "
            f"({visible(entry.actor_role)})  recorded {shown(entry.recorded_at, timezone)}"
            + (f"  [{'; '.join(marks)}]" if marks else "")
        )
        body = _fields_line(shown_entry, timezone)
        if shown_entry.status == "voided":
            body = f"VOIDED: {body}"
        lines.append(f"      {body}")
    return "\n".join(lines) + "\n"


def _csv_row(shown_entry: ShownEntry, client_ref: str, timezone: str) -> list[str]:
    entry = shown_entry.entry
    replaced = ", ".join(
        f"{k} {value_text(k, v, timezone)}" for k, v in shown_entry.replaced.items()
    )
    record: dict[str, str] = {
        "episode_id": entry.episode_id,
        "client_ref": client_ref,
        "version": str(entry.version),
        "event_type": entry.event_type,
        "occurred_at": shown(entry.occurred_at, timezone),
        "recorded_at": shown(entry.recorded_at, timezone),
        "actor_id": entry.actor_id,
        "actor_role": entry.actor_role,
        "command_id": entry.command_id or "",
        "late": "yes" if entry.late else "no",
        "certification_lapsed": "yes" if entry.certification_lapsed else "no",
        "corrects": "" if entry.corrects is None else str(entry.corrects),
        "corrected_by": " ".join(str(v) for v in entry.corrected_by),
        "status": shown_entry.status,
        "recorded_values": replaced,
        "chain": entry.chain,
    }
    for name in PAYLOAD_COLUMNS:
        record[name] = value_text(name, shown_entry.values.get(name), timezone)
    return [spreadsheet_cell(record[name]) for name in CSV_COLUMNS]


def to_csv(entries: Sequence[AuditEntry], client_ref: str, timezone: str) -> str:
    """One row per entry, one column per field (``CSV_COLUMNS``), safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(e, client_ref, timezone) for e in with_corrections(entries))
    return buffer.getvalue()
