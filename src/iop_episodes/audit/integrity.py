"""Tamper evidence read straight from the raw store.

``verify_episode`` recomputes every chain link from the stored rows (after
decryption and decompression only: no upcasting, since the chain covers the
entry as it was stored) and checks versions run 1, 2, 3... without gaps.
``store_digest`` is one SHA-256 over every stored event in log order.
"""

from __future__ import annotations

import hashlib
from binascii import unhexlify
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from eventsourcing.utils import get_topic

from iop_episodes.domain.canonical import (
    BODY_START,
    CHAIN_OPENING,
    LINK_END,
    chain_seed,
    entry_tail,
    next_link,
    split_stored,
)
from iop_episodes.domain.events import EVENT_TYPES
from iop_episodes.infrastructure.legacy import format1_link, format1_link_and_canonical, is_format1
from iop_episodes.infrastructure.rawlog import log_pages, notification_pages

if TYPE_CHECKING:
    from eventsourcing.persistence import Notification, StoredEvent

    from iop_episodes.application.service import EpisodeService

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
    """The row's state as the domain wrote it: decrypted and decompressed."""
    return service.mapper.plaintext(record.state)


def stored_link(service: EpisodeService, record: StoredEvent) -> str:
    """The chain link a stored row carries."""
    stored = plaintext(service, record)
    return format1_link(stored) if is_format1(stored) else split_stored(stored)[0]


def event_type_of(topic: str) -> str:
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def row_problem(previous: str, record: StoredEvent, stored: bytes) -> tuple[str, str | None]:
    """The row's stored link, and why it does not check out (None when it does)."""
    event_type = event_type_of(record.topic)
    version = record.originator_version
    if is_format1(stored):
        episode_id = str(UUID(str(record.originator_id)))
        link, canonical = format1_link_and_canonical(stored, episode_id, version, event_type)
    else:
        link, canonical = split_stored(stored)
        if not canonical.endswith(entry_tail(event_type, version)):
            return link, (
                f"the stored entry is not a {event_type} at version {version}, as its row says"
            )
    if next_link(previous, canonical) != link:
        return link, f"stored link {link} does not follow from the entry and the link before it"
    return link, None


def verify_episode(service: EpisodeService, episode_id: UUID) -> list[Finding]:
    """Every gap, broken link or unreadable row in one episode's stored history."""
    return verify_records(service, episode_id, service.recorder.select_events(episode_id))


def verify_records(
    service: EpisodeService, episode_id: UUID, records: Sequence[StoredEvent]
) -> list[Finding]:
    """``verify_episode`` over rows already read (in version order) by the caller."""
    findings: list[Finding] = []
    previous = chain_seed(episode_id)
    expected_version = 1
    for record in records:
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
            link, problem = row_problem(previous, record, plaintext(service, record))
        except Exception as error:  # noqa: BLE001  (any decoding failure is a finding)
            findings.append(
                Finding(episode_id, version, "unreadable", f"{type(error).__name__}: {error}")
            )
            continue
        if problem is not None:
            findings.append(Finding(episode_id, version, "chain-mismatch", problem))
        previous = link
    return findings


def notifications(service: EpisodeService, start: int = 1) -> Iterator[Notification]:
    """Every stored event in log order, read a page at a time."""
    for page in notification_pages(service.recorder, PAGE, start):
        yield from page


def episode_ids(service: EpisodeService) -> list[UUID]:
    """Every episode in the store, in the order they were first recorded."""
    seen: dict[UUID, None] = {}
    for notification in notifications(service):
        seen.setdefault(UUID(str(notification.originator_id)), None)
    return list(seen)


def verify_store(service: EpisodeService, only: list[UUID] | None = None) -> list[Finding]:
    """Every finding in the store (or in ``only``'s episodes), episodes in first-recorded order.

    One pass in log order checks every link; only an episode whose rows do
    not check out there is read again, on its own, to say what is wrong.
    """
    if only is not None:
        return [finding for episode_id in only for finding in verify_episode(service, episode_id)]
    suspects = _suspect_episodes(service)
    return [finding for episode_id in suspects for finding in verify_episode(service, episode_id)]


def _suspect_episodes(service: EpisodeService) -> list[UUID]:
    """Episodes whose rows, read in log order, do not chain up cleanly.

    The loop is written out flat because it runs once per stored row. It
    checks what ``row_problem`` checks; the version order needs no check of
    its own, since each entry's bytes name its version (the tail) and link
    to the entry before it. Any doubt makes a suspect.
    """
    tails = {topic: entry_tail(name, 0)[:-2] + b"%d}" for topic, name in _TOPIC_NAMES.items()}
    heads: dict[str, bytes | None] = {}  # the last raw link, or None for a suspect
    protected = service.mapper.cipher is not None or service.mapper.compressor is not None
    plain = service.mapper.plaintext
    opening, link_end, body_start = CHAIN_OPENING, LINK_END, BODY_START
    link_start = len(opening)
    for page in log_pages(service.recorder):
        for key, version, topic, state, _ in page:
            previous = heads.get(key)
            if previous is None:
                if key in heads:
                    continue
                previous = bytes.fromhex(chain_seed(UUID(key)))
            try:
                stored = plain(state) if protected else state
                link = unhexlify(stored[link_start:link_end])
                sound = (
                    stored.startswith(opening)
                    and stored.startswith(b'",', link_end)
                    and stored.endswith(tails[topic] % version)
                    and sha256(previous + b"{" + stored[body_start:]).digest() == link
                )
            except Exception:  # noqa: BLE001  (anything unreadable makes a suspect)
                sound = False
            heads[key] = link if sound else None
    return [UUID(key) for key, link in heads.items() if link is None]


_TOPIC_NAMES = {get_topic(cls): name for name, cls in EVENT_TYPES.items()}


def store_digest(service: EpisodeService) -> str:
    """SHA-256 over every stored event's position, identity, type and plaintext."""
    digest = hashlib.sha256()
    for record in notifications(service):
        digest.update(
            f"{record.originator_id}|{record.originator_version}|{record.topic}|".encode()
        )
        digest.update(hashlib.sha256(plaintext(service, record)).digest())
    return digest.hexdigest()
