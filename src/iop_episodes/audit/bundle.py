"""Proof bundles: one episode's entries, their inclusion proofs and a signed checkpoint.

An auditor checks a bundle offline (``scripts/verify_bundle.py``,
docs/proofs.md): each entry's link from the stored bytes, each leaf and its
inclusion proof up to the checkpoint's root, the checkpoint's signature,
and versions 1..n without a gap. The bundle covers the episode's entries
up to the store's latest checkpoint; later ones are not yet attested and
left out.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from iop_episodes.audit.checkpoints import Checkpoint, stored_checkpoints
from iop_episodes.audit.consistency import leaf_link
from iop_episodes.audit.merkle import Tree, leaf_data, leaf_hash
from iop_episodes.infrastructure.rawlog import log_pages

if TYPE_CHECKING:
    from iop_episodes.application.service import EpisodeService

BUNDLE_FORMAT = "iop-proof-bundle-v1"


class ProofUnavailable(ValueError):
    """No bundle can be made: no checkpoint, no covered entry, or a store that moved."""


@dataclass(frozen=True)
class ProvenEpisode:
    bundle: dict[str, Any]
    entries: int
    not_yet_attested: int


def prove_episode(service: EpisodeService, episode_id: UUID) -> ProvenEpisode:
    """The bundle for ``episode_id`` against the store's latest checkpoint."""
    lines = stored_checkpoints(service)
    if not lines:
        msg = "the store holds no checkpoint yet: run iop audit checkpoint first"
        raise ProofUnavailable(msg)
    checkpoint = Checkpoint.model_validate_json(lines[-1])
    leaves: list[bytes] = []
    mine: list[tuple[int, int, bytes]] = []  # leaf index, version, stored plaintext
    plain = service.mapper.plaintext
    for page in log_pages(service.recorder):
        for episode, version, _, state, _ in page:
            key = UUID(episode)
            link = leaf_link(plain, state)
            if key == episode_id:
                mine.append((len(leaves), version, plain(state)))
            leaves.append(leaf_hash(leaf_data(len(leaves), key, version, link)))
    if not mine:
        msg = f"episode {episode_id} is not in the store"
        raise ProofUnavailable(msg)
    tree = Tree(leaves)
    if checkpoint.size > tree.size or tree.root(checkpoint.size).hex() != checkpoint.root:
        msg = (
            f"the store no longer matches its latest checkpoint ({checkpoint.summary()}): "
            "run iop audit verify"
        )
        raise ProofUnavailable(msg)
    covered = [entry for entry in mine if entry[0] < checkpoint.size]
    if not covered:
        msg = f"episode {episode_id} has no entry under the latest checkpoint yet"
        raise ProofUnavailable(msg)
    bundle = {
        "format": BUNDLE_FORMAT,
        "episode_id": str(episode_id),
        "checkpoint": checkpoint.model_dump(),
        "entries": [
            {
                "version": version,
                "leaf_index": index,
                "stored": base64.b64encode(stored).decode("ascii"),
                "inclusion_proof": [
                    node.hex() for node in tree.inclusion_proof(index, checkpoint.size)
                ],
            }
            for index, version, stored in covered
        ],
    }
    return ProvenEpisode(bundle, len(covered), len(mine) - len(covered))
