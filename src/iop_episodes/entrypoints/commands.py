"""The write side's commands (demo, stepdown run, scheduler) and their JSON shapes."""

from __future__ import annotations

import argparse
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel

from iop_episodes.application import arguments, problems
from iop_episodes.application.output import Number, Output, print_json, progress_bar
from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import EpisodeOutcome, SweepSummary, run_stepdown_sweep
from iop_episodes.audit.checkpoints import NoIntegrityKey, make_checkpoint
from iop_episodes.audit.commands import configured_key, configured_witness
from iop_episodes.audit.integrity import FindingOutput, store_digest, verify_store
from iop_episodes.entrypoints.demo import ProgramSimulation, demo_clock, not_demo_data
from iop_episodes.entrypoints.extensions import candidate_source, load_extensions
from iop_episodes.entrypoints.scheduler import DEFAULT_CRON, parse_cron, run_scheduler
from iop_episodes.infrastructure.settings import store_url

EXIT_OK, EXIT_FINDING = problems.EXIT_OK, problems.EXIT_FINDING

# ---- JSON shapes ------------------------------------------------------------


class DemoReport(Output):
    """``iop demo --json``: what the simulation stored and the store's digest."""

    store: str
    clients: int
    weeks: int
    seed: int
    episodes_by_status: dict[str, int]
    """Each episode's status when the demo ends."""
    last_week: str
    active_in_last_week: int
    """Clients in the program during the last week (discharged in it or not), as its schedule."""
    events_by_type: dict[str, int]
    commands_rejected_by_rule: dict[str, int]
    events: int
    seconds: float
    verification_ok: bool
    findings: list[FindingOutput]
    checkpoint: str
    """The checkpoint line: what was signed, or why there is none."""
    store_digest: str


class WeekEvidenceOutput(Output):
    week: str
    target_hours: Number
    attended_hours: Number
    negative_screens: int
    unexpected_positive_screens: int


class DecisionOutput(Output):
    outcome: Literal["step-down", "hold"]
    reason: str
    policy: str
    as_of_week: str
    from_weekly_hours: Number
    to_weekly_hours: Number | None
    leaves_iop: bool
    evidence: list[WeekEvidenceOutput]


class SweepOutcomeOutput(Output):
    episode_id: str
    outcome: Literal["stepped-down", "held", "already-recorded", "skipped", "error"]
    reason: str
    decision: DecisionOutput | None

    @classmethod
    def of(cls, outcome: EpisodeOutcome) -> SweepOutcomeOutput:
        decision = outcome.decision
        return cls(
            episode_id=str(outcome.episode_id),
            outcome=outcome.outcome,
            reason=outcome.reason,
            decision=None
            if decision is None
            else DecisionOutput(
                outcome=decision.outcome,
                reason=decision.reason,
                policy=f"{decision.policy.id}@{decision.policy.version}",
                as_of_week=decision.as_of_week,
                from_weekly_hours=decision.from_weekly_hours,
                to_weekly_hours=decision.to_weekly_hours,
                leaves_iop=decision.leaves_iop,
                evidence=[WeekEvidenceOutput(**week.model_dump()) for week in decision.evidence],
            ),
        )


class SweepCounts(Output):
    """How many episodes had each outcome; every outcome is present, zero or not."""

    stepped_down: int
    held: int
    already_recorded: int
    skipped: int
    error: int

    @classmethod
    def of(cls, counts: Counter[str]) -> SweepCounts:
        return cls(
            stepped_down=counts["stepped-down"],
            held=counts["held"],
            already_recorded=counts["already-recorded"],
            skipped=counts["skipped"],
            error=counts["error"],
        )


class SweepReport(Output):
    """``iop stepdown run --json``: every decision with its evidence."""

    as_of: str
    policy: str
    dry_run: bool
    interrupted: bool
    examined: int
    counts: SweepCounts
    decisions: list[SweepOutcomeOutput]

    @classmethod
    def of(cls, summary: SweepSummary) -> SweepReport:
        return cls(
            as_of=summary.as_of.isoformat(),
            policy=summary.policy,
            dry_run=summary.dry_run,
            interrupted=summary.interrupted,
            examined=len(summary.outcomes),
            counts=SweepCounts.of(summary.counts),
            decisions=[SweepOutcomeOutput.of(outcome) for outcome in summary.outcomes],
        )


JSON_MODELS: dict[str, type[BaseModel]] = {
    "demo": DemoReport,
    "stepdown run": SweepReport,
}
"""Each command's ``--json`` shape, for ``iop schema``."""

# ---- iop demo ----------------------------------------------------------------


