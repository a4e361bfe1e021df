"""The library calls hosts use: FHIR bundles, TEDS records, audit reports and proof bundles.

Each call checks the basis, builds the export from verified histories,
records exactly one Disclosure, and only then returns the export. A refused
export raises (or, for many episodes, lists the refused) and records nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from iop_episodes.application.output import Progress, counted
from iop_episodes.audit.bundle import ProvenEpisode, prove_episode
from iop_episodes.audit.checkpoints import covering_checkpoint
from iop_episodes.audit.integrity import episode_ids
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import canonical_json
from iop_episodes.domain.catalog import ExportFormat, RecordScope
from iop_episodes.domain.commands import Actor
from iop_episodes.domain.disclosure import require_discloser
from projections import audit, history_text
from projections.exports import codes, teds
from projections.exports.disclosure import (
    Disclosing,
    Selected,
    basis_of,
    episode_history,
    record,
    select,
)
from projections.exports.fhir import build_bundle
from projections.projector import audit_row
from projections.report import AuditReport, CheckpointRef, build_report
from projections.report_html import render_report

if TYPE_CHECKING:
    from datetime import date, datetime

    from iop_episodes.application.service import EpisodeService
    from iop_episodes.domain.episode import Receipt
    from iop_episodes.domain.events import EpisodeEvent


def serialize(resource: Mapping[str, Any]) -> bytes:
    """One bundle's bytes: keys sorted, no white space, ASCII, one trailing newline."""
    return canonical_json(resource) + b"\n"


@dataclass
class Export:
    """What left (``data``, in the order recorded), what was refused, and its disclosure."""

    data: bytes = b""
    refused: dict[UUID, errors.DisclosureRefused] = field(default_factory=dict)
    disclosure: Receipt | None = None


@dataclass
class FhirExport(Export):
    bundles: dict[UUID, dict[str, Any]] = field(default_factory=dict)


@dataclass
class TedsExport(Export):
    records: list[teds.TedsRecord] = field(default_factory=list)


@dataclass(frozen=True)
class _Leaving:
    """An export under way, its basis and discloser checked: what may leave, then its record."""

    service: EpisodeService
    disclosing: Disclosing

    def select(self, episodes: Iterable[UUID], **how: Any) -> Selected:
        """Each episode's entries and basis; those without one in ``refused``."""
        return select(self.service, episodes, self.disclosing, **how)

    def one(self, episode_id: UUID, history: list[EpisodeEvent] | None = None) -> Selected:
        """The one episode sent (``history``: only these entries), or its refusal raised."""
        only = None if history is None else lambda _: history
        selected = self.select([episode_id], histories=only)
        if episode_id in selected.refused:
            raise selected.refused[episode_id]
        return selected

    def record(
        self,
        selected: Selected,
        export_format: ExportFormat,
        data: bytes,
        scope: Iterable[str] | None = None,
        proven_against: str | None = None,
    ) -> Receipt:
        """The export's one Disclosure, of exactly ``data``."""
        return record(
            self.service,
            self.disclosing,
            selected,
            export_format=export_format,
            data=data,
            scope=scope,
            proven_against=proven_against,
        )


@dataclass(frozen=True)
class DisclosureTerms:
    """What every export names: to whom, why, who discloses, and one basis."""

    recipient: str
    purpose: str
    actor: Mapping[str, str]
    consent: bool = False
    exception: str | None = None
    command_id: str | None = None

    def keywords(self) -> dict[str, Any]:
        """The terms as the export calls' keyword arguments."""
        return {name.name: getattr(self, name.name) for name in fields(self)}


def check_can_record(service: EpisodeService) -> None:
    """Raise ``StoreKeyError`` (exit 4) now when no disclosure could be recorded in the store."""
    if service.mapper.writes_refused is not None:
        raise errors.StoreKeyError(service.mapper.writes_refused)


def _leaving(service: EpisodeService, terms: DisclosureTerms) -> _Leaving:
    """Check the store, the basis and who discloses on it before anything is read."""
    check_can_record(service)
    basis = basis_of(consent=terms.consent, exception=terms.exception)
    require_discloser(Actor.model_validate(terms.actor), basis)
    disclosing = Disclosing(terms.recipient, terms.purpose, terms.actor, basis)
    if terms.command_id is not None:
        disclosing = replace(disclosing, command_id=terms.command_id)
    return _Leaving(service, disclosing)


