"""How episode entries become stored rows and back.

An episode event already carries its stored form (the canonical entry with
its chain link, see ``domain.canonical``), so writing one encodes nothing
again: the bytes the chain covers are the bytes stored. Reading parses that
JSON once, checks it belongs to its row, and upcasts old class versions.
Snapshots, and entries stored by the first release (``legacy``), take the
library's JSON transcoder.

With an integrity key the mapper seals what it writes and checks what it
reads (the domain never sees the key): an entry gets ``_seal``, the HMAC of
its 32 raw link bytes, as its second member, and an entry read without a
seal that holds raises ``EntryIntegrityError``. A snapshot is stored as
``{"_seal":"<hex>","snapshot":<transcoded>}`` (HMAC over the transcoded
bytes) or, without a key, ``{"_digest":"<hex>","snapshot":...}`` (their
SHA-256, which catches accidents only); one that does not check out raises
``SnapshotRejected`` and the service replays the episode from its entries.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic

from iop_episodes.domain.canonical import (
    BODY_START,
    CHAIN_OPENING,
    SEAL_OPENING,
    chain_seed,
    next_link,
    parse_json,
    split_sealed,
)
from iop_episodes.domain.disclosure import Disclosure
from iop_episodes.domain.episode import Episode
from iop_episodes.domain.errors import EntryIntegrityError, StoreKeyError
from iop_episodes.domain.events import EVENT_TYPES, Disclosed, EpisodeEvent
from iop_episodes.infrastructure.compat import construct_event
from iop_episodes.infrastructure.keys import IntegrityKey
from iop_episodes.infrastructure.legacy import format1_link_and_canonical, is_format1

TOPICS: dict[type[EpisodeEvent], str] = {cls: get_topic(cls) for cls in EVENT_TYPES.values()}
CLASSES: dict[str, type[EpisodeEvent]] = {topic: cls for cls, topic in TOPICS.items()}
EPISODE_TOPIC = get_topic(Episode)
AGGREGATE_TOPICS: dict[type[EpisodeEvent], str] = {Disclosed: get_topic(Disclosure)}
"""Aggregates other than Episode that a creating entry makes."""


SNAPSHOT_TOPIC = get_topic(Episode.Snapshot)
SNAPSHOT_SEALED = b'{"_seal":"'
SNAPSHOT_DIGESTED = b'{"_digest":"'
SNAPSHOT_BODY = b'","snapshot":'


class EntryMismatch(ValueError):
    """A stored entry names another episode, version or type than its row."""


class SnapshotRejected(ValueError):
    """A stored snapshot that does not check out: it is ignored, never trusted."""


def seal_entry(stored: bytes, key: IntegrityKey) -> bytes:
    """The stored form with ``_seal`` (HMAC of the raw link) as its second member."""
    link = stored[len(CHAIN_OPENING) : BODY_START - 2]
    seal = key.seal(bytes.fromhex(link.decode("ascii")))
    return stored[:BODY_START] + SEAL_OPENING + seal.encode("ascii") + b'",' + stored[BODY_START:]


def seal_problem(stored: bytes, key: IntegrityKey) -> str | None:
    """Why a stored entry's seal does not hold under ``key`` (None when it does)."""
    if is_format1(stored):
        return "the entry predates seals (format 1) but the store is sealed"
    link, seal, _ = split_sealed(stored)
    if seal is None:
        return "the entry carries no seal"
    if not key.seal_holds(bytes.fromhex(link), seal):
        return "the entry's seal does not hold for its link under the integrity key"
    return None


