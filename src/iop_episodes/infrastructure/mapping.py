"""How episode entries become stored rows and back.

An episode event already carries its stored form (the canonical entry with
its chain link, see ``domain.canonical``), so writing one encodes nothing
again: the bytes the chain covers are the bytes stored. Reading parses that
JSON once, checks it belongs to its row, and upcasts old class versions.
Snapshots, and entries stored by the first release (``legacy``), take the
library's JSON transcoder.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic

from iop_episodes.domain.canonical import CHAIN_OPENING
from iop_episodes.domain.disclosure import Disclosure
from iop_episodes.domain.episode import Episode
from iop_episodes.domain.events import EVENT_TYPES, Disclosed, EpisodeEvent
from iop_episodes.infrastructure.compat import construct_event
from iop_episodes.infrastructure.legacy import is_format1

TOPICS: dict[type[EpisodeEvent], str] = {cls: get_topic(cls) for cls in EVENT_TYPES.values()}
CLASSES: dict[str, type[EpisodeEvent]] = {topic: cls for cls, topic in TOPICS.items()}
EPISODE_TOPIC = get_topic(Episode)
AGGREGATE_TOPICS: dict[type[EpisodeEvent], str] = {Disclosed: get_topic(Disclosure)}
"""Aggregates other than Episode that a creating entry makes."""


class EntryMismatch(ValueError):
    """A stored entry names another episode, version or type than its row."""


class EpisodeMapper(Mapper[UUID]):
    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if not isinstance(domain_event, EpisodeEvent):
            return super().to_stored_event(domain_event)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=TOPICS[type(domain_event)],
            state=self._protect(domain_event.stored_form),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        cls = CLASSES.get(stored_event.topic)
        if cls is None:
            return super().to_domain_event(stored_event)
        try:
            stored = self.plaintext(stored_event.state)
            if is_format1(stored):
                return self._format1_event(stored_event, stored)
            return entry_event(
                cls, stored_event.originator_id, stored_event.originator_version, stored
            )
        except Exception as error:
            msg = (
                f"stored entry {stored_event.originator_id} version "
                f"{stored_event.originator_version} ({stored_event.topic}) "
                f"does not decode: {error}"
            )
            raise MapperDeserialisationError(msg) from error

    def _format1_event(self, stored_event: StoredEvent, stored: bytes) -> Any:
        """An entry the first release stored: the library's transcoding decodes it."""
        event = super().to_domain_event(stored_event)
        return construct_event(type(event), {**vars(event), "stored_form": stored})

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


def entry_event(
    cls: type[EpisodeEvent], originator_id: UUID | str, version: int, stored: bytes
) -> EpisodeEvent:
    """The event a stored entry records, upcast to its class's current version."""
    if not stored.startswith(CHAIN_OPENING):
        msg = "stored entry does not begin with its chain link"
        raise ValueError(msg)
    entry: dict[str, Any] = json.loads(stored)
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
