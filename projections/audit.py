"""The auditor's tools: histories, JSON Lines, and verification that trusts nothing derived.

The readable text and CSV exports are in ``projections.history_text``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import Tracking
from pydantic import RootModel

from iop_episodes.application.output import Progress
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import (
    STORE,
    Finding,
    Verification,
    verify_entries,
    verify_snapshots,
)
from iop_episodes.domain.canonical import canonical_time
from iop_episodes.domain.certification import lapsed_on
from iop_episodes.domain.events import Assessed, EpisodeEvent, PlanCreated, Recertified
from iop_episodes.domain.values import Model
from iop_episodes.domain.weeks import local
from projections.rows import AuditRow, EntryRow, EpisodeRow, StepDownRow
from projections.views import UPSTREAM, EpisodeViews, MemoryEpisodeViews

ROW_TYPES: dict[str, type[Any]] = {
    "episodes": EpisodeRow,
    "entries": EntryRow,
    "step_downs": StepDownRow,
    "audit": AuditRow,
}

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
    "certification_lapsed",
    "corrects",
    "corrected_by",
    "chain",
    "payload",
)
"""The stable order of an entry's fields in every export."""

CERTIFIED_CARE = frozenset({"SessionAttended", "MedicationDispensed", "ScreenResulted", "StepDown"})
"""Entries that Medicare certification covers, flagged when it had lapsed."""


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
    certification_lapsed: bool
    """Medicare care on a local day outside every certification (accepted, flagged)."""
    corrects: int | None
    corrected_by: tuple[int, ...]
    chain: str
    payload: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The entry's fields in export order."""
        return {name: getattr(self, name) for name in FIELDS} | {
            "corrected_by": list(self.corrected_by)
        }


class AuditHistory(RootModel[list[AuditEntry]]):
    """``iop audit history --json``: the entries in order; each ``--format jsonl`` line is one.

    Times are canonical UTC and the payload is as recorded.
    """


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
    found = views.episodes([episode_id])
    coverage = None if not found else Coverage(found[0].program_timezone, found[0].certifications)
    return linked(rows, coverage)


@dataclass(frozen=True)
class Coverage:
    """An episode's timezone and Medicare certification dates (a canonical JSON array)."""

    timezone: str
    certifications: str


def coverage_of(events: Iterable[EpisodeEvent]) -> Coverage | None:
    """The same coverage the schedule view holds, read from the entries themselves."""
    timezone, payer, dates = "", "", set()
    for event in events:
        payload = event.payload
        if isinstance(event, Assessed):
            timezone, payer = payload["program_timezone"], payload["payer"]
        elif isinstance(event, PlanCreated | Recertified):
            certified_on = payload.get("certified_on")
            if certified_on is None and isinstance(event, PlanCreated) and payer == "medicare":
                certified_on = local(event.occurred_at, timezone).date().isoformat()
            if certified_on is not None:
                dates.add(certified_on)
    return Coverage(timezone, json.dumps(sorted(dates))) if timezone else None


def linked(rows: Sequence[AuditRow], coverage: Coverage | None = None) -> list[AuditEntry]:
    """Audit rows in version order as entries, with corrections linked both ways.

    Given the episode's coverage, Medicare care on a lapsed day is flagged.
    """
    corrected_by: dict[int, list[int]] = {}
    for row in rows:
        if row.corrects_version is not None:
            corrected_by.setdefault(row.corrects_version, []).append(row.version)
    return [
        _entry(row, corrected_by.get(row.version, []), lapsed=_lapsed(row, coverage))
        for row in rows
    ]


def _lapsed(row: AuditRow, coverage: Coverage | None) -> bool:
    if coverage is None or row.event_type not in CERTIFIED_CARE:
        return False
    certified = json.loads(coverage.certifications)
    day = local(datetime.fromisoformat(row.occurred_at), coverage.timezone).date()
    return lapsed_on(day, certified)


def _entry(row: AuditRow, corrected_by: list[int], *, lapsed: bool = False) -> AuditEntry:
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
        certification_lapsed=lapsed,
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


def verify(
    service: EpisodeService,
    views: EpisodeViews,
    only: Sequence[UUID] | None = None,
    *,
    jobs: int = 1,
) -> list[Finding]:
    """Every finding of ``verify_all``."""
    return verify_all(service, views, only, jobs=jobs).findings


