"""Signed checkpoints of the log's Merkle tree (docs/proofs.md).

A checkpoint is (size, root, time, key id, Ed25519 signature over
``signed_message``). ``make_checkpoint`` extends the tree kept in the store
(``infrastructure.checkpointtables``) with the entries written since the
last checkpoint, and signs in only those that hold up: each carries its
seal under the integrity key and links from the entry before it in its
episode. At the first that does not, the checkpoint stops short and says
which entry; everything from it on stays "not yet attested".
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from eventsourcing.utils import get_topic

from iop_episodes.audit.merkle import Frontier, leaf_data, leaf_hash
from iop_episodes.audit.witness import Witness
from iop_episodes.domain.canonical import (
    canonical_json,
    canonical_time,
    chain_seed,
    entry_tail,
    next_link,
    split_sealed,
)
from iop_episodes.domain.events import EVENT_TYPES
from iop_episodes.domain.values import Model
from iop_episodes.infrastructure.checkpointtables import FrontierRow, tables_for
from iop_episodes.infrastructure.keys import IntegrityKey, verify_signature
from iop_episodes.infrastructure.legacy import format1_link, is_format1
from iop_episodes.infrastructure.rawlog import log_pages

if TYPE_CHECKING:
    from datetime import datetime

    from iop_episodes.application.service import EpisodeService

CHECKPOINT_FORMAT: Literal["iop-checkpoint-v1"] = "iop-checkpoint-v1"
TOPIC_NAMES = {get_topic(cls): name for name, cls in EVENT_TYPES.items()}


class NoIntegrityKey(RuntimeError):
    """A checkpoint was asked for but no integrity key is configured."""

    def __init__(self) -> None:
        super().__init__(
            "no integrity key: set IOP_INTEGRITY_KEY (base64 of 32 random bytes) "
            "to sign checkpoints"
        )


def signed_message(size: int, root: str, time: str, key_id: str) -> bytes:
    """The exact bytes a checkpoint's signature covers: five lines, each ending in LF."""
    return (f"{CHECKPOINT_FORMAT}\nsize {size}\nroot {root}\ntime {time}\nkey {key_id}\n").encode(
        "ascii"
    )


class Checkpoint(Model):
    """One signed checkpoint, as the store and the witness keep it (one JSON line)."""

    format: Literal["iop-checkpoint-v1"] = CHECKPOINT_FORMAT
    size: int
    root: str
    time: str
    key_id: str
    signature: str  # base64 of the 64-byte Ed25519 signature

    def message(self) -> bytes:
        return signed_message(self.size, self.root, self.time, self.key_id)

    def line(self) -> str:
        """Canonical JSON: keys sorted, no white space."""
        return canonical_json(self.model_dump()).decode("ascii")

    def signature_holds(self, public_key: bytes) -> bool:
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except ValueError:
            return False
        return verify_signature(public_key, self.message(), signature)

    def summary(self) -> str:
        return f"size {self.size} root {self.root} at {self.time} key {self.key_id}"


def sign_checkpoint(key: IntegrityKey, size: int, root: bytes, time: datetime) -> Checkpoint:
    moment, root_hex = canonical_time(time), root.hex()
    signature = key.sign(signed_message(size, root_hex, moment, key.key_id))
    return Checkpoint(
        size=size,
        root=root_hex,
        time=moment,
        key_id=key.key_id,
        signature=base64.b64encode(signature).decode("ascii"),
    )


@dataclass(frozen=True)
class Refusal:
    """The first entry a checkpoint would not sign in, and why."""

    episode_id: UUID
    version: int
    reason: str

    def __str__(self) -> str:
        return f"episode {self.episode_id} version {self.version}: {self.reason}"


@dataclass(frozen=True)
class CheckpointMade:
    checkpoint: Checkpoint
    signed_in: int  # leaves added by this checkpoint
    refused: Refusal | None
    rebuilt: bool = False  # the stored frontier was not one this key signed

    def line(self) -> str:
        added = f"{self.signed_in} new entries"
        if self.rebuilt:
            added += "; the stored frontier matched no signed checkpoint, so all were read again"
        return f"checkpoint: {self.checkpoint.summary()} ({added})"


def make_checkpoint(
    service: EpisodeService, key: IntegrityKey, witness: Witness | None = None
) -> CheckpointMade:
    """Sign the tree over every entry that holds up; store it and append it to the witness."""
    tables = tables_for(service.store, service)
    with tables.exclusive():
        kept = tables.frontier()
        frontier = Frontier(kept.size, [bytes.fromhex(node) for node in kept.nodes])
        rebuilt = not _signed_frontier(tables.checkpoints(frontier.size), frontier, key)
        if rebuilt:  # trust no unsigned frontier: start over, every entry checked again
            kept, frontier = FrontierRow(), Frontier()
        admission = _Admission(service, key)
        position = admission.extend(frontier, kept.position)
        checkpoint = sign_checkpoint(key, frontier.size, frontier.root(), service.clock.now())
        tables.commit(
            FrontierRow(frontier.size, position, tuple(node.hex() for node in frontier.nodes)),
            checkpoint.size,
            checkpoint.time,
            checkpoint.line(),
        )
        if witness is not None:
            witness.append(checkpoint)
    return CheckpointMade(checkpoint, frontier.size - kept.size, admission.refused, rebuilt)


