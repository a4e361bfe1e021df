"""``iop export fhir|teds|audit-report``, ``iop audit prove`` and ``iop audit disclosures``.

Every export names its disclosure (``--recipient``, ``--purpose``, ``--as``
and ``--consent`` or ``--exception``). Exit codes: 0 everything asked for was
exported, 1 something was refused (each refusal is named on stderr and
nothing of it is written), 2 bad usage (an unknown episode among it, or an
``--out`` that cannot be written, found before anything is recorded), 4 a
sealed store without its key. The data goes to ``--out`` (``delivery``);
with ``--json`` (and ``--out`` a file or directory) stdout holds one
``ExportSummary`` instead of the summary line on stderr, refused or not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, time
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from iop_episodes.application import arguments, problems
from iop_episodes.application.output import Output, print_json, progress_bar
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.bundle import ProofUnavailable
from iop_episodes.audit.checkpoints import Checkpoint
from iop_episodes.domain import errors
from iop_episodes.domain.catalog import DisclosureException
from iop_episodes.domain.weeks import zone
from projections.episodes import resolve_episode
from projections.exports import accounting, api, codes
from projections.exports.delivery import staged, staged_folder
from projections.exports.disclosure import EXCEPTIONS, actor_of
from projections.runner import reading_views
from projections.views import EpisodeViews

EXIT_OK, EXIT_FAILED = problems.EXIT_OK, problems.EXIT_FINDING
EXIT_USAGE = problems.EXIT_USAGE
EPISODE_HELP = "an episode id, or a client reference that names one episode"


class ExportRefusal(Output):
    episode_id: str | None
    """Null when the whole export was refused before any episode was read (TEDS)."""
    rule: str
    """The rule that refused it, such as disclosure-needs-consent-in-force."""
    reason: str
    """The rule in brackets and why, as the line on stderr gives it."""


class ExportSummary(Output):
    """``iop export fhir|teds|audit-report --json --out PATH``: what left, and its disclosure.

    The exported data itself is written to PATH in its own format: FHIR R4
    (docs/fhir.md), TEDS (docs/teds.md) or the audit history
    (docs/history-formats.md).
    """

    exported: int
    """FHIR bundles (one per episode), TEDS records, or 1 for the audit-report's episode."""
    refused: list[ExportRefusal]
    """Each episode left out for want of a basis; nothing of it was written."""
    disclosure_id: str | None
    """The Disclosure recorded for what left; null when nothing did."""
    size_bytes: int
    """The bytes written, which the disclosure's sha256 covers."""
    out: str


class ProofWritten(Output):
    """``iop audit prove --json``: the bundle written, what it covers, and its disclosure."""

    episode_id: str
    out: str
    entries: int
    """Entries in the bundle: versions 1 to this, covered by the checkpoint."""
    not_yet_attested: int
    """The episode's entries after the checkpoint, left out."""
    checkpoint: Checkpoint
    disclosure: accounting.DisclosureRow


JSON_MODELS: dict[str, type[BaseModel]] = {
    "audit prove": ProofWritten,
    "export fhir": ExportSummary,
    "export teds": ExportSummary,
    "export audit-report": ExportSummary,
    "audit disclosures": accounting.DisclosureList,
}
"""The exports' and the accounting's ``--json`` shapes, for ``iop schema``."""


def _disclosure_options(parser: argparse.ArgumentParser) -> None:
    arguments.add_store(parser)
    disclosure_options(parser)


def disclosure_options(parser: argparse.ArgumentParser) -> None:
    """``--recipient``, ``--purpose``, ``--as`` and one basis: every export names its disclosure."""
    parser.add_argument("--recipient", required=True, help="who receives the records")
    parser.add_argument("--purpose", required=True, help="why, as the consent names it")
    parser.add_argument("--as", dest="actor", required=True, help="ID:ROLE of who discloses")
    basis = parser.add_mutually_exclusive_group(required=True)
    basis.add_argument(
        "--consent", action="store_true", help="each episode's consent in force is the basis"
    )
    basis.add_argument(
        "--exception",
        choices=[str(name) for name in DisclosureException],
        help="; ".join(f"{name} ({cite})" for name, cite in EXCEPTIONS.items()),
    )


def _named(error: errors.EpisodeError, command: str) -> str:
    notes = "; ".join(getattr(error, "__notes__", []))
    return f"iop {command}: refused{' (' + notes + ')' if notes else ''}: {error}"