def verify_all(
    service: EpisodeService,
    views: EpisodeViews,
    only: Sequence[UUID] | None = None,
    *,
    jobs: int = 1,
    progress: Progress | None = None,
) -> Verification:
    """Entries, snapshots, the tracking position and every view row, trusting none of them.

    The views are compared, as they stand at their tracked position, with
    views rebuilt apart (in memory) from the entries that verify: each
    episode's entries up to the first one that does not. ``jobs`` processes
    share the pass over the entries (``verify_entries``). ``progress`` is
    told (done, total) in log positions: the pass over the entries, then
    the rebuild's.
    """
    report = progress or _ignore
    total = service.recorder.max_notification_id() or 0  # for progress: the log at the start
    report(0, 2 * total)
    result = verify_entries(service, only, jobs=jobs)
    report(total, 2 * total)
    snapshots = verify_snapshots(service, only)
    result.checked.snapshots = snapshots.checked.snapshots
    result.findings.extend(snapshots.findings)
    position = views.position()  # before the head: views caught up meanwhile are not past it
    head = service.recorder.max_notification_id() or 0
    if position > head:
        result.findings.append(
            Finding(
                STORE,
                position,
                "tracking-mismatch",
                f"the views' tracked position {position} is past the log's head {head}",
            )
        )
    wanted = None if only is None else {str(episode_id) for episode_id in only}
    rebuilt = _rebuilt_views(
        service,
        min(position, head),
        result.first_bad_versions(),
        wanted,
        lambda done: report(total + done, 2 * total),
    )
    live = _rows(views.dump(), wanted)
    result.checked.view_rows = sum(len(rows) for rows in live.values())
    result.findings.extend(_view_findings(live, _rows(rebuilt.dump(), wanted)))
    report(2 * total, 2 * total)
    return result


def _ignore(done: int, total: int) -> None:
    del done, total


def _rebuilt_views(
    service: EpisodeService,
    upto: int,
    first_bad: dict[UUID, int],
    wanted: set[str] | None,
    projected: Callable[[int], None],
) -> MemoryEpisodeViews:
    """The views as the verified entries up to log position ``upto`` make them.

    ``projected`` is told the log position reached after each page.
    """
    rebuilt = MemoryEpisodeViews()
    after, start = 0, 1
    while start <= upto:
        page = service.recorder.select_notifications(start, REBUILD_BATCH, stop=upto)
        if not page:
            break
        events = []
        for notification in page:
            episode_id = UUID(str(notification.originator_id))
            if wanted is not None and str(episode_id) not in wanted:
                continue
            if notification.originator_version >= first_bad.get(episode_id, sys.maxsize):
                continue
            try:
                events.append(cast("EpisodeEvent", service.mapper.to_domain_event(notification)))
            except Exception:  # noqa: BLE001  (an entry that does not decode ends its episode)
                first_bad[episode_id] = notification.originator_version
        rebuilt.project(events, Tracking(UPSTREAM, page[-1].id), after)
        after, start = page[-1].id, page[-1].id + 1
        projected(after)
    return rebuilt


Rows = dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]


def _rows(dump: dict[str, list[tuple[Any, ...]]], wanted: set[str] | None) -> Rows:
    """Each table's rows by key, only the wanted episodes'."""
    return {
        name: {
            row[: len(KEY_COLUMNS[name])]: row
            for row in rows
            if wanted is None or str(row[0]) in wanted
        }
        for name, rows in dump.items()
    }


def _view_findings(live: Rows, rebuilt: Rows) -> list[Finding]:
    """One finding per table and episode whose rows differ, at the first such row."""
    findings = []
    for name in KEY_COLUMNS:
        have, want = live.get(name, {}), rebuilt.get(name, {})
        differing = sorted(
            (key for key in have.keys() | want.keys() if have.get(key) != want.get(key)),
            key=repr,
        )
        by_episode: dict[str, list[tuple[Any, ...]]] = {}
        for key in differing:
            by_episode.setdefault(str(key[0]), []).append(key)
        for episode_id, keys in by_episode.items():
            first = min(keys, key=lambda key: (_version(name, key, have, want), repr(key)))
            findings.append(
                Finding(
                    UUID(episode_id),
                    _version(name, first, have, want),
                    "projection-mismatch",
                    f"iop_{name}: {len(keys)} row(s) differ from a rebuild from the verified "
                    f"entries; {_difference(name, first, have.get(first), want.get(first))}",
                )
            )
    return sorted(findings, key=lambda f: (str(f.episode_id), f.version))


def _version(name: str, key: tuple[Any, ...], have: dict[Any, Any], want: dict[Any, Any]) -> int:
    """The entry version a row stands for (0 for activity totals, which have none)."""
    if name in {"entries", "step_downs", "audit"}:
        return int(key[1])
    if name == "episodes":
        row = have.get(key) or want.get(key)
        return int(row[COLUMNS["episodes"].index("version")]) if row else 0
    return 0


def _difference(
    name: str, key: tuple[Any, ...], view: tuple[Any, ...] | None, rebuilt: tuple[Any, ...] | None
) -> str:
    where = ", ".join(
        f"{column} {value}" for column, value in zip(KEY_COLUMNS[name], key, strict=False)
    )
    if rebuilt is None:
        return f"the view holds a row the verified entries do not make ({where})"
    if view is None:
        return f"the view lacks a row the verified entries make ({where})"
    columns = COLUMNS[name]
    changed = [columns[i] for i, (a, b) in enumerate(zip(view, rebuilt, strict=True)) if a != b]
    return f"columns {', '.join(changed)} differ ({where})"


COLUMNS = {
    **{name: [f.name for f in fields(row_type)] for name, row_type in ROW_TYPES.items()},
    "activity": ["episode_id", "week", "item", "count", "minutes"],
}
KEY_COLUMNS = {
    "episodes": ["episode_id"],
    "entries": ["episode_id", "version"],
    "activity": ["episode_id", "week", "item"],
    "step_downs": ["episode_id", "version"],
    "audit": ["episode_id", "version"],
}
REBUILD_BATCH = 500
