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

from eventsourcing.persistence import DatabaseError

from iop_episodes.application import arguments, problems
from iop_episodes.application.output import Output, print_json, progress_bar
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit import commands as attestation
from iop_episodes.audit.integrity import Finding
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import canonical_decimal as plain  # 9.50 -> "9.5"
from iop_episodes.domain.weeks import iso_week
from projections import audit
from projections.exports import cli as exports_cli
from projections.runner import Status, ViewRunner, ViewsUntrusted, open_views, reading_views
from projections.schedule import (
    EpisodeSchedule,
    ProgramRow,
    episode_schedule,
    program_schedule,
)
from projections.views import EpisodeViews, MemoryEpisodeViews
from projections.worklist import RECERTIFY_WITHIN_DAYS, build_worklist, worklist_text

EXIT_OK, EXIT_FAILED = 0, 1


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


def schedule_table(rows: list[ProgramRow], week: str) -> str:
    """A compact table: one line per active client."""
    header = (
        f"hour schedule for {week}: {len(rows)} clients active during the week\n"
        f"{'episode':<36}  {'level':>5}  {'target':>6}  {'attended':>8}  "
        f"{'compliance':>10}  {'sessions':>8}  {'doses':>5}  {'unexp+':>6}"
    )
    lines = [header]
    for row in rows:
        w = row.week
        lines.append(
            f"{row.episode_id:<36}  {row.level:>5}  {plain(w.target_hours):>6}  "
            f"{plain(w.attended_hours):>8}  {w.compliance:>10.0%}  {w.sessions:>8}  "
            f"{w.doses_dispensed:>5}  {w.unexpected_positive_screens:>6}"
        )
    return "\n".join(lines)


def episode_text(schedule: EpisodeSchedule) -> str:
    plan = ", ".join(f"{k} {plain(v)}" for k, v in schedule.plan_modality_hours.items())
    hours = (
        f"weekly hours {schedule.weekly_hours or '-'} (plan {schedule.plan_weekly_hours or '-'})"
    )
    lines = [
        f"episode {schedule.episode_id}  {schedule.status}  level {schedule.level or '-'}  {hours}",
        "plan by modality: " + (plan or "-"),
        f"plan started {schedule.plan_started_at or '-'}",
    ]
    lines.extend(
        f"step-down v{step.version} {step.week}: {plain(step.from_hours)} -> "
        f"{plain(step.to_hours)} hours (level {step.to_level}) by {step.decided_by} "
        f"({step.decided_by_role}{', ' + step.policy if step.policy else ''}): {step.reason}"
        for step in schedule.taper
    )
    lines.extend(
        f"{week.week}  target {plain(week.target_hours):>5}  attended "
        f"{plain(week.attended_hours):>5}  {week.compliance:>5.0%}  sessions {week.sessions}"
        f"  doses {week.doses_dispensed}  negative {week.negative_screens}  unexpected+ "
        f"{week.unexpected_positive_screens}{'  (partial week)' if week.partial else ''}"
        for week in schedule.weeks
    )
    return "\n".join(lines)


def cmd_schedule(args: argparse.Namespace) -> int:
    with _reading(args) as service:
        views = _views_for_reading(service)
        if args.episode:
            found = episode_schedule(views, str(args.episode), _now())
            if found is None:
                raise errors.EpisodeNotFound(f"no episode {args.episode}: see iop episodes")
            print(found.model_dump_json(indent=2) if args.json else episode_text(found))
            return EXIT_OK
        week = args.week or iso_week(_now(), service.program_timezone)
        rows = program_schedule(views, week, args.level)
        if args.json:
            print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        else:
            print(schedule_table(rows, week))
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
    episode_id = args.episode
    as_of = args.as_of
    with _reading(args) as service:
        _check_version(service, episode_id, args.version)
        state = service.episode(episode_id, version=args.version, as_of=as_of)
        views = _views_for_reading(service)
        entries = audit.history(views, str(episode_id), version=state.version)
    if args.format == "jsonl":
        sys.stdout.write(audit.to_jsonl(entries))
    elif args.format == "csv":
        sys.stdout.write(audit.to_csv(entries))
    else:
        sys.stdout.write(audit.to_text(entries, state))
    return EXIT_OK


