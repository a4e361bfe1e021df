"""The auditor's tools: histories, exports, and verification against the store."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import Finding, episode_ids, stored_link, verify_records
from iop_episodes.domain.canonical import canonical_time
from iop_episodes.domain.state import EpisodeState
from iop_episodes.domain.values import Model
from projections.rows import AuditRow
from projections.views import EpisodeViews

if TYPE_CHECKING:
    from eventsourcing.persistence import StoredEvent

FIELDS = (
    "episode_id",
    "version",
    "event_type",
    "occurred_at",
    "recorded_at",
    "actor_id",
    "actor_role",
    "command_id",
    "late",
    "corrects",
    "corrected_by",
    "chain",
    "payload",
)
"""The stable order of an entry's fields in every export."""


class AuditEntry(Model):
    episode_id: str
    version: int
    event_type: str
    occurred_at: str
    recorded_at: str
    actor_id: str
    actor_role: str
    command_id: str | None
    late: bool
    corrects: int | None
    corrected_by: tuple[int, ...]
    chain: str
    payload: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The entry's fields in export order."""
        return {name: getattr(self, name) for name in FIELDS} | {
            "corrected_by": list(self.corrected_by)
        }


def history(
    views: EpisodeViews,
    episode_id: str,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
) -> list[AuditEntry]:
    """Entries in version order, with corrections linked both ways."""
    rows = views.audit(episode_id)
    if version is not None:
        rows = [row for row in rows if row.version <= version]
    if as_of is not None:
        cutoff = canonical_time(as_of)
        rows = [row for row in rows if row.recorded_at <= cutoff]
    return linked(rows)


def linked(rows: Sequence[AuditRow]) -> list[AuditEntry]:
    """Audit rows in version order as entries, with corrections linked both ways."""
    corrected_by: dict[int, list[int]] = {}
    for row in rows:
        if row.corrects_version is not None:
            corrected_by.setdefault(row.corrects_version, []).append(row.version)
    return [_entry(row, corrected_by.get(row.version, [])) for row in rows]


def _entry(row: AuditRow, corrected_by: list[int]) -> AuditEntry:
    return AuditEntry(
        episode_id=row.episode_id,
        version=row.version,
        event_type=row.event_type,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        command_id=row.command_id,
        late=row.late,
        corrects=row.corrects_version,
        corrected_by=tuple(corrected_by),
        chain=row.chain,
        payload=json.loads(row.payload),
    )


def to_jsonl(entries: Iterable[AuditEntry]) -> str:
    """One JSON object per line, fields in export order, payload keys sorted."""
    return "".join(
        json.dumps(entry.record(), separators=(",", ":"), ensure_ascii=True) + "\n"
        for entry in entries
    )


def to_csv(entries: Iterable[AuditEntry]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for entry in entries:
        record = entry.record()
        record["payload"] = json.dumps(entry.payload, sort_keys=True, separators=(",", ":"))
        record["corrected_by"] = " ".join(str(v) for v in entry.corrected_by)
        writer.writerow(["" if record[name] is None else record[name] for name in FIELDS])
    return buffer.getvalue()


def to_text(entries: Sequence[AuditEntry], state: EpisodeState | None) -> str:
    lines = []
    if state is not None:
        lines.append(
            f"episode {state.episode_id}  version {state.version}  status {state.status}  "
            f"level {state.level or '-'}  weekly hours {state.weekly_hours or '-'}"
        )
        lines.append(f"chain head {state.chain}")
        lines.append("")
    for entry in entries:
        marks = []
        if entry.late:
            marks.append("LATE")
        if entry.corrects is not None:
            marks.append(f"corrects v{entry.corrects}")
        if entry.corrected_by:
            marks.append("corrected by " + ", ".join(f"v{v}" for v in entry.corrected_by))
        lines.append(
            f"v{entry.version:<4} {entry.event_type:<20} occurred {entry.occurred_at}  "
            f"recorded {entry.recorded_at}  by {entry.actor_id} ({entry.actor_role})"
            + (f"  [{'; '.join(marks)}]" if marks else "")
        )
        summary = ", ".join(
            f"{k}={v}" for k, v in entry.payload.items() if v not in ("", None, [], {})
        )
        lines.append(f"      {summary}")
    return "\n".join(lines) + "\n"


def verify(
    service: EpisodeService, views: EpisodeViews, only: Sequence[UUID] | None = None
) -> list[Finding]:
    """Chains and gaps from the raw store, then the audit view against the store."""
    targets: list[UUID] = list(only) if only else episode_ids(service)
    findings: list[Finding] = []
    projected = views.audit_links()
    for episode_id in targets:
        records = service.recorder.select_events(episode_id)  # read once for both checks
        findings.extend(verify_records(service, episode_id, records))
        findings.extend(_projection_findings(service, episode_id, records, projected))
    if not only:
        stored = {str(episode_id) for episode_id in targets}
        findings.extend(
            Finding(
                UUID(orphan),
                projected[orphan][0][0],
                "projection-mismatch",
                "the audit view holds an episode the store does not",
            )
            for orphan in sorted(set(projected) - stored)
        )
    return findings


def _projection_findings(
    service: EpisodeService,
    episode_id: UUID,
    records: Sequence[StoredEvent],
    projected: dict[str, list[tuple[int, str]]],
) -> list[Finding]:
    in_view = dict(projected.get(str(episode_id), []))
    findings = []
    for record in records:
        version = record.originator_version
        view_chain = in_view.pop(version, None)
        if view_chain is None:
            continue  # the view may lag the store; catch up before verifying
        try:
            stored_chain = stored_link(service, record)
        except Exception:  # noqa: BLE001  (verify_records reports unreadable rows)
            stored_chain = view_chain
        if stored_chain != view_chain:
            findings.append(
                Finding(
                    episode_id,
                    version,
                    "projection-mismatch",
                    "the audit view's chain differs from the stored entry's",
                )
            )
    findings.extend(
        Finding(
            episode_id,
            version,
            "projection-mismatch",
            "the audit view holds this version but the store does not",
        )
        for version in sorted(in_view)
    )
    return findings
