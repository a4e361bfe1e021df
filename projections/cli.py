"""The read side's ``iop`` commands: schedule, audit and projections."""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from eventsourcing.persistence import DatabaseError
from pydantic import BaseModel

from iop_episodes.application import arguments, problems
from iop_episodes.application.output import Output, print_json, progress_bar
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit import commands as attestation
from iop_episodes.audit.integrity import FindingOutput
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import canonical_decimal as plain  # 9.50 -> "9.5"
from iop_episodes.domain.weeks import iso_week
from projections import audit, history_text
from projections.episodes import EpisodeList, episodes_table, list_episodes, resolve_episode
from projections.escaping import visible
from projections.exports import cli as exports_cli
from projections.exports.accounting import DisclosureRow, recorded
from projections.exports.api import check_can_record, export_audit_report_html
from projections.exports.delivery import staged
from projections.localtime import checked_timezone, shown
from projections.report import CheckpointRef
from projections.runner import Status, ViewRunner, ViewsUntrusted, open_views, reading_views
from projections.schedule import (
    EpisodeSchedule,
    ProgramRow,
    ProgramSchedule,
    episode_schedule,
    program_schedule,
)
from projections.views import EpisodeViews, MemoryEpisodeViews
from projections.worklist import RECERTIFY_WITHIN_DAYS, Worklist, build_worklist, worklist_text

EXIT_OK, EXIT_FAILED = problems.EXIT_OK, problems.EXIT_FINDING
EPISODE_HELP = "an episode id, or a client reference that names one episode"
TIMEZONE_HELP = "show times in this IANA timezone (default: the program's, $IOP_TIMEZONE)"


def notice(text: str) -> None:
    """A remark on stderr that is not a failure (the command goes on)."""
    print(f"iop: note: {text}", file=sys.stderr, flush=True)


def _reading(args: argparse.Namespace) -> EpisodeService:
    """A service for a command that only reads: it never creates or changes the store."""
    return EpisodeService(args.store, read_only=True)


def _views_for_reading(service: EpisodeService) -> EpisodeViews:
    return reading_views(service, notice)


def _now() -> datetime:
    return datetime.now(tz=UTC)


# ---- iop schedule ---------------------------------------------------------


def _client_cell(client_ref: str | None, *, sealed: bool) -> str:
    return "(sealed)" if sealed else visible(client_ref or "-")


def schedule_table(rows: list[ProgramRow], week: str) -> str:
    """A compact table: one line per active client."""
    header = (
        f"hour schedule for {week}: {len(rows)} clients active during the week\n"
        f"{'client':<16}  {'episode':<36}  {'level':>5}  {'target':>6}  {'attended':>8}  "
        f"{'compliance':>10}  {'sessions':>8}  {'doses':>5}  {'unexp+':>6}"
    )
    lines = [header]
    for row in rows:
        w = row.week
        lines.append(
            f"{_client_cell(row.client_ref, sealed=row.client_ref_sealed):<16}  "
            f"{visible(row.episode_id):<36}  {visible(row.level):>5}  {plain(w.target_hours):>6}  "
            f"{plain(w.attended_hours):>8}  {w.compliance:>10.0%}  {w.sessions:>8}  "
            f"{w.doses_dispensed:>5}  {w.unexpected_positive_screens:>6}"
        )
    return "\n".join(lines)