class FindingOutput(Output):
    """One thing wrong with a stored history or the views."""

    episode_id: str
    version: int
    problem: str
    detail: str

    @classmethod
    def of(cls, finding: Finding) -> FindingOutput:
        return cls(
            episode_id=str(finding.episode_id),
            version=finding.version,
            problem=finding.problem,
            detail=finding.detail,
        )


class VerifyReport(Output):
    """``iop audit verify --json``: what was checked, every finding, and the verdict."""

    ok: bool
    episodes: int
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


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify without catching up first: the views are checked as they stand."""
    if (args.witness is None) != (args.pubkey is None):
        raise problems.UsageProblem("audit verify: --witness and --pubkey go together")
    with _reading(args) as service:
        result = audit.verify_all(
            service, _views_as_they_stand(service), args.episodes or None, jobs=args.jobs
        )
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
        print(
            f"checked {checked.episodes} episodes, {checked.entries} entries, "
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
    worklist.add_argument(
        "--as-of",
        type=arguments.moment,
        metavar="TIME",
        help="as of this ISO 8601 time with offset (default: now)",
    )
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


JSON_MODELS: dict[str, type[Output]] = {
    "audit verify": VerifyReport,
    "projections status": ProjectionStatus,
    "projections catch-up": ProjectionWork,
    "projections rebuild": ProjectionWork,
}
"""Each read-side command's ``--json`` shape, for ``iop schema``."""


def register(commands: Any) -> None:
    register_worklist(commands)
    schedule = commands.add_parser("schedule", help="current hour schedules")
    arguments.add_store(schedule)
    schedule.add_argument(
        "--week", type=arguments.iso_week, help="ISO week such as 2026-W48 (default: this week)"
    )
    schedule.add_argument(
        "--episode", type=arguments.episode_id, help="one episode's schedule, taper and weeks"
    )
    schedule.add_argument("--level", choices=["2.1", "1"], help="only clients at this level")
    arguments.add_json(schedule)
    schedule.set_defaults(handler=cmd_schedule)

    audit_commands = commands.add_parser("audit", help="auditor's tools").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION", help="what to check or show"
    )
    hist = audit_commands.add_parser("history", help="an episode's entries in order")
    hist.add_argument("episode", type=arguments.episode_id, help="the episode id")
    arguments.add_store(hist)
    when = hist.add_mutually_exclusive_group()
    when.add_argument(
        "--as-of",
        type=arguments.moment,
        metavar="TIME",
        help="as recorded at this ISO 8601 time with offset",
    )
    when.add_argument(
        "--version", type=arguments.positive, help="up to this version (1 to the episode's head)"
    )
    hist.add_argument(
        "--format", choices=["text", "jsonl", "csv"], default="text", help="output (text)"
    )
    hist.set_defaults(handler=cmd_audit_history)

    verify = audit_commands.add_parser(
        "verify", help="entries, seals, snapshots, tracking and every view row"
    )
    verify.add_argument(
        "episodes", nargs="*", type=arguments.episode_id, help="episode ids (default: all)"
    )
    arguments.add_store(verify)
    arguments.add_json(verify)
    verify.add_argument(
        "--jobs", type=arguments.positive, default=1, help="processes to verify with (default 1)"
    )
    verify.add_argument("--witness", help="check the store against this witness's checkpoints")
    verify.add_argument("--pubkey", help="public key file for the witness's checkpoints")
    verify.set_defaults(handler=cmd_audit_verify)
    exports_cli.register(commands, audit_commands)
    attestation.register(audit_commands)

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
