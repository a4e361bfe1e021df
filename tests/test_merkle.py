"""The Merkle tree hashes as RFC 9162 section 2 defines, for every size."""

from __future__ import annotations

import hashlib
from uuid import UUID

import pytest

from iop_episodes.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    Tree,
    leaf_data,
    leaf_hash,
    node_hash,
    root_from_inclusion,
)

SIZES = range(34)


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 2.1.1: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    left, right = reference_root(leaves[:split]), reference_root(leaves[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


@pytest.mark.parametrize("size", SIZES)
def test_the_frontier_root_is_the_rfc_tree_hash(size: int) -> None:
    """Appending leaf by leaf to a frontier gives MTH(D[n]) for every n."""
    frontier = Frontier()
    for item in data(size):
        frontier.append(leaf_hash(item))
    assert frontier.size == size
    assert len(frontier.nodes) == size.bit_count()
    assert frontier.root() == reference_root(data(size))


def test_a_frontier_saved_and_restored_goes_on_as_one_never_interrupted() -> None:
    """A frontier rebuilt from its size and nodes (as stored) appends to the same roots."""
    whole, saved = Frontier(), Frontier()
    for item in data(21):
        whole.append(leaf_hash(item))
    for item in data(13):
        saved.append(leaf_hash(item))
    restored = Frontier(saved.size, [bytes.fromhex(node.hex()) for node in saved.nodes])
    for item in data(21)[13:]:
        restored.append(leaf_hash(item))
    assert restored.root() == whole.root()


def test_a_frontier_with_the_wrong_number_of_nodes_is_refused() -> None:
    """A stored frontier must hold one node per bit set in its size."""
    with pytest.raises(ValueError, match="a tree of 5 leaves has 2 frontier nodes"):
        Frontier(5, [EMPTY_ROOT])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 21, 33])
def test_every_inclusion_proof_leads_to_the_root_and_only_for_its_leaf(size: int) -> None:
    """PATH(m, D[n]) verifies for leaf m by RFC 9162 2.1.3.2, and not for a neighbour's leaf."""
    leaves = [leaf_hash(item) for item in data(size)]
    tree = Tree(leaves)
    root = reference_root(data(size))
    assert tree.root() == root
    for index in range(size):
        proof = tree.inclusion_proof(index, size)
        assert root_from_inclusion(index, size, leaves[index], proof) == root
        other = leaves[(index + 1) % size]
        if size > 1:
            assert root_from_inclusion(index, size, other, proof) != root


def test_proofs_against_an_earlier_size_lead_to_that_size_root() -> None:
    """A tree of 20 leaves proves inclusion in its first 11, against MTH(D[11])."""
    leaves = [leaf_hash(item) for item in data(20)]
    tree = Tree(leaves)
    proof = tree.inclusion_proof(7, 11)
    assert root_from_inclusion(7, 11, leaves[7], proof) == reference_root(data(11))


def test_a_proof_of_the_wrong_length_or_index_does_not_verify() -> None:
    """Extra or missing path hashes and out-of-range indices fail."""
    leaves = [leaf_hash(item) for item in data(6)]
    tree = Tree(leaves)
    proof = tree.inclusion_proof(4, 6)
    assert root_from_inclusion(4, 6, leaves[4], [*proof, EMPTY_ROOT]) is None
    assert root_from_inclusion(4, 6, leaves[4], proof[:-1]) != tree.root()
    assert root_from_inclusion(6, 6, leaves[4], proof) is None


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    """0x00 before leaf data and 0x01 before a pair: a node never passes for a leaf."""
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert leaf_hash(left + right) != node_hash(left, right)


def test_the_documented_test_vector_holds() -> None:
    """docs/proofs.md's three-leaf vector: leaf data, leaf hashes, root and PATH(2, D[3])."""
    episode = UUID("00000000-0000-4000-8000-000000000001")
    links = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    data_0 = leaf_data(0, episode, 1, links[0])
    leaves = [leaf_hash(leaf_data(i, episode, i + 1, links[i])) for i in range(3)]
    tree = Tree(leaves)
    assert data_0.hex() == (
        "0000000000000000000000000000400080000000000000010000000000000001"
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert leaves[0].hex() == "5a63c6769a78e0dc6053e032250928eda0f6c527b0788ddab0592ed380d04976"
    assert leaves[2].hex() == "371fafdde775d1a6180170fd40f6dc5f8310197be12ecc2f2c6c45f83bfee29c"
    assert tree.root().hex() == "2a7919bab8aef13698ab3c5b8dfcb361eb01f70e5cb052ee6ed34a2279f79818"
    assert [node.hex() for node in tree.inclusion_proof(2, 3)] == [
        "745bbc80024aeed99ca60eef80c7bcd56b3bd589f27a1f901a2b550ae4ddef7e"
    ]
