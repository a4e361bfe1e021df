"""Tamper evidence read straight from the raw store.

``verify_episode`` recomputes every chain link from the stored rows (after
decryption and decompression only: no upcasting, since the chain covers the
entry as it was stored), checks versions run 1, 2, 3... without gaps, that
each row's full topic is its entry type's, and (when the service holds an
integrity key) that every entry carries a seal that holds.
``verify_snapshots`` checks every stored snapshot: its seal or digest, its
link against the entry at its version, and (without a key) its state
against a replay of the entries. ``store_digest`` is one SHA-256 over every
stored event in log order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from binascii import unhexlify
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import groupby
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from eventsourcing.utils import get_topic

from iop_episodes.application.output import Output
from iop_episodes.audit.shards import Shard, in_processes
from iop_episodes.domain.canonical import (
    BODY_START,
    CHAIN_OPENING,
    LINK_END,
    SEAL_MEMBER,
    SEAL_OPENING,
    chain_seed,
    entry_tail,
    next_link,
    split_sealed,
    split_stored,
)
from iop_episodes.domain.episode import Episode
from iop_episodes.domain.events import EVENT_TYPES
from iop_episodes.infrastructure.legacy import format1_link, format1_link_and_canonical, is_format1
from iop_episodes.infrastructure.mapping import (
    SNAPSHOT_SEALED,
    LinkChecker,
    SnapshotRejected,
    seal_problem,
)
from iop_episodes.infrastructure.rawlog import EVERYTHING, every_row, log_pages, notification_pages

if TYPE_CHECKING:
    from eventsourcing.persistence import Notification, StoredEvent

    from iop_episodes.application.service import EpisodeService

Problem = Literal[
    "version-gap",
    "chain-mismatch",
    "unreadable",
    "unknown-type",
    "topic-mismatch",
    "seal-mismatch",
    "snapshot-mismatch",
    "projection-mismatch",
    "tracking-mismatch",
    "unknown-episode",
]
PAGE = 1000
STORE = UUID(int=0)
"""The episode a finding about the whole store names (the tracking position)."""


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


@dataclass
class Checked:
    """What a verification looked at."""

    episodes: int = 0
    entries: int = 0
    snapshots: int = 0
    view_rows: int = 0
    disclosures: int = 0  # aggregates whose first entry is a Disclosed, not counted as episodes


@dataclass
class Verification:
    """Every finding, and what was checked to find them."""

    checked: Checked = field(default_factory=Checked)
    findings: list[Finding] = field(default_factory=list)

    def first_bad_versions(self) -> dict[UUID, int]:
        """Each episode with an entry finding, and the first version that does not verify."""
        first: dict[UUID, int] = {}
        for finding in self.findings:
            if finding.problem in ENTRY_PROBLEMS:
                known = first.get(finding.episode_id, finding.version)
                first[finding.episode_id] = min(known, finding.version)
        return first


ENTRY_PROBLEMS = frozenset(
    {
        "version-gap",
        "chain-mismatch",
        "unreadable",
        "unknown-type",
        "topic-mismatch",
        "seal-mismatch",
        "unknown-episode",
    }
)


class FindingOutput(Output):
    """One thing wrong with a stored history or the views."""

    episode_id: str
    version: int
    problem: str
    detail: str

    @classmethod
    def of(cls, finding: Finding) -> FindingOutput:
        return cls(
            episode_id=str(finding.episode_id),
            version=finding.version,
            problem=finding.problem,
            detail=finding.detail,
        )


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
        event_type = event_type_of(record.topic)
        if event_type not in EVENT_TYPES:
            findings.append(Finding(episode_id, version, "unknown-type", f"topic {record.topic!r}"))
            continue
        if record.topic not in _TOPIC_NAMES:
            canonical_topic = get_topic(EVENT_TYPES[event_type])
            detail = f"topic {record.topic!r} is not {event_type}'s topic {canonical_topic!r}"
            findings.append(Finding(episode_id, version, "topic-mismatch", detail))
        try:
            stored = plaintext(service, record)
            link, problem = row_problem(previous, record, stored)
            unsealed = _seal_problem(service, stored)
        except Exception as error:  # noqa: BLE001  (any decoding failure is a finding)
            findings.append(
                Finding(episode_id, version, "unreadable", f"{type(error).__name__}: {error}")
            )
            continue
        if problem is not None:
            findings.append(Finding(episode_id, version, "chain-mismatch", problem))
        if unsealed is not None:
            findings.append(Finding(episode_id, version, "seal-mismatch", unsealed))
        previous = link
    return findings


def _seal_problem(service: EpisodeService, stored: bytes) -> str | None:
    key = service.integrity_key
    return None if key is None else seal_problem(stored, key)


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


def verify_store(
    service: EpisodeService, only: list[UUID] | None = None, *, jobs: int = 1
) -> list[Finding]:
    """Every finding in the store's entries (or in ``only``'s), in first-recorded order."""
    return verify_entries(service, only, jobs=jobs).findings


def verify_entries(
    service: EpisodeService, only: Sequence[UUID] | None = None, *, jobs: int = 1
) -> Verification:
    """Every entry finding, with counts of the episodes and entries checked.

    One pass in log order checks every link (and seal); only an episode
    whose rows do not check out there is read again, on its own, to say what
    is wrong. A named episode the store does not hold is a finding. With
    ``jobs`` above 1 the pass is split over that many processes, each reading
    its share of the episodes; the findings and counts are the same.
    """
    result = Verification()
    if only is not None:
        for episode_id in only:
            records = service.recorder.select_events(episode_id)
            if not records:
                result.findings.append(
                    Finding(episode_id, 0, "unknown-episode", "the store holds no such episode")
                )
                continue
            if records[0].topic == _DISCLOSED_TOPIC:
                result.checked.disclosures += 1
            else:
                result.checked.episodes += 1
            result.checked.entries += len(records)
            result.findings.extend(verify_records(service, episode_id, records))
        return result
    parts = in_processes(service, _shard_suspects, jobs)
    for _, checked in parts:
        result.checked.episodes += checked.episodes
        result.checked.entries += checked.entries
        result.checked.disclosures += checked.disclosures
    found = sorted(pair for pairs, _ in parts for pair in pairs)  # first-recorded order
    for episode_id in (UUID(key) for _, key in found):
        result.findings.extend(verify_episode(service, episode_id))
    return result


def _suspect_episodes(service: EpisodeService, checked: Checked | None = None) -> list[UUID]:
    """Episodes whose rows, read in log order, do not chain up (and seal) cleanly."""
    return [UUID(key) for _, key in _suspects_in(service, checked, EVERYTHING)]


def _shard_suspects(service: EpisodeService, shard: Shard) -> tuple[list[tuple[int, str]], Checked]:
    """The shard's suspects (with the log position of each one's first row) and its counts."""
    checked = Checked()
    return _suspects_in(service, checked, shard), checked


def _suspects_in(
    service: EpisodeService, checked: Checked | None, shard: Shard
) -> list[tuple[int, str]]:
    """The shard's suspect episodes, each with the log position of its first row.

    The loop is written out flat because it runs once per stored row. It
    checks what ``row_problem`` and the seal check do; the version order
    needs no check of its own, since each entry's bytes name its version
    (the tail) and link to the entry before it. Any doubt makes a suspect.
    """
    tails = {topic: entry_tail(name, 0)[:-2] + b"%d}" for topic, name in _TOPIC_NAMES.items()}
    heads: dict[str, bytes | None] = {}  # the last raw link, or None for a suspect
    firsts: dict[str, int] = {}  # where each episode's first row is in the log
    protected = service.mapper.cipher is not None or service.mapper.compressor is not None
    plain = service.mapper.plaintext
    seal_of = None if service.integrity_key is None else service.integrity_key.seal
    opening, link_end, body_start = CHAIN_OPENING, LINK_END, BODY_START
    link_start, seal_start = len(opening), BODY_START + len(SEAL_OPENING)
    entries = disclosures = 0
    for page in log_pages(service.recorder, shard=shard):
        entries += len(page)
        for key, version, topic, state, position in page:
            previous = heads.get(key)
            if previous is None:
                if key in heads:
                    continue
                firsts[key] = position
                disclosures += topic == _DISCLOSED_TOPIC
                previous = bytes.fromhex(chain_seed(UUID(key)))
            try:
                stored = plain(state) if protected else state
                link = unhexlify(stored[link_start:link_end])
                sealed = stored.startswith(SEAL_OPENING, body_start)
                body = body_start + SEAL_MEMBER if sealed else body_start
                sound = (
                    stored.startswith(opening)
                    and stored.startswith(b'",', link_end)
                    and stored.endswith(tails[topic] % version)
                    and sha256(previous + b"{" + stored[body:]).digest() == link
                    and (
                        seal_of is None
                        or (
                            sealed
                            and hmac.compare_digest(
                                seal_of(link), stored[seal_start : body - 2].decode("ascii")
                            )
                        )
                    )
                )
            except Exception:  # noqa: BLE001  (anything unreadable makes a suspect)
                sound = False
            heads[key] = link if sound else None
    if checked is not None:
        checked.episodes += len(heads) - disclosures
        checked.disclosures += disclosures
        checked.entries += entries
    return [(firsts[key], key) for key, link in heads.items() if link is None]


def verify_snapshots(service: EpisodeService, only: Iterable[UUID] | None = None) -> Verification:
    """Every stored snapshot of these episodes: its seal or digest, its link, its state.

    A snapshot must decode from its envelope (sealed with the key, or with
    a digest without one), and record the link the stored entry at its
    version carries. Without a key, which would prove the service wrote it,
    its state must also equal a replay of the entries up to its version.
    """
    result = Verification()
    if service.snapshots is None:
        return result
    named = None if only is None else {str(episode_id) for episode_id in only}
    candidates = named
    if candidates is None:  # only the in-memory store is asked episode by episode
        memory = service.store.backend == "memory"
        candidates = {str(e) for e in episode_ids(service)} if memory else set()
    rows = every_row(service.snapshots.recorder, sorted(candidates))
    for episode_id, group in groupby(rows, key=lambda row: UUID(str(row.originator_id))):
        if named is not None and str(episode_id) not in named:
            continue
        records = list(group)
        result.checked.snapshots += len(records)
        result.findings.extend(
            Finding(episode_id, version, "snapshot-mismatch", problem)
            for version, problem in _snapshot_problems(service, episode_id, records)
        )
    return result


def _snapshot_problems(
    service: EpisodeService, episode_id: UUID, records: list[StoredEvent]
) -> list[tuple[int, str]]:
    """What is wrong with each of an episode's snapshots; its entries are read once."""
    entries = service.recorder.select_events(episode_id)
    at_version = {entry.originator_version: entry for entry in entries}
    problems: list[tuple[int, str]] = []
    to_replay: dict[int, Episode.Snapshot] = {}
    for record in records:
        version = record.originator_version
        try:
            snapshot = _bound_snapshot(service, record, at_version.get(version))
        except SnapshotRejected as rejected:
            problems.append((version, str(rejected)))
            continue
        if service.integrity_key is None:  # with a key, the seal proves the service took it
            to_replay[version] = snapshot
    problems.extend(_replay_problems(service, episode_id, entries, to_replay))
    return sorted(problems)


