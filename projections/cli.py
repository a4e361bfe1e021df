"""The read side's ``iop`` commands: schedule, audit and projections."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit import commands as attestation
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import canonical_decimal as plain  # 9.50 -> "9.5"
from iop_episodes.domain.values import Model
from iop_episodes.domain.weeks import iso_week
from projections import audit
from projections.exports import cli as exports_cli
from projections.runner import Status, ViewRunner, open_views
from projections.schedule import (
    EpisodeSchedule,
    ProgramRow,
    episode_schedule,
    program_schedule,
)
from projections.worklist import RECERTIFY_WITHIN_DAYS, build_worklist, worklist_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROGRESS_EVERY = 5_000


def progress_printer(label: str) -> Any:
    """Report long catch-ups on stderr every few thousand events."""
    last = [0]

    def report(position: int, head: int) -> None:
        if position - last[0] >= PROGRESS_EVERY or position == head:
            last[0] = position
            print(f"{label}: {position}/{head}", file=sys.stderr, flush=True)

    return report


def _service(args: argparse.Namespace) -> EpisodeService:
    return EpisodeService(args.store)


def _now() -> datetime:
    return datetime.now(tz=UTC)


# ---- iop schedule ---------------------------------------------------------


def schedule_table(rows: list[ProgramRow], week: str) -> str:
    """A compact table: one line per active client."""
    header = (
        f"hour schedule for {week}: {len(rows)} active clients\n"
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
    with _service(args) as service:
        runner = ViewRunner(service)
        runner.catch_up(progress_printer("catching up"))
        if args.episode:
            found = episode_schedule(runner.views, str(UUID(args.episode)), _now())
            if found is None:
                print(f"iop schedule: no episode {args.episode}", file=sys.stderr)
                return EXIT_FAILED
            print(found.model_dump_json(indent=2) if args.json else episode_text(found))
            return EXIT_OK
        week = args.week or iso_week(_now(), service.program_timezone)
        rows = program_schedule(runner.views, week, args.level)
        if args.json:
            print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        else:
            print(schedule_table(rows, week))
    return EXIT_OK


# ---- iop audit ------------------------------------------------------------------


def cmd_audit_history(args: argparse.Namespace) -> int:
    episode_id = UUID(args.episode)
    as_of = datetime.fromisoformat(args.as_of) if args.as_of else None
    if as_of is not None and as_of.tzinfo is None:
        print(
            "iop audit history: --as-of needs a timezone, such as 2026-03-01T00:00Z",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with _service(args) as service:
        runner = ViewRunner(service)
        runner.catch_up(progress_printer("catching up"))
        try:
            state = service.episode(episode_id, version=args.version, as_of=as_of)
        except errors.EpisodeNotFound as error:
            print(f"iop audit history: {error}", file=sys.stderr)
            return EXIT_FAILED
        entries = audit.history(runner.views, str(episode_id), version=state.version)
    if args.format == "jsonl":
        sys.stdout.write(audit.to_jsonl(entries))
    elif args.format == "csv":
        sys.stdout.write(audit.to_csv(entries))
    else:
        sys.stdout.write(audit.to_text(entries, state))
    return EXIT_OK


class VerifiedFinding(Model):
    episode_id: str
    version: int
    problem: str
    detail: str


class VerifyReport(Model):
    """``iop audit verify --json``: what was checked, every finding, and the verdict."""

    ok: bool
    episodes: int
    entries: int
    snapshots: int
    view_rows: int
    findings: list[VerifiedFinding]
    checkpoints: dict[str, Any] | None = None  # with --witness: iop_episodes.audit.consistency


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify without catching up first: the views are checked as they stand."""
    if (args.witness is None) != (args.pubkey is None):
        print("iop audit verify: --witness and --pubkey go together", file=sys.stderr)
        return EXIT_USAGE
    with _service(args) as service:
        only = [UUID(value) for value in args.episodes] or None
        result = audit.verify_all(service, open_views(service), only, jobs=args.jobs)
        try:  # the witness's checkpoints, when asked for
            attested = (
                None
                if args.witness is None
                else attestation.attest(service, args.witness, args.pubkey)
            )
        except ValueError as error:
            print(f"iop audit verify: {error}", file=sys.stderr)
            return EXIT_USAGE
    checked, findings = result.checked, result.findings
    failures = len(findings) + (0 if attested is None else len(attested.findings))
    if args.json:
        report = VerifyReport(
            ok=not failures,
            episodes=checked.episodes,
            entries=checked.entries,
            snapshots=checked.snapshots,
            view_rows=checked.view_rows,
            findings=[
                VerifiedFinding(
                    episode_id=str(f.episode_id),
                    version=f.version,
                    problem=f.problem,
                    detail=f.detail,
                )
                for f in findings
            ],
            checkpoints=None if attested is None else attested.as_json(),
        )
        print(report.model_dump_json())
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
    as_of = datetime.fromisoformat(args.as_of) if args.as_of else _now()
    if as_of.tzinfo is None:
        print("iop worklist: --as-of needs a timezone, such as 2026-03-01T00:00Z", file=sys.stderr)
        return EXIT_USAGE
    with _service(args) as service:
        runner = ViewRunner(service)
        runner.catch_up(progress_printer("catching up"))
        found = build_worklist(runner.views, as_of, recertify_within_days=args.within)
    print(found.model_dump_json(indent=2) if args.json else worklist_text(found))
    return EXIT_OK