def episode_text(schedule: EpisodeSchedule, timezone: str) -> str:
    plan = ", ".join(f"{k} {plain(v)}" for k, v in schedule.plan_modality_hours.items())
    hours = (
        f"weekly hours {schedule.weekly_hours or '-'} (plan {schedule.plan_weekly_hours or '-'})"
    )
    client = _client_cell(schedule.client_ref, sealed=schedule.client_ref_sealed)
    lines = [
        (
            f"episode {visible(schedule.episode_id)}  client {client}  {visible(schedule.status)}  "
            f"level {visible(schedule.level or '-')}  {hours}"
        ),
        "plan by modality: " + (plan or "-"),
        f"plan started {shown(schedule.plan_started_at, timezone)}"
        + (
            f"  discharged {shown(schedule.discharged_at, timezone)}"
            if schedule.discharged_at
            else ""
        ),
    ]
    lines.extend(
        f"step-down v{step.version} {visible(step.week)} ({shown(step.occurred_at, timezone)}): "
        f"{plain(step.from_hours)} -> {plain(step.to_hours)} hours (level "
        f"{visible(step.to_level)}) by {visible(step.decided_by)} "
        f"({visible(step.decided_by_role)}{', ' + visible(step.policy) if step.policy else ''}): "
        f"{visible(step.reason)}"
        for step in schedule.taper
    )
    lines.extend(
        f"{visible(week.week)}  target {plain(week.target_hours):>5}  attended "
        f"{plain(week.attended_hours):>5}  {week.compliance:>5.0%}  sessions {week.sessions}"
        f"  doses {week.doses_dispensed}  negative {week.negative_screens}  unexpected+ "
        f"{week.unexpected_positive_screens}{'  (partial week)' if week.partial else ''}"
        for week in schedule.weeks
    )
    return "\n".join(lines)


def _display_timezone(args: argparse.Namespace, service: EpisodeService) -> str:
    """--timezone if given (checked), else the program's timezone."""
    if not args.timezone:
        return service.program_timezone
    try:
        return checked_timezone(args.timezone)
    except ValueError as error:
        raise problems.UsageProblem(str(error)) from None


def cmd_schedule(args: argparse.Namespace) -> int:
    with _reading(args) as service:
        timezone = _display_timezone(args, service)
        views = _views_for_reading(service)
        if args.episode:
            episode_id = resolve_episode(service, views, args.episode)
            found = episode_schedule(views, str(episode_id), _now(), timezone)
            if found is None:
                raise errors.EpisodeNotFound(f"no episode {args.episode}: see iop episodes")
            print(found.model_dump_json(indent=2) if args.json else episode_text(found, timezone))
            return EXIT_OK
        week = args.week or iso_week(_now(), service.program_timezone)
        rows = program_schedule(views, week, args.level)
        if args.json:
            print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        else:
            print(schedule_table(rows, week))
    return EXIT_OK


# ---- iop episodes -----------------------------------------------------------------


def _listing_service(args: argparse.Namespace) -> tuple[EpisodeService, bool]:
    """The store, and whether it is encrypted and no key was given (then entries stay sealed)."""
    try:
        return _reading(args), False
    except errors.StoreKeyError:
        service = EpisodeService(args.store, read_only=True, check_key=False)
        if service.mapper.cipher is not None:  # a key was given, and it is the wrong one
            service.close()
            raise
        return service, True


def cmd_episodes(args: argparse.Namespace) -> int:
    service, keyless = _listing_service(args)
    with service:
        timezone = _display_timezone(args, service)
        if keyless:
            notice(
                "the store is encrypted and IOP_CIPHER_KEY is not set: client references "
                "are sealed and the views are listed as they stand (not caught up)"
            )
            views = _views_as_they_stand(service)
        else:
            views = _views_for_reading(service)
        found = list_episodes(service, views, timezone, client=args.client, status=args.status)
    if args.json:
        print(json.dumps([listing.model_dump(mode="json") for listing in found], indent=2))
    else:
        print(episodes_table(found, timezone))
    return EXIT_OK


# ---- iop audit ------------------------------------------------------------------


def _check_version(service: EpisodeService, episode_id: Any, version: int | None) -> None:
    """``--version`` must be one the episode has: 1 to its head."""
    if version is None:
        return
    head = service.episode(episode_id).version
    if not 1 <= version <= head:
        msg = f"argument --version: episode {episode_id} has versions 1 to {head}, not {version}"
        raise problems.UsageProblem(msg)