def _bound_snapshot(
    service: EpisodeService, record: StoredEvent, entry: StoredEvent | None
) -> Episode.Snapshot:
    """The snapshot, once its envelope holds and its link is the stored entry's."""
    keyless_sealed = service.integrity_key is None and _is_sealed_snapshot(service, record)
    # without the key a seal cannot be checked: the replay decides
    snapshot = service.mapper.snapshot_from(record, checked=not keyless_sealed)
    if entry is None:
        raise SnapshotRejected("the store holds no entry at the snapshot's version")
    try:
        entry_link = split_sealed(plaintext(service, entry))[0]
    except ValueError:
        entry_link = stored_link(service, entry)
    if snapshot.state.get("chain") != entry_link:
        raise SnapshotRejected("the snapshot's link differs from the stored entry's at its version")
    return snapshot


def _as_stored(service: EpisodeService, value: object) -> object:
    """A state value as a snapshot stores it: tuples are lists, key order does not count."""
    return json.loads(service.mapper.transcoder.encode(value))


def _is_sealed_snapshot(service: EpisodeService, record: StoredEvent) -> bool:
    try:
        return plaintext(service, record).startswith(SNAPSHOT_SEALED)
    except Exception:  # noqa: BLE001  (an unreadable row is reported by the checked decode)
        return False