def register_worklist(commands: Any) -> None:
    worklist = commands.add_parser("worklist", help="what needs attention, per client")
    worklist.add_argument("--store")
    worklist.add_argument("--as-of", help="as of this time (ISO 8601 with zone; default now)")
    worklist.add_argument(
        "--within",
        type=int,
        default=RECERTIFY_WITHIN_DAYS,
        help="days ahead to list recertifications due (default 14)",
    )
    worklist.add_argument("--json", action="store_true")
    worklist.set_defaults(handler=cmd_worklist)


# ---- iop projections ---------------------------------------------------------------


def _status_line(status: Status) -> str:
    return f"tracked position {status.position}, head {status.head}, lag {status.lag}"


def cmd_projections(args: argparse.Namespace) -> int:
    if args.online and args.action != "rebuild":
        print("iop projections: --online goes with rebuild", file=sys.stderr)
        return EXIT_USAGE
    with _service(args) as service:
        runner = ViewRunner(service, batch_size=args.batch)
        if args.action == "status":
            status = runner.status()
            if args.json:
                print(
                    json.dumps(
                        {
                            "position": status.position,
                            "head": status.head,
                            "lag": status.lag,
                        }
                    )
                )
            else:
                print(_status_line(status))
            return EXIT_OK
        if args.action == "run":
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())  # finish the batch, then stop
            runner.run(stop, poll_seconds=args.poll)
            return EXIT_OK
        work = runner.catch_up
        if args.action == "rebuild":
            work = runner.rebuild_online if args.online else runner.rebuild
        projected = work(progress_printer(args.action))
        print(f"{args.action}: projected {projected} events; {_status_line(runner.status())}")
    return EXIT_OK


def register(commands: Any) -> None:
    register_worklist(commands)
    schedule = commands.add_parser("schedule", help="current hour schedules")
    schedule.add_argument("--store")
    schedule.add_argument("--week", help="ISO week such as 2026-W48 (default: this week)")
    schedule.add_argument("--episode", help="one episode's schedule, taper and weeks")
    schedule.add_argument("--level", choices=["2.1", "1"], help="only clients at this level")
    schedule.add_argument("--json", action="store_true")
    schedule.set_defaults(handler=cmd_schedule)

    audit_commands = commands.add_parser("audit", help="auditor's tools").add_subparsers(
        dest="audit_command", required=True
    )
    hist = audit_commands.add_parser("history", help="an episode's entries in order")
    hist.add_argument("episode")
    hist.add_argument("--store")
    when = hist.add_mutually_exclusive_group()
    when.add_argument("--as-of", help="as recorded at this time (ISO 8601 with zone)")
    when.add_argument("--version", type=int, help="up to this version")
    hist.add_argument("--format", choices=["text", "jsonl", "csv"], default="text")
    hist.set_defaults(handler=cmd_audit_history)

    verify = audit_commands.add_parser(
        "verify", help="entries, seals, snapshots, tracking and every view row"
    )
    verify.add_argument("episodes", nargs="*", help="episode ids (default: all)")
    verify.add_argument("--store")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--jobs", type=int, default=1, help="processes to verify with (default 1)")
    verify.add_argument("--witness", help="check the store against this witness's checkpoints")
    verify.add_argument("--pubkey", help="public key file for the witness's checkpoints")
    verify.set_defaults(handler=cmd_audit_verify)
    exports_cli.register(commands, audit_commands)
    attestation.register(audit_commands)

    proj = commands.add_parser("projections", help="keep the read side up to date")
    proj.add_argument("action", choices=["status", "catch-up", "run", "rebuild"])
    proj.add_argument("--store")
    proj.add_argument("--batch", type=int, default=500, help="events per transaction")
    proj.add_argument("--poll", type=float, default=1.0, help="seconds between catch-ups (run)")
    proj.add_argument("--json", action="store_true")
    proj.add_argument(
        "--online",
        action="store_true",
        help="rebuild beside the live views and switch at once (readers never see it half-built)",
    )
    proj.set_defaults(handler=cmd_projections)
