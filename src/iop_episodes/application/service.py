"""The application service that host services embed.

``EpisodeService`` takes typed commands (or plain mappings that validate into
them), loads the episode, lets the aggregate decide, and saves in one
transaction. A version conflict with another writer reloads and decides
again a bounded number of times, then raises ``Conflict``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID, uuid4, uuid5
from zoneinfo import ZoneInfoNotFoundError

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    MapperDeserialisationError,
    PersistenceError,
    StoredEvent,
)
from pydantic import TypeAdapter

from iop_episodes.application import problems
from iop_episodes.application.clock import Clock, SystemClock
from iop_episodes.domain import commands, errors
from iop_episodes.domain.catalog import RecordScope
from iop_episodes.domain.disclosure import (
    ConsentTerms,
    Disclosure,
    check_records,
    consent_in_force,
    disclosure_id,
    require_scope,
)
from iop_episodes.domain.episode import TIMELINE, Episode, Receipt
from iop_episodes.domain.events import EpisodeEvent
from iop_episodes.domain.evidence import standing_of, weeks_of
from iop_episodes.domain.payloads import WeekEvidence
from iop_episodes.domain.policy import EpisodeStanding
from iop_episodes.domain.rules import RuleSettings
from iop_episodes.domain.state import EpisodeState
from iop_episodes.domain.weeks import iso_week, local, previous_weeks, zone
from iop_episodes.infrastructure import pglocks, pgprobe
from iop_episodes.infrastructure.keys import IntegrityKey, IntegrityKeyError
from iop_episodes.infrastructure.mapping import (
    EpisodeMapper,
    LinkChecker,
    SnapshotRejected,
    stored_link_and_canonical,
)
from iop_episodes.infrastructure.settings import (
    StorePathError,
    StoreUrlError,
    parse_store,
    program_timezone,
    protection_env,
    rule_settings,
    store_url,
)
from iop_episodes.infrastructure.settings import (
    integrity_key as configured_integrity_key,
)
from iop_episodes.infrastructure.transcoding import CanonicalDatetime, DateAsIso

EPISODE_NAMESPACE = UUID("6f1f8c1e-3b7a-5d0e-9a53-2f4c7b1d9e10")
"""uuid5 namespace of episode ids derived from an assessment's command_id."""

LOG = logging.getLogger(__name__)
SNAPSHOT_INTERVAL = 20
MAX_ATTEMPTS = 5

C = TypeVar("C", bound=commands.Command)

TIMELINE_NAMES = frozenset(TIMELINE)

IDEMPOTENCY_SCOPE = "episode"
"""A ``command_id`` identifies one command within one episode (see the README)."""


@dataclass(frozen=True)
class DecisionBasis:
    """What a step-down decision is made from: the episode's own entries, as stored."""

    standing: EpisodeStanding
    weeks: list[WeekEvidence]
    version: int