def cmd_audit_history(args: argparse.Namespace) -> int:
    with _reading(args) as service:
        timezone = _display_timezone(args, service)
        views = _views_for_reading(service)
        episode_id = resolve_episode(service, views, args.episode)
        _check_version(service, episode_id, args.version)
        state = service.episode(episode_id, version=args.version, as_of=args.as_of)
        entries = audit.history(views, str(episode_id), version=state.version)
    if args.json:
        print(audit.AuditHistory(entries).model_dump_json(indent=2))
    elif args.format == "jsonl":
        sys.stdout.write(audit.to_jsonl(entries))
    elif args.format == "csv":
        sys.stdout.write(history_text.to_csv(entries, state.client_ref, timezone))
    else:
        sys.stdout.write(history_text.to_text(entries, state, timezone))
    return EXIT_OK


class ReportWritten(Output):
    """``iop audit report --json``: the report written, its verification, and its disclosure."""

    episode_id: str
    client_ref: str
    version: int
    """The report shows versions 1 to this (up to --as-of)."""
    out: str
    verification: Literal["ok", "FAILED"]
    checkpoint: CheckpointRef | None
    """The signed checkpoint that covers the entries shown, or null."""
    disclosure: DisclosureRow


def cmd_audit_report(args: argparse.Namespace) -> int:
    """The report leaves the program: its file is written only once its disclosure is recorded."""
    with (
        EpisodeService(args.store, create=False) as service,
        staged(args.out, service.store.url) as deliver,
    ):
        check_can_record(service)  # before the views are read
        timezone = _display_timezone(args, service)
        episode_id = resolve_episode(service, _views_for_reading(service), args.episode)
        try:
            export = export_audit_report_html(
                service,
                episode_id,
                **exports_cli.terms_of(args).keywords(),
                as_of=args.as_of,
                timezone=timezone,
            )
        except errors.EpisodeRuleError as error:
            print(f"iop audit report: refused: {error}", file=sys.stderr)
            return EXIT_FAILED
        deliver(export.data)
        disclosure = recorded(service, export.disclosure)
    report = export.report
    verdict = report.verification.verdict
    if args.json:
        print_json(
            ReportWritten(
                episode_id=str(episode_id),
                client_ref=report.summary.client_ref,
                version=report.summary.version,
                out=args.out,
                verification=verdict,
                checkpoint=report.checkpoint,
                disclosure=disclosure,
            )
        )
    else:
        print(
            f"audit report for episode {episode_id} (version {report.summary.version}) "
            f"written to {args.out}; verification {verdict}; "
            f"disclosure {disclosure.disclosure_id}"
        )
    return EXIT_OK if verdict == "ok" else EXIT_FAILED


class VerifyReport(Output):
    """``iop audit verify --json``: what was checked, every finding, and the verdict."""

    ok: bool
    episodes: int
    disclosures: int
    """Disclosures checked with the episodes (each a record of its own); 0 with EPISODE named."""
    entries: int
    snapshots: int
    view_rows: int
    findings: list[FindingOutput]
    checkpoints: dict[str, Any] | None = None  # with --witness: iop_episodes.audit.consistency


def _views_as_they_stand(service: EpisodeService) -> EpisodeViews:
    """The stored views, read and never written; empty ones when there are none yet."""
    try:
        views = open_views(service, create=False)
        views.position()
    except (DatabaseError, sqlite3.Error) as error:
        if "no such table" not in str(error) and "does not exist" not in str(error):
            raise
        notice("the store has no views yet: checking the entries against empty views")
        return MemoryEpisodeViews()
    return views


