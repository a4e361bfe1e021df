"""The application service that host services embed.

``EpisodeService`` takes typed commands (or plain mappings that validate into
them), loads the episode, lets the aggregate decide, and saves in one
transaction. A version conflict with another writer reloads and decides
again a bounded number of times, then raises ``Conflict``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID, uuid4, uuid5

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    MapperDeserialisationError,
)

from iop_episodes.clock import Clock, SystemClock
from iop_episodes.domain import commands, errors
from iop_episodes.domain.episode import Episode, Receipt
from iop_episodes.domain.events import EpisodeEvent
from iop_episodes.domain.state import EpisodeState
from iop_episodes.settings import (
    parse_store,
    program_timezone,
    protection_env,
    store_url,
)
from iop_episodes.transcoding import CanonicalDatetime, DateAsIso

EPISODE_NAMESPACE = UUID("6f1f8c1e-3b7a-5d0e-9a53-2f4c7b1d9e10")
"""uuid5 namespace of episode ids derived from an assessment's command_id."""

LOG = logging.getLogger(__name__)
SNAPSHOT_INTERVAL = 50
MAX_ATTEMPTS = 5

C = TypeVar("C", bound=commands.Command)


class EpisodeService(Application[UUID]):
    """Record and read treatment episodes in one event store."""

    name = "Episodes"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Episode: SNAPSHOT_INTERVAL}
    env: ClassVar[dict[str, str]] = {"AGGREGATE_CACHE_MAXSIZE": "2000"}

    def __init__(
        self,
        store: str | None = None,
        *,
        clock: Clock | None = None,
        timezone: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.store = parse_store(store_url(store))
        self.clock: Clock = clock or SystemClock()
        self.program_timezone = program_timezone(timezone)
        try:
            super().__init__({**self.store.env, **protection_env(), **(env or {})})
        except ValueError as error:
            raise errors.StoreKeyError(
                f"IOP_CIPHER_KEY is not a base64 AES key of 16, 24 or 32 bytes: {error}"
            ) from None
        self._check_store_key()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(CanonicalDatetime())
        transcoder.register(DateAsIso())

    # ---- commands ------------------------------------------------------

    def assess(self, cmd: commands.Assess | Mapping[str, Any]) -> Receipt:
        """Open an episode; returns its id. Retrying with a command_id is safe."""
        command = _validated(commands.Assess, cmd)
        if command.program_timezone is None:
            command = command.model_copy(update={"program_timezone": self.program_timezone})
        episode_id = command.episode_id or (
            uuid5(EPISODE_NAMESPACE, command.command_id) if command.command_id else uuid4()
        )
        episode = Episode.assess(command, episode_id=episode_id, now=self.clock.now())
        try:
            self.save(episode)
        except IntegrityError:
            return self._replayed_assessment(episode_id, command)
        return Receipt(episode.id, episode.version)

    def create_plan(self, cmd: commands.CreatePlan | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.CreatePlan, cmd), Episode.create_plan)

    def record_session(self, cmd: commands.RecordSession | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.RecordSession, cmd), Episode.record_session)

    def dispense_medication(self, cmd: commands.DispenseMedication | Mapping[str, Any]) -> Receipt:
        return self._execute(
            _validated(commands.DispenseMedication, cmd), Episode.dispense_medication
        )

    def record_screen(self, cmd: commands.RecordScreen | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.RecordScreen, cmd), Episode.record_screen)

    def step_down(self, cmd: commands.StepDownHours | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.StepDownHours, cmd), Episode.step_down)

    def discharge(self, cmd: commands.Discharge | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.Discharge, cmd), Episode.discharge)

    def schedule_aftercare(self, cmd: commands.ScheduleAftercare | Mapping[str, Any]) -> Receipt:
        return self._execute(
            _validated(commands.ScheduleAftercare, cmd), Episode.schedule_aftercare
        )

    def correct_entry(self, cmd: commands.CorrectEntry | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.CorrectEntry, cmd), Episode.correct_entry)

    def record_roster(
        self, sessions: Sequence[commands.RecordSession | Mapping[str, Any]]
    ) -> list[Receipt]:
        """A day's attendance for many episodes, stored all together or not at all."""
        roster = [_validated(commands.RecordSession, item) for item in sessions]
        for _ in range(MAX_ATTEMPTS):
            episodes: dict[UUID, Episode] = {}
            receipts = []
            now = self.clock.now()
            for index, command in enumerate(roster):
                if command.episode_id not in episodes:
                    episodes[command.episode_id] = self._load(command.episode_id)
                try:
                    receipts.append(episodes[command.episode_id].record_session(command, now))
                except errors.EpisodeRuleError as error:
                    error.add_note(f"roster item {index} (episode {command.episode_id})")
                    raise
            try:
                self.save(*episodes.values())
            except IntegrityError:
                continue
            return receipts
        raise errors.Conflict(
            f"roster of {len(roster)} sessions lost the race {MAX_ATTEMPTS} times"
        )

    # ---- reading -------------------------------------------------------

    def episode(
        self,
        episode_id: UUID,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> EpisodeState:
        """The episode's state now, at a version, or as recorded at a moment."""
        if as_of is not None:
            version = self._version_recorded_by(episode_id, as_of)
        return EpisodeState.of(self._load(episode_id, version=version))

    def history(self, episode_id: UUID) -> Iterator[EpisodeEvent]:
        """The episode's entries in version order, upcast to current classes."""
        for event in self.events.get(episode_id):
            yield cast("EpisodeEvent", event)

    # ---- internals -----------------------------------------------------

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        # Snapshots only speed up loading. The events are committed by now, so
        # a failed snapshot must not turn a stored command into an error.
        try:
            super()._take_snapshots(processing_event)
        except Exception:
            LOG.exception("snapshot not taken; episodes still load from their events")

    def _check_store_key(self) -> None:
        """Fail at start-up, not mid-command, when the key cannot read the store."""
        first = self.recorder.select_notifications(None, 1)
        if not first:
            return
        try:
            self.mapper.to_domain_event(first[0])
        except MapperDeserialisationError as error:
            protected = "with" if self.mapper.cipher else "without"
            raise errors.StoreKeyError(
                f"store {self.store.url} cannot be read {protected} IOP_CIPHER_KEY "
                f"as set: the first stored event does not decode ({error})"
            ) from None

    def _execute(
        self,
        command: C,
        decide: Callable[[Episode, C, datetime], Receipt],
    ) -> Receipt:
        episode_id: UUID = command.episode_id  # type: ignore[attr-defined]  # every EpisodeCommand has it
        for _ in range(MAX_ATTEMPTS):
            episode = self._load(episode_id)
            receipt = decide(episode, command, self.clock.now())
            if not episode.pending_events:
                return receipt
            try:
                self.save(episode)
            except IntegrityError:
                continue
            return receipt
        raise errors.Conflict(
            f"episode {episode_id}: other writers changed it on each of "
            f"{MAX_ATTEMPTS} attempts; {type(command).__name__} was not stored"
        )

    def _load(self, episode_id: UUID, version: int | None = None) -> Episode:
        try:
            episode: Episode = self.repository.get(episode_id, version=version)
        except AggregateNotFoundError:
            raise errors.EpisodeNotFound(f"no episode {episode_id}") from None
        return episode

    def _replayed_assessment(self, episode_id: UUID, command: commands.Assess) -> Receipt:
        existing = self._load(episode_id)
        if command.command_id is not None:
            receipt = existing.receipt_for(command.command_id)
            if receipt is not None:
                if existing.receipts[command.command_id][1] != command.digest():
                    raise errors.IdempotencyKeyReused(
                        f"command_id {command.command_id!r} opened episode "
                        f"{episode_id} with different content"
                    )
                return receipt
        raise errors.EpisodeAlreadyExists(f"episode {episode_id} already exists")

    def _version_recorded_by(self, episode_id: UUID, moment: datetime) -> int:
        version = 0
        for event in self.history(episode_id):
            if event.timestamp > moment:
                break
            version = event.originator_version
        if version == 0:
            raise errors.EpisodeNotFound(
                f"episode {episode_id} had no entries recorded by {moment}"
            )
        return version


def _validated(command_type: type[C], cmd: C | Mapping[str, Any]) -> C:
    if isinstance(cmd, command_type):
        return cmd
    return command_type.model_validate(cmd)