def export_fhir_many(
    service: EpisodeService,
    episodes: Iterable[UUID],
    *,
    recipient: str,
    purpose: str,
    actor: Mapping[str, str],
    consent: bool = False,
    exception: str | None = None,
    transaction: bool = False,
    patient_system: str = codes.CLIENT_REF_SYSTEM,
    command_id: str | None = None,
    progress: Progress | None = None,
) -> FhirExport:
    """One bundle per episode with a basis, under one disclosure; the rest in ``refused``.

    ``progress`` is told how many of the episodes have been read.
    """
    terms = DisclosureTerms(recipient, purpose, actor, consent, exception, command_id)
    leaving = _leaving(service, terms)
    selected = leaving.select(counted(list(episodes), progress))
    export = FhirExport(refused=selected.refused)
    for episode_id, history in selected.histories.items():
        export.bundles[episode_id] = build_bundle(
            episode_id, history, transaction=transaction, patient_system=patient_system
        )
    if not export.bundles:
        return export
    export.data = b"".join(serialize(bundle) for bundle in export.bundles.values())
    kind = ExportFormat.FHIR_TRANSACTION if transaction else ExportFormat.FHIR_COLLECTION
    export.disclosure = leaving.record(selected, kind, export.data)
    return export


def export_fhir(
    service: EpisodeService,
    episode_id: UUID,
    *,
    recipient: str,
    purpose: str,
    actor: Mapping[str, str],
    consent: bool = False,
    exception: str | None = None,
    transaction: bool = False,
    patient_system: str = codes.CLIENT_REF_SYSTEM,
    command_id: str | None = None,
) -> dict[str, Any]:
    """The episode's bundle, disclosed once; raises the refusal when it has no basis."""
    terms = DisclosureTerms(recipient, purpose, actor, consent, exception, command_id)
    export = export_fhir_many(
        service,
        [episode_id],
        **terms.keywords(),
        transaction=transaction,
        patient_system=patient_system,
    )
    if episode_id in export.refused:
        raise export.refused[episode_id]
    return export.bundles[episode_id]


def episode_histories(
    service: EpisodeService, progress: Progress | None = None
) -> dict[UUID, list[EpisodeEvent]]:
    """Every episode's entries (disclosures are not episodes), in first-recorded order."""
    found = {}
    for aggregate_id in counted(episode_ids(service), progress):
        history = list(service.history(aggregate_id))
        if history and history[0].type_name() == "Assessed":
            found[aggregate_id] = history
    return found


def export_teds(
    service: EpisodeService,
    *,
    kind: teds.Kind,
    start: date,
    end: date,
    recipient: str,
    purpose: str,
    actor: Mapping[str, str],
    consent: bool = False,
    exception: str | None = None,
    output: str = "csv",
    command_id: str | None = None,
    progress: Progress | None = None,
) -> TedsExport:
    """TEDS admission or discharge records dated ``start`` to ``end``, disclosed once.

    ``progress`` is told how many of the store's episodes have been read.
    """
    terms = DisclosureTerms(recipient, purpose, actor, consent, exception, command_id)
    leaving = _leaving(service, terms)
    histories = episode_histories(service, progress)
    with_records = [
        episode_id
        for episode_id, history in histories.items()
        if teds.records_in_period([history], kind, start, end)
    ]
    needed = [str(RecordScope.ADMISSION_DISCHARGE)]
    selected = leaving.select(
        with_records, histories=histories.__getitem__, needed=lambda _history: needed
    )
    export = TedsExport(refused=selected.refused)
    export.records = teds.records_in_period(selected.histories.values(), kind, start, end)
    if not export.records:
        return export
    export.data = (
        teds.to_csv(export.records, kind) if output == "csv" else teds.to_json(export.records)
    )
    export_format = ExportFormat(f"teds-{kind}s-{output}")
    export.disclosure = leaving.record(selected, export_format, export.data, needed)
    return export


def export_audit_report(
    service: EpisodeService,
    episode_id: UUID,
    *,
    recipient: str,
    purpose: str,
    actor: Mapping[str, str],
    consent: bool = False,
    exception: str | None = None,
    output: str = "jsonl",
    command_id: str | None = None,
) -> bytes:
    """The episode's audit history, as ``iop audit history`` gives it, from the store; disclosed.

    Raises the refusal when the episode has no basis; nothing is recorded then.
    """
    terms = DisclosureTerms(recipient, purpose, actor, consent, exception, command_id)
    return audit_report_export(service, episode_id, **terms.keywords(), output=output).data