def _signed_frontier(lines: Sequence[str], frontier: Frontier, key: IntegrityKey) -> bool:
    """Whether the latest of ``lines`` with the frontier's size and root holds under this key.

    The frontier sits in the store, where anyone with write access could
    replace it with a rewritten history's; a checkpoint only extends one it
    signed itself. After a key rotation this fails once and the next
    checkpoint reads the whole log.
    """
    if frontier.size == 0:
        return True
    root = frontier.root().hex()
    for line in reversed(lines):
        checkpoint = Checkpoint.model_validate_json(line)
        if (checkpoint.size, checkpoint.root) == (frontier.size, root):
            return checkpoint.signature_holds(key.public_key)
    return False


class _Admission:
    """Checks each new entry before its leaf joins the tree (see the module docstring)."""

    def __init__(self, service: EpisodeService, key: IntegrityKey) -> None:
        self.service = service
        self.key = key
        self.heads: dict[UUID, tuple[int, str]] = {}  # episode -> last version and link this pass
        self.refused: Refusal | None = None

    def extend(self, frontier: Frontier, after: int) -> int:
        """Append every admissible leaf past log position ``after``; the new position."""
        position = after
        for page in log_pages(self.service.recorder, after=after):
            for episode, version, topic, state, row_position in page:
                episode_id = UUID(episode)
                try:
                    link, problem = self._check(episode_id, version, topic, state)
                except ValueError as error:
                    link, problem = "", f"unreadable: {error}"
                if problem is not None:
                    self.refused = Refusal(episode_id, version, problem)
                    return position
                frontier.append(
                    leaf_hash(leaf_data(frontier.size, episode_id, version, bytes.fromhex(link)))
                )
                self.heads[episode_id] = (version, link)
                position = row_position
        return position

    def _check(
        self, episode_id: UUID, version: int, topic: str, state: bytes
    ) -> tuple[str, str | None]:
        event_type = TOPIC_NAMES.get(topic)
        if event_type is None:
            return "", f"unknown topic {topic!r}"
        link, canonical, problem = self._unsealed(self.service.mapper.plaintext(state))
        if problem is None:
            problem = self._link_problem(episode_id, version, event_type, link, canonical)
        return link, problem

    def _unsealed(self, stored: bytes) -> tuple[str, bytes, str | None]:
        """The link and canonical bytes, and why the seal does not hold (None when it does)."""
        if is_format1(stored):
            return format1_link(stored), b"", "a format 1 entry carries no seal"
        link, seal, canonical = split_sealed(stored)
        if seal is None:
            return link, canonical, "the entry carries no seal"
        if not self.key.seal_holds(bytes.fromhex(link), seal):
            return link, canonical, "the entry's seal does not hold under the integrity key"
        return link, canonical, None

    def _link_problem(
        self, episode_id: UUID, version: int, event_type: str, link: str, canonical: bytes
    ) -> str | None:
        if not canonical.endswith(entry_tail(event_type, version)):
            return f"the stored entry is not a {event_type} at version {version}"
        previous = self._previous_link(episode_id, version)
        if previous is None:
            return f"no entry at version {version - 1} before it"
        if next_link(previous, canonical) != link:
            return "its link does not follow from the entry and the link before it"
        return None

    def _previous_link(self, episode_id: UUID, version: int) -> str | None:
        if version == 1:
            return chain_seed(episode_id)
        head = self.heads.get(episode_id)
        if head is not None:
            return head[1] if head[0] == version - 1 else None
        records = self.service.recorder.select_events(episode_id, gt=version - 2, lte=version - 1)
        if not records:
            return None
        stored = self.service.mapper.plaintext(records[0].state)
        return format1_link(stored) if is_format1(stored) else split_sealed(stored)[0]


def stored_checkpoints(service: EpisodeService) -> Sequence[str]:
    """The checkpoint lines the store itself holds (signed, so checked like a witness's)."""
    return tables_for(service.store, service).checkpoints()


def covering_checkpoint(
    service: EpisodeService, *episode_ids: UUID, up_to: Mapping[UUID, int] | None = None
) -> Checkpoint | None:
    """The store's latest checkpoint when it covers every entry of the episodes, else None.

    A checkpoint of log size n covers the first n entries in log order; an
    episode is covered when its last entry is among them, or with ``up_to``
    its last entry up to that version (a disclosed range). The line is read
    from the store and not checked here: ``iop audit verify --witness`` does that.
    """
    lines = stored_checkpoints(service)
    if not lines or not episode_ids:
        return None
    latest = Checkpoint.model_validate_json(lines[-1])
    wanted = {str(episode_id): (up_to or {}).get(episode_id) for episode_id in episode_ids}
    index, last = 0, -1
    for page in log_pages(service.recorder):
        for episode, version, *_ in page:
            key = str(UUID(episode))
            limit = wanted.get(key, 0)
            if key in wanted and (limit is None or version <= limit):
                last = index
            index += 1
    return latest if 0 <= last < latest.size else None
