"""The ``iop`` command: a thin shell over the public API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import run_stepdown_sweep
from iop_episodes.audit.checkpoints import NoIntegrityKey, make_checkpoint
from iop_episodes.audit.commands import configured_key, configured_witness
from iop_episodes.audit.integrity import store_digest, verify_store
from iop_episodes.domain import errors
from iop_episodes.entrypoints.demo import demo_clock, run_demo
from iop_episodes.entrypoints.extensions import candidate_source, load_extensions
from iop_episodes.entrypoints.scheduler import DEFAULT_CRON, run_scheduler
from iop_episodes.infrastructure.settings import StoreUrlError, store_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reset(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        database = Path(unquote(parts.path)[1:])
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            path.unlink(missing_ok=True)
    elif parts.scheme != "memory":
        msg = "--reset only removes SQLite files; empty a PostgreSQL store yourself"
        raise StoreUrlError(msg)


def cmd_demo(args: argparse.Namespace) -> int:
    url = store_url(args.store)
    if args.reset:
        _reset(url)
    clock = demo_clock()
    with EpisodeService(url, clock=clock, timezone=args.timezone) as service:
        held = service.recorder.max_notification_id()
        if held:
            print(
                f"iop demo: store {url} already holds events (up to notification "
                f"{held}); the demo needs an empty store: pass --reset to remove a "
                "SQLite file, or --store with another URL",
                file=sys.stderr,
            )
            return EXIT_USAGE
        print(
            f"iop demo: {args.clients} clients over {args.weeks} weeks "
            f"(seed {args.seed}) into {url}",
            flush=True,
        )
        started = time.perf_counter()
        result = run_demo(
            service,
            clock,
            clients=args.clients,
            weeks=args.weeks,
            seed=args.seed,
            candidates=candidate_source(service),
            progress=_progress if args.weeks * args.clients > 200 else None,
        )
        elapsed = time.perf_counter() - started
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(result.episodes_by_status.items()))
        types = ", ".join(f"{k} {v}" for k, v in sorted(result.events_by_type.items()))
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(result.rejected.items()))
        print(f"episodes by status: {statuses}")
        print(f"events by type: {types}")
        print(f"commands rejected by a rule: {rejected or 'none'}")
        print(f"events stored: {result.events} in {elapsed:.1f} s")
        for extension in load_extensions():
            print(extension.after_demo(service, clock.now()))
        findings = verify_store(service)
        verdict = "ok" if not findings else f"FAILED ({len(findings)} findings)"
        print(f"chain verification: {verdict}")
        for finding in findings:
            print(f"  {finding}")
        print(_demo_checkpoint(service, args.witness))
        print(f"store digest: {store_digest(service)}")
    return EXIT_OK if not findings else EXIT_FAILED


def _demo_checkpoint(service: EpisodeService, witness: str | None) -> str:
    """The demo's checkpoint line: signed with the integrity key, or why there is none."""
    try:
        key = configured_key()
    except NoIntegrityKey:
        return "checkpoint: none (IOP_INTEGRITY_KEY is not set)"
    made = make_checkpoint(service, key, configured_witness(witness))
    refused = "" if made.refused is None else f"; not signed in from {made.refused}"
    return made.line() + refused


def _as_of(text: str | None) -> datetime:
    if text is None:
        return datetime.now(tz=UTC)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        msg = f"--as-of needs a timezone, such as {text}Z or {text}-05:00"
        raise ValueError(msg)
    return moment


def cmd_stepdown_run(args: argparse.Namespace) -> int:
    as_of = _as_of(args.as_of)
    with EpisodeService(store_url(args.store), timezone=args.timezone) as service:
        summary = run_stepdown_sweep(
            service, candidate_source(service), as_of, dry_run=args.dry_run
        )
    code = EXIT_FAILED if summary.errors else EXIT_OK  # 1: some episodes failed, see the log
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
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


def cmd_scheduler(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        key = configured_key()
    except NoIntegrityKey as error:
        if args.checkpoint_every is not None:
            print(f"iop scheduler: --checkpoint-every: {error}", file=sys.stderr)
            return EXIT_USAGE
        key = None
    witness = configured_witness(args.witness)
    with EpisodeService(store_url(args.store), timezone=args.timezone) as service:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="simulate a program into an empty store")
    demo.add_argument("--store", help="store URL (default: $IOP_STORE or sqlite:///iop.db)")
    demo.add_argument("--clients", type=int, default=60)
    demo.add_argument("--weeks", type=int, default=16)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument(
        "--timezone",
        help="program timezone (default: $IOP_TIMEZONE or America/New_York)",
    )
    demo.add_argument("--reset", action="store_true", help="remove the SQLite store first")
    demo.add_argument("--witness", help="checkpoint witness file or directory ($IOP_WITNESS)")
    demo.set_defaults(handler=cmd_demo)

    stepdown = commands.add_parser("stepdown", help="the step-down job").add_subparsers(
        dest="stepdown_command", required=True
    )
    sweep = stepdown.add_parser("run", help="run one step-down sweep now")
    sweep.add_argument("--store")
    sweep.add_argument("--as-of", help="ISO 8601 time with zone (default: now)")
    sweep.add_argument("--dry-run", action="store_true", help="decide, record nothing")
    sweep.add_argument("--timezone")
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(handler=cmd_stepdown_run)

    scheduler = commands.add_parser("scheduler", help="run the sweep on a cron schedule")
    scheduler.add_argument("--store")
    scheduler.add_argument(
        "--cron",
        default=DEFAULT_CRON,
        help="5 fields, or 6 with seconds first (default: 0 2 * * *)",
    )
    scheduler.add_argument("--timezone", help="(default: $IOP_TIMEZONE or America/New_York)")
    scheduler.add_argument("--witness", help="checkpoint witness file or directory ($IOP_WITNESS)")
    scheduler.add_argument(
        "--checkpoint-every",
        type=float,
        metavar="SECONDS",
        help="also sign a checkpoint this often (needs IOP_INTEGRITY_KEY)",
    )
    scheduler.set_defaults(handler=cmd_scheduler)

    for extension in load_extensions():
        extension.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (StoreUrlError, ValueError) as error:
        print(f"iop: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (errors.EntryIntegrityError, errors.StoreKeyError) as error:
        print(f"iop: {error}", file=sys.stderr)  # a store that does not verify: said, not traced
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