def _resolved(service: EpisodeService, references: list[str]) -> list[UUID]:
    """Episode ids for ids or client references, found apart from the views being verified."""
    if not references:
        return []
    found = MemoryEpisodeViews()
    ViewRunner(service, found).catch_up()
    return [resolve_episode(service, found, reference) for reference in references]


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify without catching up first: the views are checked as they stand."""
    if (args.witness is None) != (args.pubkey is None):
        raise problems.UsageProblem("audit verify: --witness and --pubkey go together")
    with _reading(args) as service:
        views = _views_as_they_stand(service)
        only = _resolved(service, args.episodes) or None
        with progress_bar("verify: events") as progress:
            result = audit.verify_all(service, views, only, jobs=args.jobs, progress=progress)
        try:  # the witness's checkpoints, when asked for
            attested = (
                None
                if args.witness is None
                else attestation.attest(service, args.witness, args.pubkey)
            )
        except ValueError as error:
            raise problems.UsageProblem(f"audit verify: {error}") from None
    checked, findings = result.checked, result.findings
    failures = len(findings) + (0 if attested is None else len(attested.findings))
    if args.json:
        print_json(
            VerifyReport(
                ok=not failures,
                episodes=checked.episodes,
                disclosures=checked.disclosures,
                entries=checked.entries,
                snapshots=checked.snapshots,
                view_rows=checked.view_rows,
                findings=[FindingOutput.of(finding) for finding in findings],
                checkpoints=None if attested is None else attested.as_json(),
            )
        )
    else:
        for finding in findings:
            print(finding)
        disclosures = checked.disclosures
        records = f"{checked.episodes} episodes" + (
            f" and {disclosures} disclosure{'s' * (disclosures != 1)}" if disclosures else ""
        )
        print(
            f"checked {records}, {checked.entries} entries, "
            f"{checked.snapshots} snapshots, {checked.view_rows} view rows"
        )
        if attested is not None:
            for problem in attested.findings:
                print(problem)
            print(attested.line())
        print("verification: ok" if not failures else f"verification: FAILED, {failures} findings")
    return EXIT_OK if not failures else EXIT_FAILED


# ---- iop worklist ---------------------------------------------------------------


def cmd_worklist(args: argparse.Namespace) -> int:
    as_of = args.as_of or _now()
    with _reading(args) as service:
        found = build_worklist(
            _views_for_reading(service), as_of, recertify_within_days=args.within
        )
    print(found.model_dump_json(indent=2) if args.json else worklist_text(found))
    return EXIT_OK


def register_worklist(commands: Any) -> None:
    worklist = commands.add_parser("worklist", help="what needs attention, per client")
    arguments.add_store(worklist)
    arguments.add_as_of(worklist, "as of this time (default: now)")
    worklist.add_argument(
        "--within",
        type=arguments.positive,
        default=RECERTIFY_WITHIN_DAYS,
        help="days ahead to list recertifications due (default 14)",
    )
    arguments.add_json(worklist)
    worklist.set_defaults(handler=cmd_worklist)


# ---- iop projections ---------------------------------------------------------------


class ProjectionStatus(Output):
    """``iop projections status --json``: where the views are in the store's log."""

    position: int
    """The last event the views reflect (notification id)."""
    head: int
    """The last event in the store."""
    lag: int
    """Events not yet projected: head - position, never negative."""
    projected_entries: int
    """Entries the audit view holds: one per projected event, so at most the position."""
    past_head: bool
    """The position is beyond the head: the views follow another store's log."""
    behind_views: bool
    """The views hold more entries than the position covers: it was moved back."""
    repair: str | None
    """The command that repairs the views, when they need it."""

    @classmethod
    def of(cls, status: Status) -> ProjectionStatus:
        return cls(
            position=status.position,
            head=status.head,
            lag=status.lag,
            projected_entries=status.projected or 0,
            past_head=status.past_head,
            behind_views=status.behind_views,
            repair="iop projections rebuild" if status.needs_rebuild else None,
        )


class ProjectionWork(Output):
    """``iop projections catch-up|rebuild --json``: what was projected, and where it ended."""

    action: Literal["catch-up", "rebuild"]
    projected: int
    seconds: float
    status: ProjectionStatus


def _status_line(status: Status) -> str:
    line = f"tracked position {status.position}, head {status.head}, lag {status.lag}"
    if status.past_head:
        line += (
            "; the position is PAST THE HEAD: the views follow another store's log; "
            "repair with iop projections rebuild"
        )
    elif status.behind_views:
        line += (
            f"; the views hold {status.projected} entries, more than the position covers: "
            "it was moved back; repair with iop projections rebuild"
        )
    return line


def _untrusted(error: ViewsUntrusted, service: EpisodeService) -> problems.IntegrityProblem:
    return problems.IntegrityProblem(
        f"{error}; repair with iop projections rebuild --store {service.store.display}"
    )


