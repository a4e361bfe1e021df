"""The log's Merkle tree, hashed as RFC 9162 section 2 (Certificate Transparency v2) says.

Leaves are the entries in log order. A leaf's hash is ``SHA-256(0x00 ||
leaf data)`` and a node's ``SHA-256(0x01 || left || right)``; a tree of
``n > 1`` leaves splits at ``k``, the largest power of two below ``n``. The
empty tree's root is ``SHA-256("")``. docs/proofs.md is the prose form.

A ``Frontier`` is what appending needs: the roots of the perfect subtrees
along the right edge, one per bit set in the size (at most 64). Appending
costs O(log n) amortised and the root is folded from it in O(log n), so a
checkpoint never rereads the leaves it already covers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_data(index: int, episode_id: UUID, version: int, link: bytes) -> bytes:
    """72 bytes: leaf index (8, big-endian), episode id (16), version (8, big-endian), link (32)."""
    return index.to_bytes(8, "big") + episode_id.bytes + version.to_bytes(8, "big") + link


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass
class Frontier:
    """An append-only tree known by its size and its right-edge subtree roots."""

    size: int = 0
    nodes: list[bytes] = field(default_factory=list)  # largest subtree first

    def __post_init__(self) -> None:
        if len(self.nodes) != self.size.bit_count():
            msg = f"a tree of {self.size} leaves has {self.size.bit_count()} frontier nodes"
            raise ValueError(msg)

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash; equal-sized subtrees on the right edge merge."""
        nodes = self.nodes
        nodes.append(leaf)
        carried = self.size
        while carried & 1:
            right = nodes.pop()
            nodes[-1] = node_hash(nodes[-1], right)
            carried >>= 1
        self.size += 1

    def root(self) -> bytes:
        """MTH of the leaves so far: the frontier folded from the right."""
        if not self.nodes:
            return EMPTY_ROOT
        root = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            root = node_hash(node, root)
        return root

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.nodes))


class Tree:
    """Every level of a tree held in memory, for inclusion proofs (``iop audit prove``)."""

    def __init__(self, leaves: Iterable[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]); ``start`` is a multiple of the largest power of two <= the width."""
        width = end - start
        if width == 0:
            return EMPTY_ROOT
        if width & (width - 1) == 0:  # a perfect subtree: stored on its level
            height = width.bit_length() - 1
            return self.levels[height][start >> height]
        split = 1 << ((width - 1).bit_length() - 1)
        return node_hash(self.subtree(start, start + split), self.subtree(start + split, end))

    def root(self, size: int | None = None) -> bytes:
        return self.subtree(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 2.1.3.1: sibling hashes from the leaf up."""
        if not 0 <= index < size <= self.size:
            msg = f"leaf {index} is not in a tree of {size} leaves"
            raise ValueError(msg)
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            split = 1 << ((end - start - 1).bit_length() - 1)
            if index < start + split:
                path.append(self.subtree(start + split, end))
                end = start + split
            else:
                path.append(self.subtree(start, start + split))
                start += split
        path.reverse()
        return path


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162 2.1.3.2), or None when it cannot."""
    if not 0 <= index < size:
        return None
    position, last, root = index, size - 1, leaf
    for sibling in path:
        if last == 0:
            return None
        if position & 1 or position == last:
            root = node_hash(sibling, root)
            if not position & 1:
                while position & 1 == 0 and position != 0:
                    position >>= 1
                    last >>= 1
        else:
            root = node_hash(root, sibling)
        position >>= 1
        last >>= 1
    return root if last == 0 else None
