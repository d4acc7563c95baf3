"""The ledger's Merkle tree: RFC 9162 hashing, stored nodes, proofs and their verification,
against published reference vectors and an independent implementation (pymerkle)."""

import hashlib
import random

import pytest
from pymerkle import InmemoryTree
from pymerkle import verify_consistency as pymerkle_verify_consistency
from pymerkle import verify_inclusion as pymerkle_verify_inclusion

from audit import merkle

# The RFC 6962 reference leaves, node hashes and roots published with transparency-dev/merkle
# (testonly/constants.go) and in Certificate Transparency's own tests, used as data.
REFERENCE_INPUTS = [
    bytes.fromhex(text)
    for text in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                 "606162636465666768696a6b6c6d6e6f")
]  # fmt: skip
REFERENCE_ROOTS = [
    bytes.fromhex(text)
    for text in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
REFERENCE_NODES = {
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 4): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
}
# Published proofs over the eight reference leaves (index or old size, tree size, path).
REFERENCE_INCLUSION = [
    (0, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (5, 8, ["bc1a0643", "ca854ea1", "d37ee418"]),
]
REFERENCE_CONSISTENCY = [
    (2, 8, ["5f083f0a", "6b47aaf2"]),
    (6, 8, ["0ebc5d34", "ca854ea1", "d37ee418"]),
    (2, 5, ["5f083f0a", "bc1a0643"]),
]

LEAVES = [merkle.leaf_hash(data) for data in REFERENCE_INPUTS]


def stored_tree(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every node ``append_leaves`` stores for ``leaves``, appended in uneven batches."""
    nodes: dict[tuple[int, int], bytes] = {}
    frontier: list[bytes] = []
    size = 0
    rng = random.Random(len(leaves))
    while size < len(leaves):
        batch = leaves[size : size + rng.randint(1, 5)]
        created, frontier = merkle.append_leaves(frontier, size, batch)
        for level, index, digest in created:
            assert (level, index) not in nodes, "a stored node is never written twice"
            nodes[level, index] = digest
        size += len(batch)
    return nodes


def synthetic(count: int) -> list[bytes]:
    return [merkle.leaf_hash(f"entry {n}".encode()) for n in range(count)]


def test_the_hashes_are_rfc_9162s() -> None:
    assert merkle.EMPTY_ROOT == hashlib.sha256(b"").digest() == REFERENCE_ROOTS[0]
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest() == REFERENCE_ROOTS[1]
    assert merkle.node_hash(LEAVES[0], LEAVES[1]) == REFERENCE_ROOTS[2]


@pytest.mark.parametrize("size", range(9))
def test_every_root_matches_the_published_one(size: int) -> None:
    compact = merkle.CompactRange()
    for leaf in LEAVES[:size]:
        compact.append(leaf)
    nodes = stored_tree(LEAVES[:size])

    assert merkle.root_of(LEAVES[:size]) == REFERENCE_ROOTS[size]
    assert compact.root() == REFERENCE_ROOTS[size]
    assert merkle.root_at(size, nodes) == REFERENCE_ROOTS[size]


def test_the_stored_nodes_are_the_published_complete_subtrees() -> None:
    nodes = stored_tree(LEAVES)
    assert len(nodes) == 8 + 4 + 2 + 1
    for key, digest in REFERENCE_NODES.items():
        assert nodes[key].hex() == digest
    assert nodes[3, 0] == REFERENCE_ROOTS[8]


@pytest.mark.parametrize(("index", "size", "path"), REFERENCE_INCLUSION)
def test_inclusion_proofs_match_the_published_ones(index: int, size: int, path: list[str]) -> None:
    nodes = stored_tree(LEAVES)
    proof = merkle.inclusion_proof(index, size, lambda keys: nodes)
    assert [digest.hex()[:8] for digest in proof] == path
    assert merkle.verify_inclusion(LEAVES[index], index, size, proof, REFERENCE_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "path"), REFERENCE_CONSISTENCY)
def test_consistency_proofs_match_the_published_ones(old: int, new: int, path: list[str]) -> None:
    nodes = stored_tree(LEAVES)
    proof = merkle.consistency_proof(old, new, lambda keys: nodes)
    assert [digest.hex()[:8] for digest in proof] == path
    assert merkle.verify_consistency(old, new, proof, REFERENCE_ROOTS[old], REFERENCE_ROOTS[new])


def test_frontier_and_subtrees_name_the_stored_nodes_a_range_needs() -> None:
    assert merkle.frontier_keys(0) == []
    assert merkle.frontier_keys(13) == [(3, 0), (2, 2), (0, 12)]
    assert merkle.subtrees(8, 13) == [(2, 2), (0, 12)]
    assert merkle.subtrees(0, 16) == [(4, 0)]
    assert merkle.subtrees(12, 13) == [(0, 12)]


def test_every_proof_in_every_small_tree_verifies_and_no_altered_one_does() -> None:
    leaves = synthetic(40)
    nodes = stored_tree(leaves)
    roots = [merkle.root_of(leaves[:size]) for size in range(len(leaves) + 1)]
    for size in range(1, len(leaves) + 1):
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, lambda keys: nodes)
            assert len(proof) <= size.bit_length()
            assert merkle.verify_inclusion(leaves[index], index, size, proof, roots[size])
            assert not merkle.verify_inclusion(leaves[index], index, size, proof, roots[size - 1])
            if size > 1:
                other = (index + 1) % size
                assert not merkle.verify_inclusion(leaves[other], index, size, proof, roots[size])
                assert not merkle.verify_inclusion(leaves[index], other, size, proof, roots[size])
                bent = [proof[0][::-1], *proof[1:]]
                assert not merkle.verify_inclusion(leaves[index], index, size, bent, roots[size])
                assert not merkle.verify_inclusion(
                    leaves[index], index, size, proof[:-1], roots[size]
                )
        for old in range(size + 1):
            proof = merkle.consistency_proof(old, size, lambda keys: nodes)
            assert merkle.verify_consistency(old, size, proof, roots[old], roots[size])
            if 0 < old < size:
                assert not merkle.verify_consistency(old, size, proof, roots[old - 1], roots[size])
                assert not merkle.verify_consistency(old, size, proof, roots[old], roots[size - 1])
                assert not merkle.verify_consistency(old, size, proof[:-1], roots[old], roots[size])
                assert not merkle.verify_consistency(old, size, [], roots[old], roots[size])


def test_a_fork_at_the_same_size_or_a_rollback_is_not_consistent() -> None:
    leaves = synthetic(10)
    forked = [*leaves[:6], merkle.leaf_hash(b"forged"), *leaves[7:]]
    assert not merkle.verify_consistency(10, 10, [], merkle.root_of(leaves), merkle.root_of(forked))
    assert not merkle.verify_consistency(
        10, 6, [], merkle.root_of(leaves), merkle.root_of(leaves[:6])
    )
    nodes = stored_tree(forked)
    proof = merkle.consistency_proof(6, 10, lambda keys: nodes)
    assert merkle.verify_consistency(
        6, 10, proof, merkle.root_of(leaves[:6]), merkle.root_of(forked)
    )
    proof = merkle.consistency_proof(8, 10, lambda keys: nodes)
    assert not merkle.verify_consistency(
        8, 10, proof, merkle.root_of(leaves[:8]), merkle.root_of(forked)
    )


def test_a_missing_node_or_a_leaf_outside_the_tree_is_an_error_that_says_which() -> None:
    nodes = stored_tree(synthetic(5))
    del nodes[0, 4]
    with pytest.raises(merkle.ProofError, match="level 0, index 4"):
        merkle.inclusion_proof(1, 5, lambda keys: nodes)
    with pytest.raises(merkle.ProofError, match="leaf 5 is not in a tree of 5"):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(merkle.ProofError, match="frontier"):
        merkle.append_leaves([], 3, [b"x" * 32])


def test_pymerkle_agrees_on_roots_inclusion_paths_and_consistency() -> None:
    """An independent implementation (pymerkle, RFC 9162 hashing) builds the same tree."""
    data = [f"entry {n}".encode() for n in range(70)]
    reference = InmemoryTree(algorithm="sha256")
    for item in data:
        reference.append_entry(item)
    leaves = [merkle.leaf_hash(item) for item in data]
    nodes = stored_tree(leaves)
    for size in (1, 2, 3, 7, 8, 9, 31, 32, 33, 64, 70):
        root = merkle.root_at(size, nodes)
        assert reference.get_root(size) == root
        for index in {0, size // 2, size - 1}:
            theirs = reference.prove_inclusion(index + 1, size)
            ours = merkle.inclusion_proof(index, size, lambda keys: nodes)
            assert theirs.path[1:] == ours  # pymerkle's path starts with the leaf itself
            pymerkle_verify_inclusion(leaves[index], root, theirs)
        for old in (1, size // 3 or 1, size):
            proof = reference.prove_consistency(old, size)
            pymerkle_verify_consistency(merkle.root_at(old, nodes), root, proof)