def cmd_projections_status(args: argparse.Namespace) -> int:
    with _reading(args) as service:
        head = service.recorder.max_notification_id() or 0
        try:
            views = open_views(service, create=False)
            status = Status(views.position(), head, views.audit_count())
        except DatabaseError as error:
            if "no such table" not in str(error) and "does not exist" not in str(error):
                raise
            status = Status(0, head, 0)  # no view tables yet: nothing projected
    if args.json:
        print_json(ProjectionStatus.of(status))
    else:
        print(_status_line(status))
    return EXIT_FAILED if status.needs_rebuild else EXIT_OK


def cmd_projections_run(args: argparse.Namespace) -> int:
    if args.json:
        msg = (
            "projections run reports on stderr as it goes; --json is for status, "
            "catch-up and rebuild"
        )
        raise problems.UsageProblem(msg)
    with EpisodeService(args.store) as service:
        runner = ViewRunner(service, batch_size=args.batch)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())  # finish the batch, then stop
        print(
            f"projections run: following {service.store.display} every {args.poll:g} s; "
            f"{_status_line(runner.status())} (SIGTERM or Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )

        def caught_up(projected: int) -> None:
            print(
                f"projections run: projected {projected} events; {_status_line(runner.status())}",
                file=sys.stderr,
                flush=True,
            )

        try:
            runner.run(stop, poll_seconds=args.poll, on_catch_up=caught_up)
        except ViewsUntrusted as error:
            raise _untrusted(error, service) from None
        print(
            f"projections run: stopped; {_status_line(runner.status())}",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_OK


def cmd_projections_work(args: argparse.Namespace) -> int:
    with EpisodeService(args.store, create=False) as service:
        runner = ViewRunner(service, batch_size=args.batch)
        work = runner.catch_up
        if args.action == "rebuild":
            work = runner.rebuild_online if args.online else runner.rebuild
        started = time.perf_counter()
        try:
            with progress_bar(f"{args.action}: events") as progress:
                projected = work(progress)
        except ViewsUntrusted as error:
            raise _untrusted(error, service) from None
        status = runner.status()
    report = ProjectionWork(
        action=args.action,
        projected=projected,
        seconds=round(time.perf_counter() - started, 3),
        status=ProjectionStatus.of(status),
    )
    if args.json:
        print_json(report)
    else:
        print(f"{args.action}: projected {projected} events; {_status_line(status)}")
    return EXIT_OK


def cmd_projections(args: argparse.Namespace) -> int:
    if args.online and args.action != "rebuild":
        raise problems.UsageProblem("projections: --online goes with rebuild")
    if args.action == "status":
        return cmd_projections_status(args)
    if args.action == "run":
        return cmd_projections_run(args)
    return cmd_projections_work(args)


JSON_MODELS: dict[str, type[BaseModel]] = {
    "audit report": ReportWritten,
    "audit verify": VerifyReport,
    "projections status": ProjectionStatus,
    "projections catch-up": ProjectionWork,
    "projections rebuild": ProjectionWork,
    "episodes": EpisodeList,
    "schedule": ProgramSchedule,
    "worklist": Worklist,
    "schedule --episode": EpisodeSchedule,
    "audit history": audit.AuditHistory,
    **exports_cli.JSON_MODELS,  # export fhir|teds|audit-report, audit disclosures
}
"""Each read-side command's ``--json`` shape, for ``iop schema``."""


def register_episodes(commands: Any) -> None:
    episodes = commands.add_parser("episodes", help="find clients: episodes by client reference")
    arguments.add_store(episodes)
    episodes.add_argument("--client", metavar="REF", help="only this client reference")
    episodes.add_argument(
        "--status", choices=["assessed", "active", "discharged"], help="only this status"
    )
    episodes.add_argument("--timezone", metavar="TZ", help=TIMEZONE_HELP)
    arguments.add_json(episodes)
    episodes.set_defaults(handler=cmd_episodes)


def register(commands: Any) -> None:
    """Add the read side's commands, group by group."""
    register_worklist(commands)
    _register_schedule(commands)
    register_episodes(commands)
    audit_commands = commands.add_parser("audit", help="auditor's tools").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION", help="what to check or show"
    )
    _register_audit_reading(audit_commands)
    exports_cli.register(commands, audit_commands)
    attestation.register(audit_commands)
    _register_projections(commands)


def _register_schedule(commands: Any) -> None:
    schedule = commands.add_parser("schedule", help="current hour schedules")
    arguments.add_store(schedule)
    schedule.add_argument(
        "--week", type=arguments.iso_week, help="ISO week such as 2026-W48 (default: this week)"
    )
    schedule.add_argument(
        "--episode", help="one episode's schedule, taper and weeks (episode id or client reference)"
    )
    schedule.add_argument("--level", choices=["2.1", "1"], help="only clients at this level")
    arguments.add_json(schedule)
    schedule.add_argument("--timezone", help=TIMEZONE_HELP)
    schedule.set_defaults(handler=cmd_schedule)


def _register_audit_reading(audit_commands: Any) -> None:
    """``iop audit history|report|verify``."""
    hist = audit_commands.add_parser("history", help="an episode's entries in order")
    hist.add_argument("episode", help=EPISODE_HELP)
    arguments.add_store(hist)
    hist.add_argument("--timezone", help=TIMEZONE_HELP)
    when = hist.add_mutually_exclusive_group()
    arguments.add_as_of(when, "as recorded at this time")
    when.add_argument(
        "--version", type=arguments.positive, help="up to this version (1 to the episode's head)"
    )
    shape = hist.add_mutually_exclusive_group()
    shape.add_argument(
        "--format", choices=["text", "jsonl", "csv"], default="text", help="output (text)"
    )
    shape.add_argument(
        "--json",
        action="store_true",
        help="print the entries as one JSON array (each item as a --format jsonl line)",
    )
    hist.set_defaults(handler=cmd_audit_history)
    _register_audit_report(audit_commands)
    _register_audit_verify(audit_commands)


def _register_audit_report(audit_commands: Any) -> None:
    report = audit_commands.add_parser("report", help="a self-contained HTML report to hand over")
    report.add_argument("episode", help=EPISODE_HELP)
    arguments.add_store(report)
    arguments.add_as_of(report, "as recorded at this time")
    report.add_argument("--timezone", metavar="TZ", help=TIMEZONE_HELP)
    report.add_argument("--out", required=True, metavar="FILE.html", help="the HTML file to write")
    exports_cli.disclosure_options(report)
    arguments.add_json(report)
    report.set_defaults(handler=cmd_audit_report)


def _register_audit_verify(audit_commands: Any) -> None:
    verify = audit_commands.add_parser(
        "verify", help="entries, seals, snapshots, tracking and every view row"
    )
    verify.add_argument(
        "episodes", nargs="*", help="episode ids or client references (default: all)"
    )
    arguments.add_store(verify)
    arguments.add_json(verify)
    verify.add_argument(
        "--jobs", type=arguments.positive, default=1, help="processes to verify with (default 1)"
    )
    verify.add_argument("--witness", help="check the store against this witness's checkpoints")
    verify.add_argument("--pubkey", help="public key file for the witness's checkpoints")
    verify.set_defaults(handler=cmd_audit_verify)


def _register_projections(commands: Any) -> None:
    proj = commands.add_parser("projections", help="keep the read side up to date")
    proj.add_argument(
        "action",
        choices=["status", "catch-up", "run", "rebuild"],
        help="status: where the views are; catch-up: project what is new; run: keep "
        "catching up until stopped; rebuild: forget the views and project everything",
    )
    arguments.add_store(proj)
    proj.add_argument(
        "--batch", type=arguments.positive, default=500, help="events per transaction (500)"
    )
    proj.add_argument(
        "--poll", type=arguments.seconds, default=1.0, help="seconds between catch-ups (run: 1)"
    )
    arguments.add_json(proj)
    proj.add_argument(
        "--online",
        action="store_true",
        help="rebuild beside the live views and switch at once (readers never see it half-built)",
    )
    proj.set_defaults(handler=cmd_projections)