def _check_json_out(args: argparse.Namespace, command: str) -> None:
    if args.json and args.out == "-":
        msg = f"{command}: --json prints a summary on stdout; give --out a path for the data"
        raise problems.UsageProblem(msg)


def _note(text: str) -> None:
    print(f"iop: note: {text}", file=sys.stderr, flush=True)


def episode_ids(service: EpisodeService, references: Sequence[str]) -> list[UUID]:
    """Each reference's episode: an id as given, or the one episode of a client reference."""
    views: EpisodeViews | None = None
    found = []
    for reference in references:
        try:
            found.append(UUID(reference))
            continue
        except ValueError:
            pass
        if views is None:  # only a client reference needs the views
            views = reading_views(service, _note)
        found.append(resolve_episode(service, views, reference))
    return found


def terms_of(args: argparse.Namespace) -> api.DisclosureTerms:
    """The disclosure the command line names (``--recipient``, ``--purpose``, ``--as``, basis)."""
    return api.DisclosureTerms(
        args.recipient, args.purpose, actor_of(args.actor), args.consent, args.exception
    )


def cmd_export_fhir(args: argparse.Namespace) -> int:
    if bool(args.episodes) == args.all:
        raise problems.UsageProblem("export fhir: name EPISODE ids or --all (not both)")
    _check_json_out(args, "export fhir")
    with EpisodeService(args.store, create=False) as service, _fhir_out(args.out) as deliver:
        api.check_can_record(service)  # before any episode is read
        wanted = _wanted(args, service)
        try:
            with progress_bar("export fhir: bundles") as progress:
                export = api.export_fhir_many(
                    service,
                    wanted,
                    **terms_of(args).keywords(),
                    transaction=args.transaction,
                    patient_system=args.patient_system,
                    progress=progress,
                )
        except errors.EpisodeRuleError as error:
            return _refused_whole(args, error, wanted)
        if export.bundles:  # a refused export writes nothing at all
            deliver(export)
    return _summary(args, export, count=len(export.bundles), what="bundles", refused="refused")


def _wanted(args: argparse.Namespace, service: EpisodeService) -> list[UUID]:
    """The episodes ``export fhir`` names (or all), recorded since ``--since``."""
    with progress_bar("export fhir: reading episodes") as progress:
        histories = api.episode_histories(service, progress)
    wanted = list(histories) if args.all else episode_ids(service, args.episodes)
    missing = [episode_id for episode_id in wanted if episode_id not in histories]
    if missing:
        msg = f"export fhir: no episode {missing[0]} (iop episodes lists them)"
        raise errors.EpisodeNotFound(msg)
    if args.since is not None:
        wanted = [e for e in wanted if histories[e][-1].timestamp >= args.since]
    return wanted


@contextmanager
def _fhir_out(out: str) -> Iterator[Callable[[api.FhirExport], None]]:
    """NDJSON on stdout for ``-``, else one file per bundle in the folder ``out``."""
    if out == "-":
        yield lambda export: _to_stdout(export.data)
        return
    with staged_folder(out) as deliver:
        yield lambda export: deliver(
            {f"{episode_id}.json": api.serialize(b) for episode_id, b in export.bundles.items()}
        )


def _to_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _refused_whole(
    args: argparse.Namespace, error: errors.EpisodeRuleError, episodes: Sequence[UUID | None]
) -> int:
    """The whole export refused (exit 1): the line on stderr and, with --json, its summary."""
    command = f"export {args.export_command}"
    print(_named(error, command), file=sys.stderr)
    if args.json:
        refusals = [
            ExportRefusal(
                episode_id=None if e is None else str(e), rule=error.rule, reason=str(error)
            )
            for e in episodes
        ]
        summary = ExportSummary(
            exported=0, refused=refusals, disclosure_id=None, size_bytes=0, out=args.out
        )
        print_json(summary)
    return EXIT_FAILED