class EpisodeService(Application[UUID]):
    """Record and read treatment episodes in one event store."""

    name = "Episodes"
    mapper: EpisodeMapper
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Episode: SNAPSHOT_INTERVAL}
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "2000",
        # Commands judge the cached copy and rely on optimistic concurrency: a
        # stale copy fails to save (version conflict) and is reloaded, and a
        # refusal is re-checked against the store. So no fast-forward query
        # and no deep copy on every load.
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }

    def __init__(
        self,
        store: str | None = None,
        *,
        clock: Clock | None = None,
        timezone: str | None = None,
        env: Mapping[str, str] | None = None,
        integrity_key: IntegrityKey | str | None = None,
        read_only: bool = False,
        create: bool = True,
        rules: RuleSettings | None = None,
        check_key: bool = True,
    ) -> None:
        """``integrity_key`` (or ``IOP_INTEGRITY_KEY``) seals entries and snapshots.

        A key is adopted only by a new store: a store written without a key is
        refused with one (``StoreKeyError``). Without a key, a sealed store is
        read and verified, but every write is refused (``StoreKeyError``), so
        no unsealed entry ever enters it. ``read_only`` opens an existing,
        non-empty store and never writes to it; without ``create``, the store
        must exist (its tables made by an earlier service) but may be empty,
        and no table is created. ``check_key=False`` opens an encrypted store
        without its cipher key, for readers of what needs no key (the views'
        unsealed columns); its entries then do not decode.
        """
        try:
            self.store = parse_store(store_url(store), read_only=read_only, create=create)
        except StoreUrlError as error:
            raise problems.UsageProblem(str(error)) from None
        except StorePathError as error:
            raise problems.StoreUnavailable(str(error)) from None
        try:
            self.integrity_key = configured_integrity_key(integrity_key)
        except IntegrityKeyError as error:
            raise errors.StoreKeyError(str(error)) from None
        self.clock: Clock = clock or SystemClock()
        self.program_timezone = _known_timezone(program_timezone(timezone))
        self.rules: RuleSettings = rules or rule_settings()
        if self.store.backend == "postgresql":
            refused = pgprobe.unreachable(self.store.env)
            if refused is not None:
                raise problems.StoreUnavailable(
                    f"store {self.store.display} cannot be reached: {refused}"
                )
        # Processes starting at once on one PostgreSQL store would race to
        # create its tables ("tuple concurrently updated"): take turns.
        starting = (
            pglocks.held(self.store.env, "create-tables")
            if self.store.backend == "postgresql" and not read_only
            else contextlib.nullcontext()
        )
        try:
            with starting:
                super().__init__({**self.store.env, **protection_env(), **(env or {})})
        except PersistenceError as error:
            raise problems.StoreUnavailable(
                f"store {self.store.display} cannot be opened: {_first_line(error)}"
            ) from None
        except ValueError as error:
            raise errors.StoreKeyError(
                "IOP_CIPHER_KEY is not a base64 AES key of 16, 24 or 32 bytes "
                f"({_first_line(error)}); set it to the key the store was written with"
            ) from None
        if read_only or not create:
            self._check_store_holds_events(empty_ok=not read_only)
        if check_key:
            self._check_store_key()
        self._stripes = [threading.Lock() for _ in range(64)]
        self._replaying: Repository[UUID] = Repository(self.events)  # no snapshots, no cache

    def construct_mapper(self) -> EpisodeMapper:
        mapper = cast(
            "EpisodeMapper",
            self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=EpisodeMapper),
        )
        mapper.integrity_key = self.integrity_key
        return mapper

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
            self._store(episode)
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

    def recertify(self, cmd: commands.Recertify | Mapping[str, Any]) -> Receipt:
        """A physician renews a Medicare certification (due within 60 days of the last)."""
        return self._execute(_validated(commands.Recertify, cmd), Episode.recertify)

    def discharge(self, cmd: commands.Discharge | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.Discharge, cmd), Episode.discharge)

    def schedule_aftercare(self, cmd: commands.ScheduleAftercare | Mapping[str, Any]) -> Receipt:
        return self._execute(
            _validated(commands.ScheduleAftercare, cmd), Episode.schedule_aftercare
        )

    def correct_entry(self, cmd: commands.CorrectEntry | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.CorrectEntry, cmd), Episode.correct_entry)

    def record_consent(self, cmd: commands.RecordConsent | Mapping[str, Any]) -> Receipt:
        """A 42 CFR Part 2 consent: recipient, purpose, scope of records, expiry."""
        return self._execute(_validated(commands.RecordConsent, cmd), Episode.record_consent)

    def revoke_consent(self, cmd: commands.RevokeConsent | Mapping[str, Any]) -> Receipt:
        return self._execute(_validated(commands.RevokeConsent, cmd), Episode.revoke_consent)

    def consent_for(
        self, episode_id: UUID, *, recipient: str, purpose: str, needed: Iterable[str]
    ) -> int:
        """The version of the episode's consent in force for this disclosure now.

        Raises a ``DisclosureRefused`` subclass naming why none is.
        """
        with self._locked([episode_id]):
            episode = self._current(episode_id)
        return self._consent_in_force(episode, recipient, purpose, needed)

    def record_disclosure(self, cmd: commands.RecordDisclosure | Mapping[str, Any]) -> Receipt:
        """Record one export as a Disclosure, after checking its basis is in force.

        Every record's range must exist and name its episode's client, the
        scope must be the kinds of record the ranges hold, and on consent each
        episode's consent must still allow this recipient, purpose and its
        kinds of record; otherwise nothing is stored. The same ``command_id``
        again returns the first receipt, even once that consent is revoked.
        The checks and the write hold the episodes' locks, so a revocation in
        this process lands before or after them, never between.
        """
        command = _validated(commands.RecordDisclosure, cmd)
        identity = disclosure_id(command.command_id)
        replayed = self._replayed_disclosure(identity, command)
        if replayed is not None:
            return replayed
        with self._locked(record.episode_id for record in command.records):
            self._check_disclosed(command)
            disclosure = Disclosure.record(command, now=self.clock.now())
            try:
                self.events.put(disclosure.collect_events())
            except IntegrityError:
                replayed = self._replayed_disclosure(identity, command)
                if replayed is None:
                    raise
                return replayed
        return Receipt(disclosure.id, disclosure.version)

    def record_roster(
        self, sessions: Sequence[commands.RecordSession | Mapping[str, Any]]
    ) -> list[Receipt]:
        """A day's attendance for many episodes, stored all together or not at all."""
        roster = ROSTER.validate_python(list(sessions))  # one call validates every item
        for _ in range(MAX_ATTEMPTS):
            with self._locked(command.episode_id for command in roster):
                episodes: dict[UUID, Episode] = {}
                receipts = []
                now = self.clock.now()
                for index, command in enumerate(roster):
                    if command.episode_id not in episodes:
                        episodes[command.episode_id] = self._load(command.episode_id)
                    episode = episodes[command.episode_id]
                    try:
                        receipts.append(episode.record_session(command, now, self.rules))
                    except errors.EpisodeRuleError as error:
                        self._evict(*episodes.values())  # earlier items changed them
                        if self._evict_if_stale(episode):
                            break
                        raise _in_roster(error, index, command.episode_id) from None
                else:
                    if self._saved(*episodes.values()):
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
        if version is not None:
            return EpisodeState.of(self._load(episode_id, version=version))
        with self._locked([episode_id]):
            episode = self._load(episode_id)
            if self._evict_if_stale(episode):
                episode = self._load(episode_id)
            return EpisodeState.of(episode)

    def decision_basis(self, episode_id: UUID, as_of: datetime, weeks: int) -> DecisionBasis | None:
        """The standing and last ``weeks`` complete weeks of an active episode, from the store."""
        with self._locked([episode_id]):
            episode = self._load(episode_id)
            if self._evict_if_stale(episode):
                episode = self._load(episode_id)
            standing = standing_of(episode)
            if standing is None:
                return None
            window = previous_weeks(iso_week(as_of, episode.program_timezone), weeks)
            return DecisionBasis(standing, weeks_of(episode, window), episode.version)

    def history(self, episode_id: UUID) -> Iterator[EpisodeEvent]:
        """The episode's entries in version order, upcast to current classes, links checked."""
        links = LinkChecker(episode_id)
        for event in self.events.get(episode_id):
            links.check(cast("EpisodeEvent", event))
            yield cast("EpisodeEvent", event)

    def advisory_lock_key(self, purpose: str) -> int:
        """The PostgreSQL advisory-lock key of ``purpose`` on this store's database and schema."""
        if self.store.backend != "postgresql":
            msg = f"advisory locks are for PostgreSQL stores, not {self.store.backend}"
            raise ValueError(msg)
        return pglocks.lock_key(self.store.env, purpose)

    def replayed(self, episode_id: UUID, version: int | None = None) -> Episode:
        """The episode rebuilt from its entries alone (no snapshot, no cache), links checked."""
        try:
            episode: Episode = self._replaying.get(
                episode_id, version=version, projector_func=self._checked_projection
            )
        except AggregateNotFoundError:
            raise errors.EpisodeNotFound(f"no episode {episode_id}") from None
        return episode

    # ---- internals -----------------------------------------------------

    def _store(self, *episodes: Episode) -> None:
        """Write the episodes' new entries in one transaction, and snapshot long ones.

        The library's ``save`` checks runtime protocols on every object it is
        given; these are always Episodes, so their events go straight to the
        recorder, mapped as the event store maps them (its ``put`` also
        builds a recording per event, which nothing here reads). A SQLite
        store writes the due snapshots in the same transaction (one that
        cannot be written rolls back alone); any other store, or a snapshot
        that did not go in with them, is written after them (``_snapshot``).
        """
        pending = [(episode, episode.collect_events()) for episode in episodes]
        to_stored = self.mapper.to_stored_event
        stored = [to_stored(event) for _, events in pending for event in events]
        due = [
            episode
            for episode, events in pending
            if events
            and (events[0].originator_version - 1) // SNAPSHOT_INTERVAL
            != episode.version // SNAPSHOT_INTERVAL
        ]
        snapshotted = self._insert_with_snapshots(stored, due)
        cache = self.repository.cache
        if cache is not None:
            for episode, _ in pending:
                cache.put(episode.id, episode)
        if due and not snapshotted:
            self._snapshot(*due)

    def _insert_with_snapshots(self, stored: list[StoredEvent], due: list[Episode]) -> bool:
        """Insert the events, with the due episodes' snapshots where the recorder can."""
        insert_with = getattr(self.recorder, "insert_events_with", None)
        if not due or self.snapshots is None or insert_with is None:
            self.recorder.insert_events(stored)
            return False
        try:
            snapshots = [
                self.snapshots.mapper.to_stored_event(Episode.Snapshot.take(episode))
                for episode in due
            ]
        except Exception:  # noqa: BLE001  (_snapshot tries again after the events, and logs)
            self.recorder.insert_events(stored)
            return False
        return bool(insert_with(stored, self.snapshots.recorder, snapshots))

    def _snapshot(self, *episodes: Episode) -> None:
        """Snapshot the episodes as they now stand, in one transaction, without reading back.

        Snapshots only speed up loading. The events are committed by now, so
        a failed snapshot must not turn a stored command into an error; when
        the one transaction fails, each snapshot is tried on its own, so one
        that cannot be written costs only its own episode a replay.
        """
        if self.snapshots is None or not episodes:
            return
        try:
            self.snapshots.put([Episode.Snapshot.take(episode) for episode in episodes])
        except Exception:
            if len(episodes) == 1:
                LOG.exception("snapshot of %s not taken; it loads from its events", episodes[0].id)
                return
            for episode in episodes:
                self._snapshot(episode)

    def _check_store_holds_events(self, *, empty_ok: bool = False) -> None:
        """A reading command needs a store with events in it, not an empty one."""
        try:
            head = self.recorder.max_notification_id()
        except PersistenceError as error:
            reason = _first_line(error)
            if "no such table" not in reason and "does not exist" not in reason:
                raise problems.StoreUnavailable(
                    f"store {self.store.display} cannot be read: {reason}"
                ) from None
            raise problems.StoreUnavailable(
                f"store {self.store.display} holds no episode tables ({reason}): "
                "check --store, or the schema (?schema=name) on PostgreSQL"
            ) from None
        if not head and not empty_ok:
            raise problems.EmptyStore(
                f"store {self.store.display} holds no events: check --store, or record "
                "some first (iop demo fills an empty store)"
            )

    def _current(self, episode_id: UUID) -> Episode:
        """The episode as the store has it now (a stale cached copy is reloaded)."""
        episode = self._load(episode_id)
        if self._evict_if_stale(episode):
            episode = self._load(episode_id)
        return episode

    def _consent_in_force(
        self, episode: Episode, recipient: str, purpose: str, needed: Iterable[str]
    ) -> int:
        now = self.clock.now()
        return consent_in_force(
            (ConsentTerms.of(version, terms) for version, terms in episode.consents),
            episode.revoked_consents,
            recipient=recipient,
            purpose=purpose,
            needed=needed,
            on=local(now, episode.program_timezone).date(),
            now=now,
        )

    def _check_disclosed(self, command: commands.RecordDisclosure) -> None:
        """Each record against its episode's entries and consent, the scope against them all."""
        held: set[RecordScope] = set()
        for record in command.records:
            episode = self._current(record.episode_id)
            needed = check_records(
                record,
                command.format,
                client_ref=episode.client_ref,
                history=list(self.history(record.episode_id)),
            )
            held |= needed
            if record.consent_version is None:
                continue
            in_force = self._consent_in_force(
                episode, command.recipient, command.purpose, [str(kind) for kind in needed]
            )
            if in_force != record.consent_version:
                raise errors.NoConsentInForce(
                    f"episode {record.episode_id}: the consent in force is at version "
                    f"{in_force}, not {record.consent_version}"
                )
        require_scope(command, held)

    def _replayed_disclosure(
        self, identity: UUID, command: commands.RecordDisclosure
    ) -> Receipt | None:
        """The first receipt of a disclosure already recorded under this command_id, if any."""
        first = next(self.history(identity), None)
        if first is None:
            return None
        if first.command_digest != command.digest():
            raise errors.IdempotencyKeyReused(
                f"command_id {command.command_id!r} already recorded disclosure "
                f"{identity} with different content"
            )
        return Receipt(identity, 1, replayed=True)

    def _check_store_key(self) -> None:
        """Fail at start-up, not mid-command, when the key cannot read the store.

        Without a key on a sealed store, reading goes on and writing is refused.
        """
        first = self.recorder.select_notifications(None, 1)
        if not first:
            return
        try:
            self.mapper.to_domain_event(first[0])
        except errors.EntryIntegrityError as error:
            raise errors.StoreKeyError(
                f"store {self.store.display} cannot be opened with IOP_INTEGRITY_KEY as set: "
                f"{error}. A key is adopted only by a new store: a store written without "
                "a key opens without one, a sealed store only with its own key"
            ) from None
        except MapperDeserialisationError as error:
            protected = "with" if self.mapper.cipher else "without"
            raise errors.StoreKeyError(
                f"store {self.store.display} cannot be read {protected} IOP_CIPHER_KEY "
                f"as set: the first stored event does not decode ({_first_line(error)}); "
                "set IOP_CIPHER_KEY to the key the store was written with"
            ) from None
        if self.integrity_key is None and self.mapper.carries_seal(first[0]):
            self.mapper.writes_refused = (
                f"store {self.store.display} is sealed and IOP_INTEGRITY_KEY is not set: "
                "it can be read and verified, but nothing is written to it without "
                "its integrity key"
            )

    def _execute(
        self,
        command: C,
        decide: Callable[[Episode, C, datetime, RuleSettings], Receipt],
    ) -> Receipt:
        episode_id: UUID = command.episode_id  # type: ignore[attr-defined]  # every EpisodeCommand has it
        for _ in range(MAX_ATTEMPTS):
            with self._stripes[hash(episode_id) % len(self._stripes)]:
                episode = self._load(episode_id)
                try:
                    receipt = decide(episode, command, self.clock.now(), self.rules)
                except errors.EpisodeRuleError:
                    if self._evict_if_stale(episode):
                        continue  # judged on a stale copy: judge again on the store's
                    raise
                if not episode.pending_events:
                    return receipt
                if self._saved(episode):
                    return receipt
        raise errors.Conflict(
            f"episode {episode_id}: other writers changed it on each of "
            f"{MAX_ATTEMPTS} attempts; {type(command).__name__} was not stored"
        )

    def _saved(self, *episodes: Episode) -> bool:
        """Save in one transaction; on a version conflict forget the copies and say so."""
        try:
            self._store(*episodes)
        except IntegrityError:
            self._evict(*episodes)
            return False
        except BaseException:
            self._evict(*episodes)
            raise
        return True

    def _evict(self, *episodes: Episode) -> None:
        if self.repository.cache is not None:
            for episode in episodes:
                with contextlib.suppress(KeyError):
                    self.repository.cache.get(episode.id, evict=True)

    def _evict_if_stale(self, episode: Episode) -> bool:
        """Whether another writer stored entries after this copy (then forget it)."""
        if not self.recorder.select_events(episode.id, gt=episode.version, limit=1):
            return False
        self._evict(episode)
        return True

    @contextlib.contextmanager
    def _locked(self, episode_ids: Iterable[UUID]) -> Iterator[None]:
        """Threads of this process take turns per episode (cached copies are shared)."""
        stripes = sorted({hash(episode_id) % len(self._stripes) for episode_id in episode_ids})
        with contextlib.ExitStack() as stack:
            for stripe in stripes:
                stack.enter_context(self._stripes[stripe])
            yield

    def _load(self, episode_id: UUID, version: int | None = None) -> Episode:
        """The episode from its snapshot and entries, every link (and seal) checked.

        A snapshot that does not check out is logged and ignored: the episode
        is replayed from its entries instead. An entry that does not verify
        raises ``EntryIntegrityError``.
        """
        try:
            try:
                episode: Episode = self.repository.get(
                    episode_id, version=version, projector_func=self._checked_projection
                )
            except SnapshotRejected as rejected:
                LOG.warning("%s; episode %s replayed from its entries", rejected, episode_id)
                episode = self.replayed(episode_id, version)
                if version is None and self.repository.cache is not None:
                    self.repository.cache.put(episode_id, episode)
        except AggregateNotFoundError:
            raise errors.EpisodeNotFound(f"no episode {episode_id}") from None
        if not isinstance(episode, Episode):  # a disclosure's id: not an episode
            raise errors.EpisodeNotFound(f"no episode {episode_id}")
        if not episode.__dict__.keys() >= TIMELINE_NAMES:
            # A snapshot taken before episodes kept their clinical timeline:
            # rebuild from the entries alone (snapshots only speed loading up).
            episode = Repository(self.events).get(episode_id, version=version)
            if version is None and self.repository.cache is not None:
                self.repository.cache.put(episode_id, episode)
        return episode

    def _checked_projection(self, episode: Episode | None, items: Iterable[Any]) -> Episode | None:
        """The library's projection, each entry's link checked before it is applied."""
        links: LinkChecker | None = None
        for item in items:
            if isinstance(item, Episode.Snapshot):
                links = LinkChecker(item.originator_id, self._snapshot_link(item))
            else:
                links = links or LinkChecker(item.originator_id)
                links.check(item)
            episode = item.mutate(episode)
        return episode

    def _snapshot_link(self, snapshot: Episode.Snapshot) -> str:
        """The snapshot's link, once it equals the stored entry's at its version."""
        version = snapshot.originator_version
        recorded: str = snapshot.state.get("chain", "")
        rows = self.recorder.select_events(snapshot.originator_id, gt=version - 1, lte=version)
        entry = self.mapper.to_domain_event(rows[0]) if rows else None
        if entry is None or stored_link_and_canonical(entry)[0] != recorded:
            msg = (
                f"snapshot of episode {snapshot.originator_id} at version {version} "
                "is not bound to the stored entry at its version (links differ)"
            )
            raise SnapshotRejected(msg)
        return recorded

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


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _known_timezone(name: str) -> str:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise problems.UsageProblem(
            f"timezone {name!r} (--timezone or $IOP_TIMEZONE) is not an IANA timezone; "
            "give one such as America/New_York"
        ) from None
    return name


def _in_roster(error: errors.EpisodeRuleError, index: int, episode_id: UUID) -> Exception:
    """The same rule error, its message and field naming the roster item that broke it."""
    message = str(error).removeprefix(f"[{error.rule}] ")
    named = type(error)(
        f"roster item {index} (episode {episode_id}): {message}",
        field=f"[{index}].{error.field or 'episode_id'}",
    )
    named.add_note(f"roster item {index} (episode {episode_id})")
    return named


ROSTER = TypeAdapter(list[commands.RecordSession])
"""A roster's sessions validated in one call; an error's location starts with the item's index."""


def _validated(command_type: type[C], cmd: C | Mapping[str, Any]) -> C:
    if isinstance(cmd, command_type):
        return cmd
    return command_type.model_validate(cmd)
