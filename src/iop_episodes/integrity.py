"""Tamper evidence read straight from the raw store.

``verify_episode`` recomputes every chain link from the stored rows (after
decryption and decompression only: no upcasting, since the chain covers the
entry as it was stored) and checks versions run 1, 2, 3... without gaps.
``store_digest`` is one SHA-256 over every stored event in log order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from iop_episodes.domain.canonical import (
    canonical_time,
    chain_seed,
    entry_bytes,
    next_link,
)
from iop_episodes.domain.events import EVENT_TYPES

if TYPE_CHECKING:
    from eventsourcing.persistence import Notification, StoredEvent

    from iop_episodes.service import EpisodeService

Problem = Literal[
    "version-gap", "chain-mismatch", "unreadable", "unknown-type", "projection-mismatch"
]
PAGE = 1000


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a stored history, at an episode and version."""

    episode_id: UUID
    version: int
    problem: Problem
    detail: str

    def __str__(self) -> str:
        where = f"episode {self.episode_id} version {self.version}"
        return f"{where}: {self.problem}: {self.detail}"


def plaintext(service: EpisodeService, record: StoredEvent) -> bytes:
    """The row's state as the transcoder wrote it: decrypted and decompressed."""
    data = record.state
    if service.mapper.cipher is not None:
        data = service.mapper.cipher.decrypt(data)
    if service.mapper.compressor is not None:
        data = service.mapper.compressor.decompress(data)
    return data


def stored_state(service: EpisodeService, record: StoredEvent) -> dict[str, Any]:
    """The event's stored fields, decrypted and decoded but not upcast."""
    state: dict[str, Any] = service.mapper.transcoder.decode(plaintext(service, record))
    return state


def event_type_of(topic: str) -> str:
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def entry_canonical(record: StoredEvent, state: dict[str, Any]) -> bytes:
    """The canonical bytes of a stored row (docs/hash-chain.md)."""
    return entry_bytes(
        episode_id=record.originator_id,
        version=record.originator_version,
        event_type=event_type_of(record.topic),
        class_version=int(state.get("class_version", 1)),
        recorded_at=canonical_time(state["timestamp"]),
        occurred_at=canonical_time(state["occurred_at"]),
        actor=state["actor"],
        command_id=state["command_id"],
        payload=state["payload"],
    )


def entry_link(previous: str, record: StoredEvent, state: dict[str, Any]) -> str:
    """The chain link a stored row should carry, given the link before it."""
    return next_link(previous, entry_canonical(record, state))


def verify_episode(service: EpisodeService, episode_id: UUID) -> list[Finding]:
    """Every gap, broken link or unreadable row in one episode's stored history."""
    findings: list[Finding] = []
    previous = chain_seed(episode_id)
    expected_version = 1
    for record in service.recorder.select_events(episode_id):
        version = record.originator_version
        if version != expected_version:
            findings.append(
                Finding(
                    episode_id,
                    expected_version,
                    "version-gap",
                    f"expected version {expected_version}, next stored is {version}",
                )
            )
        expected_version = version + 1
        if event_type_of(record.topic) not in EVENT_TYPES:
            findings.append(Finding(episode_id, version, "unknown-type", f"topic {record.topic!r}"))
            continue
        try:
            state = stored_state(service, record)
            link = entry_link(previous, record, state)
            stored_link = state["chain"]
        except Exception as error:  # noqa: BLE001  (any decoding failure is a finding)
            findings.append(
                Finding(
                    episode_id,
                    version,
                    "unreadable",
                    f"{type(error).__name__}: {error}",
                )
            )
            continue
        if link != stored_link:
            findings.append(
                Finding(
                    episode_id,
                    version,
                    "chain-mismatch",
                    f"stored link {stored_link} != recomputed {link}",
                )
            )
        previous = stored_link
    return findings


def notifications(service: EpisodeService, start: int = 1) -> Iterator[Notification]:
    """Every stored event in log order, read a page at a time."""
    while True:
        page = service.recorder.select_notifications(start, PAGE)
        yield from page
        if len(page) < PAGE:
            return
        start = page[-1].id + 1


def episode_ids(service: EpisodeService) -> list[UUID]:
    """Every episode in the store, in the order they were first recorded."""
    seen: dict[UUID, None] = {}
    for notification in notifications(service):
        seen.setdefault(UUID(str(notification.originator_id)), None)
    return list(seen)


def verify_store(service: EpisodeService, only: list[UUID] | None = None) -> list[Finding]:
    findings: list[Finding] = []
    for episode_id in only if only is not None else episode_ids(service):
        findings.extend(verify_episode(service, episode_id))
    return findings


def store_digest(service: EpisodeService) -> str:
    """SHA-256 over every stored event's position, identity, type and plaintext."""
    digest = hashlib.sha256()
    for record in notifications(service):
        digest.update(
            f"{record.originator_id}|{record.originator_version}|{record.topic}|".encode()
        )
        digest.update(hashlib.sha256(plaintext(service, record)).digest())
    return digest.hexdigest()