def _summary(
    args: argparse.Namespace, export: api.Export, *, count: int, what: str, refused: str
) -> int:
    """Name each refusal and the disclosure on stderr; exit 1 when anything was refused."""
    command = f"export {args.export_command}"
    for refusal in export.refused.values():
        print(_named(refusal, command), file=sys.stderr)
    disclosure = export.disclosure.episode_id if export.disclosure else None
    if args.json:
        print_json(
            ExportSummary(
                exported=count,
                refused=[
                    ExportRefusal(
                        episode_id=str(episode_id), rule=refusal.rule, reason=str(refusal)
                    )
                    for episode_id, refusal in export.refused.items()
                ],
                disclosure_id=None if disclosure is None else str(disclosure),
                size_bytes=len(export.data),
                out=args.out,
            )
        )
    else:
        print(
            f"iop {command}: {count} {what} exported, {len(export.refused)} {refused}; "
            f"disclosure {disclosure or 'none'}",
            file=sys.stderr,
        )
    return EXIT_FAILED if export.refused else EXIT_OK


def cmd_export_teds(args: argparse.Namespace) -> int:
    start, end = args.from_date, args.to_date
    if end < start:
        raise problems.UsageProblem("export teds: --to is before --from")
    _check_json_out(args, "export teds")
    with (
        EpisodeService(args.store, create=False) as service,
        staged(args.out, service.store.url, dash_is_stdout=True) as deliver,
    ):
        try:
            with progress_bar("export teds: reading episodes") as progress:
                export = api.export_teds(
                    service,
                    kind="admission" if args.admissions else "discharge",
                    start=start,
                    end=end,
                    **terms_of(args).keywords(),
                    output=args.format,
                    progress=progress,
                )
        except errors.EpisodeRuleError as error:
            return _refused_whole(args, error, [None])
        if export.data:
            deliver(export.data)
    count = len(export.records)
    return _summary(args, export, count=count, what="records", refused="episodes refused")


def cmd_export_audit_report(args: argparse.Namespace) -> int:
    _check_json_out(args, "export audit-report")
    with (
        EpisodeService(args.store, create=False) as service,
        staged(args.out, service.store.url, dash_is_stdout=True) as deliver,
    ):
        api.check_can_record(service)
        (episode_id,) = episode_ids(service, [args.episode])
        try:
            with progress_bar("export audit-report: the episode") as progress:
                progress(0, 1)
                export = api.audit_report_export(
                    service, episode_id, **terms_of(args).keywords(), output=args.format
                )
                progress(1, 1)
        except errors.EpisodeRuleError as error:  # an unknown episode is a usage error (2)
            return _refused_whole(args, error, [episode_id])
        deliver(export.data)
    if args.json:
        _summary(args, export, count=1, what="episode", refused="refused")
    return EXIT_OK


def cmd_audit_prove(args: argparse.Namespace) -> int:
    with (
        EpisodeService(args.store, create=False) as service,
        staged(args.out, service.store.url) as deliver,
    ):
        api.check_can_record(service)
        (episode_id,) = episode_ids(service, [args.episode])
        service.episode(episode_id)  # an unknown id is a usage error (2), as everywhere
        try:
            export = api.export_proof_bundle(service, episode_id, **terms_of(args).keywords())
        except ProofUnavailable as error:
            print(f"iop audit prove: {error}", file=sys.stderr)
            return EXIT_FAILED
        except errors.EpisodeRuleError as error:
            print(f"iop audit prove: refused: {error}", file=sys.stderr)
            return EXIT_FAILED
        deliver(export.data)
        disclosure = accounting.recorded(service, export.disclosure)
    proven = export.proven
    checkpoint = Checkpoint.model_validate(proven.bundle["checkpoint"])
    if args.json:
        print_json(
            ProofWritten(
                episode_id=str(episode_id),
                out=args.out,
                entries=proven.entries,
                not_yet_attested=proven.not_yet_attested,
                checkpoint=checkpoint,
                disclosure=disclosure,
            )
        )
        return EXIT_OK
    print(
        f"bundle: episode {episode_id}, {proven.entries} entries, checkpoint size "
        f"{checkpoint.size} key {checkpoint.key_id}, written to {args.out}; "
        f"disclosure {disclosure.disclosure_id}"
    )
    if proven.not_yet_attested:
        print(f"not yet attested (left out): {proven.not_yet_attested} entries")
    return EXIT_OK


def cmd_audit_disclosures(args: argparse.Namespace) -> int:
    with EpisodeService(args.store, read_only=True) as service:  # it only reads
        timezone = args.timezone or service.program_timezone
        today = datetime.now(tz=zone(timezone)).date()
        since_day = args.since or accounting.three_years_before(today)
        since = datetime.combine(since_day, time(0), tzinfo=zone(timezone))
        rows = accounting.disclosures(service, client=args.client, since=since)
    if args.json:
        print(accounting.DisclosureList(rows).model_dump_json(indent=2))  # the published model
    else:
        sys.stdout.write(accounting.to_text(rows, timezone))
    return EXIT_OK


