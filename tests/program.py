"""Play a generated history through the service, the way staff would record it."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.testing import factories
from tests.strategies import Step


class Program:
    """A few planned episodes that generated steps happen to; refused steps are skipped."""

    def __init__(self, service: EpisodeService, clock: SimulatedClock, clients: int) -> None:
        self.service = service
        self.clock = clock
        self.episodes: list[UUID] = []
        self.sessions: dict[UUID, list[int]] = {}
        for index in range(clients):
            episode_id = service.assess(
                factories.assessment(clock.now(), client_ref=f"MRN-P{index}")
            ).episode_id
            clock.advance(timedelta(minutes=30))
            service.create_plan(factories.plan(episode_id, clock.now()))
            self.episodes.append(episode_id)
            self.sessions[episode_id] = []

    def apply(self, steps: list[Step]) -> None:
        for step in steps:
            self.clock.advance(timedelta(hours=step.hours_later))
            try:
                self._apply(step)
            except errors.EpisodeRuleError:
                continue

    def _apply(self, step: Step) -> None:
        service, now = self.service, self.clock.now()
        episode_id = self.episodes[step.client]
        if step.action == "session":
            receipt = service.record_session(factories.session(episode_id, now, **step.detail))
            self.sessions[episode_id].append(receipt.version)
        elif step.action == "dose":
            service.dispense_medication(factories.dose(episode_id, now))
        elif step.action == "screen":
            service.record_screen(factories.screen(episode_id, now, results=step.detail))
        elif step.action == "step_down":
            to = step.detail["to"]
            service.step_down(factories.step_down(episode_id, now, to_weekly_hours=to))
        elif step.action == "discharge":
            reason = step.detail["reason"]
            service.discharge(factories.discharge(episode_id, now, reason=reason))
        elif step.action == "aftercare":
            service.schedule_aftercare(factories.aftercare(episode_id, now))
        elif step.action == "correct" and self.sessions[episode_id]:
            self._correct(episode_id, step)

    def _correct(self, episode_id: UUID, step: Step) -> None:
        sessions = self.sessions[episode_id]
        target = sessions[-min(step.detail["back"], len(sessions))]
        if step.detail["void"]:
            change = {"action": "void"}
        else:
            amended = {"modality": "group", "minutes": step.detail["minutes"]}
            change = {"action": "amend", "amended": amended}
        self.service.correct_entry(
            factories.correction(episode_id, self.clock.now(), target_version=target, **change)
        )