class EpisodeMapper(Mapper[UUID]):
    integrity_key: IntegrityKey | None = None  # set by the service that holds it
    writes_refused: str | None = None
    """Why no entry or snapshot may be written (a service without the key of a sealed store)."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if self.writes_refused is not None and isinstance(
            domain_event, (EpisodeEvent, Episode.Snapshot)
        ):
            raise StoreKeyError(self.writes_refused)
        if isinstance(domain_event, Episode.Snapshot):
            return self._snapshot_row(domain_event)
        if not isinstance(domain_event, EpisodeEvent):
            return super().to_stored_event(domain_event)
        state = domain_event.stored_form
        if self.integrity_key is not None:
            state = seal_entry(state, self.integrity_key)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=TOPICS[type(domain_event)],
            state=self._protect(state),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return self.decode_row(
            stored_event.originator_id,
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
        )

    def decode_row(self, originator_id: UUID | str, version: int, topic: str, state: bytes) -> Any:
        """The event one stored row holds, as ``to_domain_event`` decodes it.

        For passes that read plain rows (``rawlog``) instead of the library's
        ``StoredEvent`` and ``Notification`` objects: the same checks, one decoder.
        """
        cls = CLASSES.get(topic)
        episode_id = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        if cls is None:
            row = StoredEvent(
                originator_id=episode_id, originator_version=version, topic=topic, state=state
            )
            if topic == SNAPSHOT_TOPIC:
                return self._snapshot(row)
            if topic.rsplit(":", 1)[-1] in EVENT_TYPES:
                raise EntryIntegrityError(
                    f"episode {episode_id} version {version}: topic {topic!r} "
                    "names an entry type under another module; nothing is decided on it",
                    episode_id=episode_id,
                    version=version,
                )
            return super().to_domain_event(row)
        try:
            stored = self.plaintext(state)
        except Exception as error:
            msg = f"stored entry {episode_id} version {version} ({topic}) does not decode: {error}"
            raise MapperDeserialisationError(msg) from error
        if self.integrity_key is not None:
            self._check_seal(episode_id, version, stored, self.integrity_key)
        try:
            if is_format1(stored):
                row = StoredEvent(
                    originator_id=episode_id, originator_version=version, topic=topic, state=state
                )
                return self._format1_event(row, stored)
            return entry_event(cls, episode_id, version, stored)
        except EntryMismatch as error:
            raise EntryIntegrityError(
                f"episode {episode_id} version {version}: {error}; nothing is decided on it",
                episode_id=episode_id,
                version=version,
            ) from error
        except Exception as error:
            msg = f"stored entry {episode_id} version {version} ({topic}) does not decode: {error}"
            raise MapperDeserialisationError(msg) from error

    @staticmethod
    def _check_seal(episode_id: UUID, version: int, stored: bytes, key: IntegrityKey) -> None:
        try:
            problem = seal_problem(stored, key)
        except ValueError as error:
            problem = f"the entry's seal cannot be read: {error}"
        if problem is not None:
            raise EntryIntegrityError(
                f"episode {episode_id} version {version}: {problem}; nothing is decided on it",
                episode_id=episode_id,
                version=version,
            )

    def _snapshot_row(self, snapshot: Episode.Snapshot) -> StoredEvent:
        """A snapshot in its envelope: sealed with the key, or with a plain digest."""
        state = dict(vars(snapshot))
        originator_id, version = state.pop("originator_id"), state.pop("originator_version")
        body = self.transcoder.encode(state)
        opening = SNAPSHOT_DIGESTED if self.integrity_key is None else SNAPSHOT_SEALED
        check = self._snapshot_check(body).encode("ascii")
        envelope = opening + check + SNAPSHOT_BODY + body + b"}"
        return StoredEvent(
            originator_id=originator_id,
            originator_version=version,
            topic=SNAPSHOT_TOPIC,
            state=self._protect(envelope),
        )

    def _snapshot_check(self, body: bytes) -> str:
        if self.integrity_key is None:
            return hashlib.sha256(body).hexdigest()
        return self.integrity_key.seal(body)

    def _snapshot(self, stored_event: StoredEvent) -> Episode.Snapshot:
        """The stored snapshot, if its seal (or digest) holds; else ``SnapshotRejected``."""
        return self.snapshot_from(stored_event, checked=True)

    def snapshot_from(self, stored_event: StoredEvent, *, checked: bool) -> Episode.Snapshot:
        """The snapshot a row holds; ``checked``: only if its seal or digest holds.

        Unchecked is for a verifier without the key: a sealed snapshot it
        cannot authenticate is still decoded, to be compared with a replay.
        """
        where = f"snapshot of episode {stored_event.originator_id} at version "
        where += str(stored_event.originator_version)
        try:
            envelope = self.plaintext(stored_event.state)
        except Exception as error:
            raise SnapshotRejected(f"{where} does not decode: {error}") from error
        sealed = envelope.startswith(SNAPSHOT_SEALED)
        if not (sealed or envelope.startswith(SNAPSHOT_DIGESTED)):
            raise SnapshotRejected(f"{where} is not in its envelope")
        start = len(SNAPSHOT_SEALED if sealed else SNAPSHOT_DIGESTED)
        body_start = start + 64 + len(SNAPSHOT_BODY)
        body = envelope[body_start:-1]
        if envelope[start + 64 : body_start] != SNAPSHOT_BODY or not envelope.endswith(b"}"):
            raise SnapshotRejected(f"{where} is not in its envelope")
        if checked:
            self._check_snapshot(where, sealed, envelope[start : start + 64], body)
        try:
            state: dict[str, Any] = self.transcoder.decode(body)
        except Exception as error:
            raise SnapshotRejected(f"{where} does not decode: {error}") from error
        state["originator_id"] = UUID(str(stored_event.originator_id))
        state["originator_version"] = stored_event.originator_version
        return construct_event(Episode.Snapshot, state)

    def _check_snapshot(self, where: str, sealed: bool, check: bytes, body: bytes) -> None:  # noqa: FBT001  (private, positional by design)
        if sealed != (self.integrity_key is not None):
            kind = "sealed" if sealed else "not sealed"
            held = "holds" if self.integrity_key is not None else "holds no"
            raise SnapshotRejected(f"{where} is {kind} and the service {held} integrity key")
        if not hmac_equal(self._snapshot_check(body), check.decode("ascii", "replace")):
            raise SnapshotRejected(f"{where}: its {'seal' if sealed else 'digest'} does not hold")

    def _format1_event(self, stored_event: StoredEvent, stored: bytes) -> Any:
        """An entry the first release stored: the library's transcoding decodes it."""
        event = super().to_domain_event(stored_event)
        return construct_event(type(event), {**vars(event), "stored_form": stored})

    def carries_seal(self, stored_event: StoredEvent) -> bool:
        """Whether a stored row is an entry with a seal, whatever the key."""
        if stored_event.topic not in CLASSES:
            return False
        stored = self.plaintext(stored_event.state)
        return not is_format1(stored) and split_sealed(stored)[1] is not None

    def plaintext(self, state: bytes) -> bytes:
        """A row's state as the domain wrote it: decrypted, then decompressed."""
        if self.cipher is not None:
            state = self.cipher.decrypt(state)
        if self.compressor is not None:
            state = self.compressor.decompress(state)
        return state

    def _protect(self, state: bytes) -> bytes:
        if self.compressor is not None:
            state = self.compressor.compress(state)
        if self.cipher is not None:
            state = self.cipher.encrypt(state)
        return state