def reset_store(url: str, *, yes: bool) -> None:
    """Delete a SQLite store, only when it is one of ours holding only demo data (or ``yes``)."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return
    if parts.scheme != "sqlite":
        msg = "--reset only removes SQLite files; empty a PostgreSQL store yourself"
        raise problems.UsageProblem(msg)
    database = Path(unquote(parts.path)[1:])
    if not database.exists():
        return
    try:
        with EpisodeService(url, read_only=True) as service:
            foreign = not_demo_data(service)
    except problems.EmptyStore:
        foreign = None  # the engine's tables and nothing in them
    except problems.StoreUnavailable as error:
        msg = f"refusing --reset, nothing deleted: {error}"
        raise problems.StoreUnavailable(msg) from None
    if foreign is not None and not yes:
        msg = (
            f"refusing --reset, nothing deleted: {database} holds data the demo did not "
            f"write ({foreign}); add --yes to delete it anyway"
        )
        raise problems.UsageProblem(msg)
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        path.unlink(missing_ok=True)


def cmd_demo(args: argparse.Namespace) -> int:
    url = args.store
    if args.reset:
        reset_store(store_url(url), yes=args.yes)
    clock = demo_clock()
    with EpisodeService(url, clock=clock, timezone=args.timezone) as service:
        held = service.recorder.max_notification_id()
        if held:
            msg = (
                f"store {service.store.display} already holds events (up to notification "
                f"{held}); the demo needs an empty store: pass --reset to remove a demo "
                "SQLite file, or --store with another URL"
            )
            raise problems.UsageProblem(msg)
        if not args.json:
            print(
                f"iop demo: {args.clients} clients over {args.weeks} weeks "
                f"(seed {args.seed}) into {service.store.display}",
                flush=True,
            )
        started = time.perf_counter()
        with progress_bar("simulating weeks") as progress:
            result = ProgramSimulation(
                service,
                clock,
                clients=args.clients,
                weeks=args.weeks,
                seed=args.seed,
                candidates=candidate_source(service),
                progress=progress,
            ).run()
        elapsed = time.perf_counter() - started
        after = [extension.after_demo(service, clock.now()) for extension in load_extensions()]
        findings = verify_store(service)
        checkpoint = demo_checkpoint(service, args.witness)
        digest = store_digest(service)
    if args.json:
        print_json(
            DemoReport(
                store=service.store.display,
                clients=args.clients,
                weeks=args.weeks,
                seed=args.seed,
                episodes_by_status=dict(sorted(result.episodes_by_status.items())),
                last_week=result.last_week,
                active_in_last_week=result.active_in_last_week,
                events_by_type=dict(sorted(result.events_by_type.items())),
                commands_rejected_by_rule=dict(sorted(result.rejected.items())),
                events=result.events,
                seconds=round(elapsed, 3),
                verification_ok=not findings,
                findings=[FindingOutput.of(finding) for finding in findings],
                checkpoint=checkpoint,
                store_digest=digest,
            )
        )
        return EXIT_OK if not findings else EXIT_FINDING
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(result.episodes_by_status.items()))
    types = ", ".join(f"{k} {v}" for k, v in sorted(result.events_by_type.items()))
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(result.rejected.items()))
    print(
        f"episodes by status at the end: {statuses}; {result.active_in_last_week} clients "
        f"active during {result.last_week} (its schedule below)"
    )
    print(f"events by type: {types}")
    print(f"commands rejected by a rule: {rejected or 'none'}")
    print(f"events stored: {result.events} in {elapsed:.1f} s")
    for text in after:
        print(text)
    verdict = "ok" if not findings else f"FAILED ({len(findings)} findings)"
    print(f"chain verification: {verdict}")
    for finding in findings:
        print(f"  {finding}")
    print(checkpoint)
    print(f"store digest: {digest}")
    return EXIT_OK if not findings else EXIT_FINDING


def demo_checkpoint(service: EpisodeService, witness: str | None) -> str:
    """The demo's checkpoint line: signed with the integrity key, or why there is none."""
    try:
        key = configured_key()
    except NoIntegrityKey:
        return "checkpoint: none (IOP_INTEGRITY_KEY is not set)"
    made = make_checkpoint(service, key, configured_witness(witness))
    refused = "" if made.refused is None else f"; not signed in from {made.refused}"
    return made.line() + refused


# ---- iop stepdown run ----------------------------------------------------------


def sweep_exit_code(summary: SweepSummary) -> int:
    """A sweep in which any episode failed is a finding (exit 1)."""
    return EXIT_FINDING if summary.counts["error"] else EXIT_OK


