"""The read side's ``iop`` commands: schedule, audit and projections."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit import commands as attestation
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import canonical_decimal as plain  # 9.50 -> "9.5"
from iop_episodes.domain.values import Model
from iop_episodes.domain.weeks import iso_week
from projections import audit, history_text
from projections.episodes import ViewDisagrees, episodes_table, list_episodes, resolve_episode
from projections.escaping import visible
from projections.exports import cli as exports_cli
from projections.localtime import checked_timezone, shown
from projections.report import build_report
from projections.report_html import render_report, write_whole
from projections.runner import Status, ViewRunner, open_views
from projections.schedule import (
    EpisodeSchedule,
    ProgramRow,
    episode_schedule,
    program_schedule,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EPISODE_HELP = "an episode id, or a client reference that names one episode"
STORE_HELP = "store URL (default: $IOP_STORE or sqlite:///iop.db)"
TIMEZONE_HELP = "show times in this IANA timezone (default: the program's, $IOP_TIMEZONE)"
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


def _client_cell(client_ref: str | None, *, sealed: bool) -> str:
    return "(sealed)" if sealed else visible(client_ref or "-")


def schedule_table(rows: list[ProgramRow], week: str) -> str:
    """A compact table: one line per active client."""
    header = (
        f"hour schedule for {week}: {len(rows)} active clients\n"
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
    return checked_timezone(args.timezone) if args.timezone else service.program_timezone


def cmd_schedule(args: argparse.Namespace) -> int:
    with _service(args) as service:
        timezone = _display_timezone(args, service)
        runner = ViewRunner(service)
        runner.catch_up(progress_printer("catching up"))
        if args.episode:
            try:
                episode_id = resolve_episode(service, runner.views, args.episode)
            except (errors.EpisodeNotFound, ViewDisagrees) as error:
                print(f"iop schedule: {error}", file=sys.stderr)
                return EXIT_FAILED
            found = episode_schedule(runner.views, str(episode_id), _now(), timezone)
            if found is None:
                print(f"iop schedule: no episode {args.episode}", file=sys.stderr)
                return EXIT_FAILED
            print(found.model_dump_json(indent=2) if args.json else episode_text(found, timezone))
            return EXIT_OK
        week = args.week or iso_week(_now(), service.program_timezone)
        rows = program_schedule(runner.views, week, args.level)
        if args.json:
            print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        else:
            print(schedule_table(rows, week))
    return EXIT_OK


# ---- iop episodes -----------------------------------------------------------------


def _listing_service(args: argparse.Namespace) -> tuple[EpisodeService, bool]:
    """The store, and whether it is encrypted and no key was given (then entries stay sealed)."""
    try:
        return _service(args), False
    except errors.StoreKeyError:
        service = EpisodeService(args.store, check_key=False)
        if service.mapper.cipher is not None:  # a key was given, and it is the wrong one
            service.close()
            raise
        return service, True


def cmd_episodes(args: argparse.Namespace) -> int:
    service, keyless = _listing_service(args)
    with service:
        timezone = _display_timezone(args, service)
        runner = ViewRunner(service)
        if keyless:
            print(
                "iop episodes: the store is encrypted and IOP_CIPHER_KEY is not set: client "
                "references are sealed and the views are listed as they are (not caught up)",
                file=sys.stderr,
            )
        else:
            runner.catch_up(progress_printer("catching up"))
        found = list_episodes(
            service, runner.views, timezone, client=args.client, status=args.status
        )
    if args.json:
        print(json.dumps([listing.model_dump(mode="json") for listing in found], indent=2))
    else:
        print(episodes_table(found, timezone))
    return EXIT_OK


# ---- iop audit ------------------------------------------------------------------


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"--as-of: {text!r} is not an ISO 8601 time such as 2026-03-01T00:00Z"
        raise ValueError(msg) from None
    if moment.tzinfo is None:
        msg = "--as-of needs a timezone, such as 2026-03-01T00:00Z"
        raise ValueError(msg)
    return moment


def cmd_audit_history(args: argparse.Namespace) -> int:
    try:
        as_of = _as_of(args.as_of)
    except ValueError as error:
        print(f"iop audit history: {error}", file=sys.stderr)
        return EXIT_USAGE
    with _service(args) as service:
        timezone = _display_timezone(args, service)
        runner = ViewRunner(service)
        runner.catch_up(progress_printer("catching up"))
        try:
            episode_id = resolve_episode(service, runner.views, args.episode)
            state = service.episode(episode_id, version=args.version, as_of=as_of)
        except (errors.EpisodeNotFound, ViewDisagrees) as error:
            print(f"iop audit history: {error}", file=sys.stderr)
            return EXIT_FAILED
        entries = audit.history(runner.views, str(episode_id), version=state.version)
    if args.format == "jsonl":
        sys.stdout.write(audit.to_jsonl(entries))
    elif args.format == "csv":
        sys.stdout.write(history_text.to_csv(entries, state.client_ref, timezone))
    else:
        sys.stdout.write(history_text.to_text(entries, state, timezone))
    return EXIT_OK


def cmd_audit_report(args: argparse.Namespace) -> int:
    try:
        as_of = _as_of(args.as_of)
    except ValueError as error:
        print(f"iop audit report: {error}", file=sys.stderr)
        return EXIT_USAGE
    with _service(args) as service:
        timezone = _display_timezone(args, service)
        runner = ViewRunner(service)
        runner.catch_up(progress_printer("catching up"))
        try:
            episode_id = resolve_episode(service, runner.views, args.episode)
            report = build_report(service, episode_id, as_of=as_of, timezone=timezone, now=_now())
        except (errors.EpisodeNotFound, ViewDisagrees) as error:
            print(f"iop audit report: {error}", file=sys.stderr)
            return EXIT_FAILED
    try:
        write_whole(Path(args.out), render_report(report))
    except OSError as error:
        print(f"iop audit report: --out {args.out}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"audit report for episode {episode_id} (version {report.summary.version}) "
        f"written to {args.out}; verification {report.verification.verdict}"
    )
    return EXIT_OK if report.verification.verdict == "ok" else EXIT_FAILED


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
        views = open_views(service)
        try:
            only = [resolve_episode(service, views, ref) for ref in args.episodes] or None
        except (errors.EpisodeNotFound, ViewDisagrees) as error:
            print(f"iop audit verify: {error}", file=sys.stderr)
            return EXIT_FAILED
        result = audit.verify_all(service, views, only, jobs=args.jobs)
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
    schedule = commands.add_parser("schedule", help="current hour schedules")
    schedule.add_argument("--store")
    schedule.add_argument("--week", help="ISO week such as 2026-W48 (default: this week)")
    schedule.add_argument(
        "--episode", help="one episode's schedule, taper and weeks (episode id or client reference)"
    )
    schedule.add_argument("--level", choices=["2.1", "1"], help="only clients at this level")
    schedule.add_argument("--json", action="store_true")
    schedule.add_argument("--timezone", help=TIMEZONE_HELP)
    schedule.set_defaults(handler=cmd_schedule)

    episodes = commands.add_parser("episodes", help="find clients: episodes by client reference")
    episodes.add_argument("--store", metavar="URL", help=STORE_HELP)
    episodes.add_argument("--client", metavar="REF", help="only this client reference")
    episodes.add_argument(
        "--status", choices=["assessed", "active", "discharged"], help="only this status"
    )
    episodes.add_argument("--timezone", metavar="TZ", help=TIMEZONE_HELP)
    episodes.add_argument("--json", action="store_true", help="print a JSON list instead")
    episodes.set_defaults(handler=cmd_episodes)

    audit_commands = commands.add_parser("audit", help="auditor's tools").add_subparsers(
        dest="audit_command", required=True
    )
    hist = audit_commands.add_parser("history", help="an episode's entries in order")
    hist.add_argument("episode", help=EPISODE_HELP)
    hist.add_argument("--store")
    hist.add_argument("--timezone", help=TIMEZONE_HELP)
    when = hist.add_mutually_exclusive_group()
    when.add_argument("--as-of", help="as recorded at this time (ISO 8601 with zone)")
    when.add_argument("--version", type=int, help="up to this version")
    hist.add_argument("--format", choices=["text", "jsonl", "csv"], default="text")
    hist.set_defaults(handler=cmd_audit_history)

    report = audit_commands.add_parser("report", help="a self-contained HTML report to hand over")
    report.add_argument("episode", help=EPISODE_HELP)
    report.add_argument("--store", metavar="URL", help=STORE_HELP)
    report.add_argument(
        "--as-of", metavar="TIME", help="as recorded at this time (ISO 8601 with offset)"
    )
    report.add_argument("--timezone", metavar="TZ", help=TIMEZONE_HELP)
    report.add_argument("--out", required=True, metavar="FILE.html", help="the HTML file to write")
    report.set_defaults(handler=cmd_audit_report)

    verify = audit_commands.add_parser(
        "verify", help="entries, seals, snapshots, tracking and every view row"
    )
    verify.add_argument(
        "episodes", nargs="*", help="episode ids or client references (default: all)"
    )
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