def hmac_equal(first: str, second: str) -> bool:
    """Constant-time comparison of two hex texts."""
    return hmac.compare_digest(first.encode("ascii"), second.encode("ascii", "replace"))


def entry_event(
    cls: type[EpisodeEvent], originator_id: UUID | str, version: int, stored: bytes
) -> EpisodeEvent:
    """The event a stored entry records, upcast to its class's current version."""
    if not stored.startswith(CHAIN_OPENING):
        msg = "stored entry does not begin with its chain link"
        raise ValueError(msg)
    entry: dict[str, Any] = parse_json(stored)
    episode_id = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
    if (entry["episode_id"], entry["version"], entry["type"]) != (
        str(episode_id),
        version,
        cls.type_name(),
    ):
        msg = (
            f"entry says episode {entry['episode_id']} version {entry['version']} "
            f"{entry['type']}; its row says {episode_id} version {version} {cls.type_name()}"
        )
        raise EntryMismatch(msg)
    from_version, to_version = entry["class_version"], getattr(cls, "class_version", 1)
    while from_version < to_version:
        getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(entry)
        from_version += 1
    fields = {
        "originator_id": episode_id,
        "originator_version": version,
        "timestamp": datetime.fromisoformat(entry["recorded_at"]),
        "occurred_at": datetime.fromisoformat(entry["occurred_at"]),
        "actor": entry["actor"],
        "command_id": entry["command_id"],
        "command_digest": entry["command_digest"],
        "payload": entry["payload"],
        "chain": entry["_chain"],
        "stored_form": stored,
    }
    if issubclass(cls, Aggregate.Created):  # the event that creates the aggregate
        fields["originator_topic"] = AGGREGATE_TOPICS.get(cls, EPISODE_TOPIC)
    return construct_event(cls, fields)


def stored_link_and_canonical(event: EpisodeEvent) -> tuple[str, bytes]:
    """The link an entry carries and the canonical bytes it covers, from its stored form."""
    stored = event.stored_form
    if is_format1(stored):
        episode_id = str(event.originator_id)
        return format1_link_and_canonical(
            stored, episode_id, event.originator_version, event.type_name()
        )
    link, _, canonical = split_sealed(stored)
    return link, canonical


class LinkChecker:
    """Checks, entry by entry in version order, that each link follows from the one before."""

    def __init__(self, episode_id: UUID, previous: str | None = None) -> None:
        self.episode_id = episode_id
        self.previous = previous if previous is not None else chain_seed(episode_id)

    def check(self, event: EpisodeEvent) -> None:
        """Raise ``EntryIntegrityError`` unless ``event`` links on from the entry before it."""
        link, canonical = stored_link_and_canonical(event)
        if next_link(self.previous, canonical) != link:
            version = event.originator_version
            raise EntryIntegrityError(
                f"episode {self.episode_id} version {version}: its stored link does not "
                "follow from the entry and the link before it; nothing is decided on it",
                episode_id=self.episode_id,
                version=version,
            )
        self.previous = link