def audit_report_export(
    service: EpisodeService,
    episode_id: UUID,
    *,
    recipient: str,
    purpose: str,
    actor: Mapping[str, str],
    consent: bool = False,
    exception: str | None = None,
    output: str = "jsonl",
    command_id: str | None = None,
) -> Export:
    """``export_audit_report``'s bytes with the receipt of the disclosure that records them."""
    terms = DisclosureTerms(recipient, purpose, actor, consent, exception, command_id)
    leaving = _leaving(service, terms)
    selected = leaving.one(episode_id)
    history = selected.histories[episode_id]
    rows = [audit_row(event, str(episode_id)) for event in history]
    entries = audit.linked(rows, audit.coverage_of(history))
    if output == "jsonl":
        text = audit.to_jsonl(entries)
    else:  # the readable CSV, local times in the program's timezone, as iop audit history
        client_ref = str(history[0].payload["client_ref"])
        text = history_text.to_csv(entries, client_ref, service.program_timezone)
    data = text.encode("utf-8")
    export_format = ExportFormat(f"audit-report-{output}")
    receipt = leaving.record(selected, export_format, data)
    return Export(data=data, disclosure=receipt)


@dataclass(frozen=True)
class HtmlReport:
    """The HTML report's bytes, what it says, and the disclosure it left under."""

    data: bytes
    report: AuditReport
    disclosure: Receipt


def export_audit_report_html(
    service: EpisodeService,
    episode_id: UUID,
    *,
    recipient: str,
    purpose: str,
    actor: Mapping[str, str],
    consent: bool = False,
    exception: str | None = None,
    as_of: datetime | None = None,
    timezone: str | None = None,
    command_id: str | None = None,
) -> HtmlReport:
    """The report ``iop audit report`` writes (entries up to ``as_of``), disclosed once.

    The disclosure names versions 1 to the report's version. Raises the
    refusal when the episode has no basis; nothing is recorded then.
    """
    terms = DisclosureTerms(recipient, purpose, actor, consent, exception, command_id)
    leaving = _leaving(service, terms)
    version = service.episode(episode_id, as_of=as_of).version
    shown = [e for e in episode_history(service, episode_id) if e.originator_version <= version]
    selected = leaving.one(episode_id, shown)
    covered = covering_checkpoint(service, episode_id, up_to={episode_id: version})
    report = build_report(
        service,
        episode_id,
        as_of=as_of,
        timezone=timezone or service.program_timezone,
        now=service.clock.now(),
        checkpoint=None if covered is None else CheckpointRef.of(covered),
    )
    data = render_report(report).encode("utf-8")
    disclosure = leaving.record(selected, ExportFormat.AUDIT_REPORT_HTML, data)
    return HtmlReport(data, report, disclosure)


def bundle_bytes(bundle: Mapping[str, Any]) -> bytes:
    """A proof bundle as ``iop audit prove`` writes it: indented JSON, ASCII, one newline."""
    return (json.dumps(bundle, indent=1) + "\n").encode("ascii")


@dataclass(frozen=True)
class ProofBundle:
    """The bundle's bytes, what it proves, and the disclosure it left under."""

    data: bytes
    proven: ProvenEpisode
    disclosure: Receipt


def export_proof_bundle(
    service: EpisodeService,
    episode_id: UUID,
    *,
    recipient: str,
    purpose: str,
    actor: Mapping[str, str],
    consent: bool = False,
    exception: str | None = None,
    command_id: str | None = None,
) -> ProofBundle:
    """The episode's proof bundle against the latest checkpoint, disclosed once.

    The disclosure names the versions the bundle carries (1 to n, those the
    checkpoint covers) and that checkpoint. Raises ``ProofUnavailable`` when
    no bundle can be made, or the refusal when the episode has no basis;
    nothing is recorded then.
    """
    terms = DisclosureTerms(recipient, purpose, actor, consent, exception, command_id)
    leaving = _leaving(service, terms)
    proven = prove_episode(service, episode_id)
    carried = episode_history(service, episode_id)[: proven.entries]
    selected = leaving.one(episode_id, carried)
    data = bundle_bytes(proven.bundle)
    root = str(proven.bundle["checkpoint"]["root"])
    disclosure = leaving.record(selected, ExportFormat.PROOF_BUNDLE, data, proven_against=root)
    return ProofBundle(data, proven, disclosure)