def _json_summary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON summary of what was exported on stdout (needs --out PATH)",
    )


def register(commands: Any, audit_commands: Any) -> None:
    """Add ``iop export``, ``iop audit prove`` and ``iop audit disclosures``."""
    exports = commands.add_parser("export", help="records that leave the program").add_subparsers(
        dest="export_command", required=True, metavar="KIND", help="what to export"
    )
    _register_fhir(exports)
    _register_teds(exports)
    _register_audit_report(exports)
    _register_prove(audit_commands)
    _register_disclosures(audit_commands)


def _register_fhir(exports: Any) -> None:
    fhir = exports.add_parser("fhir", help="one FHIR R4 Bundle per episode")
    fhir.add_argument(
        "episodes", nargs="*", help="episode ids, or client references that name one episode each"
    )
    fhir.add_argument("--all", action="store_true", help="every episode in the store")
    fhir.add_argument(
        "--since",
        type=arguments.moment,
        metavar="TIME",
        help="only episodes with entries recorded since this ISO 8601 time with offset",
    )
    fhir.add_argument("--out", default="-", help="a directory, or - for NDJSON on stdout")
    _json_summary(fhir)
    fhir.add_argument("--transaction", action="store_true", help="transaction bundles")
    fhir.add_argument(
        "--patient-system",
        default=codes.CLIENT_REF_SYSTEM,
        help=f"the identifier system of client references ({codes.CLIENT_REF_SYSTEM})",
    )
    _disclosure_options(fhir)
    fhir.set_defaults(handler=cmd_export_fhir)


def _register_teds(exports: Any) -> None:
    teds = exports.add_parser("teds", help="TEDS admission or discharge records")
    kind = teds.add_mutually_exclusive_group(required=True)
    kind.add_argument("--admissions", action="store_true", help="admission records")
    kind.add_argument("--discharges", action="store_true", help="discharge records")
    teds.add_argument(
        "--from", dest="from_date", type=arguments.day, required=True, help="first day, YYYY-MM-DD"
    )
    teds.add_argument(
        "--to", dest="to_date", type=arguments.day, required=True, help="last day, YYYY-MM-DD"
    )
    teds.add_argument("--format", choices=["csv", "json"], default="csv", help="output (csv)")
    teds.add_argument("--out", default="-", help="a file, or - for stdout")
    _json_summary(teds)
    _disclosure_options(teds)
    teds.set_defaults(handler=cmd_export_teds)


def _register_audit_report(exports: Any) -> None:
    report = exports.add_parser("audit-report", help="an episode's audit history, disclosed")
    report.add_argument("episode", help=EPISODE_HELP)
    report.add_argument(
        "--format", choices=["jsonl", "csv"], default="jsonl", help="output (jsonl)"
    )
    report.add_argument("--out", default="-", help="a file, or - for stdout")
    _json_summary(report)
    _disclosure_options(report)
    report.set_defaults(handler=cmd_export_audit_report)


def _register_prove(audit_commands: Any) -> None:
    prove = audit_commands.add_parser(
        "prove", help="a proof bundle for one episode against the latest checkpoint, disclosed"
    )
    prove.add_argument("episode", help=EPISODE_HELP)
    prove.add_argument("--out", required=True, metavar="FILE", help="the bundle's JSON file")
    _disclosure_options(prove)
    arguments.add_json(prove)
    prove.set_defaults(handler=cmd_audit_prove)


def _register_disclosures(audit_commands: Any) -> None:
    accounting_parser = audit_commands.add_parser(
        "disclosures", help="the accounting of disclosures (42 CFR Part 2)"
    )
    arguments.add_store(accounting_parser)
    accounting_parser.add_argument("--client", help="only disclosures of this client reference")
    accounting_parser.add_argument(
        "--since",
        type=arguments.day,
        metavar="DATE",
        help="from the start of this day, YYYY-MM-DD (default: three years ago)",
    )
    arguments.add_timezone(accounting_parser, "to show times and count days in")
    arguments.add_json(accounting_parser)
    accounting_parser.set_defaults(handler=cmd_audit_disclosures)