def cmd_stepdown_run(args: argparse.Namespace) -> int:
    as_of = args.as_of or datetime.now(tz=UTC)
    with EpisodeService(
        args.store, timezone=args.timezone, read_only=args.dry_run, create=False
    ) as service:
        summary = run_stepdown_sweep(
            service, candidate_source(service), as_of, dry_run=args.dry_run
        )
    code = sweep_exit_code(summary)
    if args.json:
        print_json(SweepReport.of(summary))
        return code
    for outcome in summary.outcomes:
        print(f"{outcome.episode_id}  {outcome.outcome:<16}  {outcome.reason}")
        if outcome.decision is not None and outcome.outcome == "stepped-down":
            weeks = ", ".join(
                f"{w.week} {w.attended_hours}/{w.target_hours}h "
                f"neg {w.negative_screens} unexp {w.unexpected_positive_screens}"
                for w in outcome.decision.evidence
            )
            print(f"    evidence: {weeks}")
    print(summary.line())
    return code


# ---- iop scheduler ----------------------------------------------------------------


def cron_expression(text: str) -> str:
    """A cron expression APScheduler accepts: 5 fields, or 6 with seconds first."""
    try:
        parse_cron(text, "UTC")
    except ValueError as error:
        msg = f"{text!r} is not a cron expression: {' '.join(str(error).split())}"
        raise argparse.ArgumentTypeError(msg) from None
    return text


def _stop_before_start(signum: int, frame: object) -> None:
    del signum, frame
    raise SystemExit(EXIT_OK)


def cmd_scheduler(args: argparse.Namespace) -> int:
    # Stopped while still starting (nothing swept yet): a clean exit, not a kill.
    # run_scheduler installs the handler that finishes the episode being swept.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_before_start)
    try:
        key = configured_key()
    except NoIntegrityKey as error:
        if args.checkpoint_every is not None:
            raise problems.UsageProblem(f"--checkpoint-every: {error}") from None
        key = None
    witness = configured_witness(args.witness)
    with EpisodeService(args.store, timezone=args.timezone) as service:
        checkpoint = None if key is None else lambda: make_checkpoint(service, key, witness).line()
        run_scheduler(
            service,
            candidate_source(service),
            cron=args.cron,
            timezone=args.timezone,
            checkpoint=checkpoint,
            checkpoint_every=args.checkpoint_every,
        )
    return EXIT_OK


def register(commands: Any) -> None:
    """Add demo, stepdown and scheduler to ``iop``."""
    demo = commands.add_parser("demo", help="simulate a program into an empty store")
    arguments.add_store(demo)
    demo.add_argument("--clients", type=arguments.positive, default=60, help="clients (60)")
    demo.add_argument("--weeks", type=arguments.positive, default=16, help="weeks to run (16)")
    demo.add_argument("--seed", type=int, default=1, help="random seed; same seed, same store (1)")
    arguments.add_timezone(demo, "of the program")
    demo.add_argument(
        "--reset",
        action="store_true",
        help="first delete the SQLite store, if it holds only demo data",
    )
    demo.add_argument(
        "--yes", action="store_true", help="with --reset: delete it even if it holds other data"
    )
    demo.add_argument("--witness", help="checkpoint witness file or directory ($IOP_WITNESS)")
    arguments.add_json(demo)
    demo.set_defaults(handler=cmd_demo)

    stepdown = commands.add_parser("stepdown", help="the step-down job").add_subparsers(
        dest="stepdown_command", required=True, metavar="ACTION", help="run: one sweep now"
    )
    sweep = stepdown.add_parser("run", help="run one step-down sweep now")
    arguments.add_store(sweep)
    arguments.add_as_of(sweep, "decide as of this time (default: now)")
    sweep.add_argument(
        "--dry-run", action="store_true", help="decide only: record nothing, write nothing"
    )
    arguments.add_timezone(sweep, "of the program")
    arguments.add_json(sweep)
    sweep.set_defaults(handler=cmd_stepdown_run)

    scheduler = commands.add_parser("scheduler", help="run the sweep on a cron schedule")
    arguments.add_store(scheduler)
    scheduler.add_argument(
        "--cron",
        type=cron_expression,
        default=DEFAULT_CRON,
        help="when to sweep: 5 cron fields, or 6 with seconds first (default: 0 2 * * *)",
    )
    arguments.add_timezone(scheduler, "the cron schedule runs in")
    scheduler.add_argument("--witness", help="checkpoint witness file or directory ($IOP_WITNESS)")
    scheduler.add_argument(
        "--checkpoint-every",
        type=float,
        metavar="SECONDS",
        help="also sign a checkpoint this often (needs IOP_INTEGRITY_KEY)",
    )
    scheduler.set_defaults(handler=cmd_scheduler)