def _replay_problems(
    service: EpisodeService,
    episode_id: UUID,
    entries: Sequence[StoredEvent],
    snapshots: dict[int, Episode.Snapshot],
) -> list[tuple[int, str]]:
    """Each snapshot whose state is not the replay of the entries up to its version.

    The entries are replayed once, links checked, the state compared at
    each snapshot's version on the way.
    """
    problems: list[tuple[int, str]] = []
    pending = dict(snapshots)
    episode: Episode | None = None
    links = LinkChecker(episode_id)
    try:
        for entry in entries:
            if not pending:
                break
            event = service.mapper.to_domain_event(entry)
            links.check(event)
            episode = event.mutate(episode)
            snapshot = pending.pop(entry.originator_version, None)
            if snapshot is not None and episode is not None:
                replayed = Episode.Snapshot.take(episode).state
                differing = sorted(
                    name
                    for name in replayed
                    if _as_stored(service, replayed[name])
                    != _as_stored(service, snapshot.state.get(name))
                )
                if differing:
                    problems.append(
                        (
                            snapshot.originator_version,
                            "the snapshot's state differs from a replay of its entries in "
                            + ", ".join(differing),
                        )
                    )
    except Exception as error:  # noqa: BLE001  (entries that do not replay are a finding here)
        reason = f"the entries up to its version do not replay: {type(error).__name__}: {error}"
        problems.extend((version, reason) for version in pending)
    return problems


_TOPIC_NAMES = {get_topic(cls): name for name, cls in EVENT_TYPES.items()}
_DISCLOSED_TOPIC = get_topic(EVENT_TYPES["Disclosed"])


def store_digest(service: EpisodeService) -> str:
    """SHA-256 over every stored event's position, identity, type and plaintext."""
    digest = hashlib.sha256()
    for record in notifications(service):
        digest.update(
            f"{record.originator_id}|{record.originator_version}|{record.topic}|".encode()
        )
        digest.update(hashlib.sha256(plaintext(service, record)).digest())
    return digest.hexdigest()
