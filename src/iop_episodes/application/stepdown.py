"""The step-down sweep: apply the policy to every active episode, once per week.

Candidates come from a ``CandidateSource`` (the hour schedule projection
provides one) so the sweep never scans the store to find them. Decisions
never come from views: each candidate's episode is loaded through the
service and the policy decides from its own entries (weeks, hours attended
against target, screens), which are the evidence recorded. Each step-down is
recorded with a deterministic
``command_id`` (episode, ISO week, policy version): running the sweep twice,
killing it half way, or running it on two nodes records each step-down once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.domain.payloads import WeekEvidence
from iop_episodes.domain.policy import Decision, EpisodeStanding, StepDownSettings, decide

LOG = logging.getLogger(__name__)
SCHEDULER_ACTOR = {"id": "stepdown-scheduler", "role": "scheduler"}

Outcome = Literal["stepped-down", "held", "already-recorded", "skipped", "error"]


@dataclass(frozen=True)
class Candidate:
    """An episode the source believes active; its standing and weeks are only a hint."""

    episode_id: UUID
    standing: EpisodeStanding | None = None
    weeks: list[WeekEvidence] = field(default_factory=list)


class CandidateSource(Protocol):
    def candidates(self, as_of: datetime, weeks: int) -> list[Candidate]:
        """Active episodes with their last ``weeks`` complete weeks before ``as_of``."""
        ...


@dataclass(frozen=True)
class EpisodeOutcome:
    episode_id: UUID
    outcome: Outcome
    reason: str
    decision: Decision | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "episode_id": str(self.episode_id),
            "outcome": self.outcome,
            "reason": self.reason,
            "decision": None if self.decision is None else self.decision.model_dump(mode="json"),
        }


@dataclass
class SweepSummary:
    as_of: datetime
    policy: str
    dry_run: bool
    outcomes: list[EpisodeOutcome] = field(default_factory=list)
    interrupted: bool = False

    @property
    def counts(self) -> Counter[str]:
        return Counter(outcome.outcome for outcome in self.outcomes)

    @property
    def errors(self) -> int:
        """Episodes whose data or decision failed (each logged with its id)."""
        return self.counts["error"]

    def line(self) -> str:
        counts = self.counts
        return (
            f"step-down sweep as of {self.as_of.isoformat()} ({self.policy}"
            f"{', dry run' if self.dry_run else ''}): examined {len(self.outcomes)}, "
            f"stepped down {counts['stepped-down']}, held {counts['held']}, "
            f"already recorded {counts['already-recorded']}, skipped {counts['skipped']}, "
            f"errors {counts['error']}" + (" (interrupted)" if self.interrupted else "")
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "policy": self.policy,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "examined": len(self.outcomes),
            "counts": dict(self.counts),
            "decisions": [outcome.as_json() for outcome in self.outcomes],
        }


def step_down_command_id(episode_id: UUID, week: str, settings: StepDownSettings) -> str:
    """The same episode, week and policy version always give the same key."""
    return f"stepdown:{episode_id}:{week}:{settings.policy_id}@{settings.version}"


def run_stepdown_sweep(
    service: EpisodeService,
    source: CandidateSource,
    as_of: datetime,
    *,
    settings: StepDownSettings | None = None,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> SweepSummary:
    """Decide for every candidate; record the step-downs unless ``dry_run``."""
    rules = settings or StepDownSettings()
    summary = SweepSummary(as_of, f"{rules.policy_id}@{rules.version}", dry_run)
    for candidate in source.candidates(as_of, rules.weeks_required):
        if stop is not None and stop.is_set():
            summary.interrupted = True
            break
        try:
            outcome = _sweep_one(service, candidate, as_of, rules, dry_run=dry_run)
        except Exception as error:
            LOG.exception("step-down sweep: episode %s failed", candidate.episode_id)
            reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line per episode
            outcome = EpisodeOutcome(candidate.episode_id, "error", reason)
        summary.outcomes.append(outcome)
    LOG.info("%s", summary.line())
    return summary


def _sweep_one(
    service: EpisodeService,
    candidate: Candidate,
    as_of: datetime,
    rules: StepDownSettings,
    *,
    dry_run: bool,
) -> EpisodeOutcome:
    episode_id = candidate.episode_id
    basis = service.decision_basis(episode_id, as_of, rules.weeks_required)
    if basis is None:
        return EpisodeOutcome(episode_id, "skipped", "episode is not active in the store")
    decision = decide(basis.standing, basis.weeks, as_of, rules)
    if decision.outcome == "hold" or decision.to_weekly_hours is None:
        return EpisodeOutcome(episode_id, "held", decision.reason, decision)
    if dry_run:
        return EpisodeOutcome(episode_id, "stepped-down", "dry run: " + decision.reason, decision)
    command_id = step_down_command_id(episode_id, decision.as_of_week, rules)
    try:
        receipt = service.step_down(
            {
                "episode_id": episode_id,
                "command_id": command_id,
                "actor": SCHEDULER_ACTOR,
                "occurred_at": as_of,
                "to_weekly_hours": decision.to_weekly_hours,
                "reason": decision.reason,
                "policy": decision.policy,
                "evidence": decision.evidence,
            }
        )
    except errors.StepDownAlreadyThisWeek as error:
        return EpisodeOutcome(episode_id, "already-recorded", str(error), decision)
    if receipt.replayed:
        return EpisodeOutcome(
            episode_id, "already-recorded", f"{command_id} was recorded", decision
        )
    return EpisodeOutcome(episode_id, "stepped-down", decision.reason, decision)
