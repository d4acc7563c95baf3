"""The ledger's Merkle tree in the RFC 9162 (Certificate Transparency v2) form: hashes, the
stored nodes, inclusion and consistency proofs and their verification (no I/O).

- A leaf is ``SHA-256(0x00 || entry)`` and a node ``SHA-256(0x01 || left || right)``; the tree
  of ``n`` leaves splits at the largest power of two below ``n`` (RFC 9162 §2.1.1), and the
  empty tree's hash is ``SHA-256("")``.
- Storage keeps every *complete* subtree once it is complete: node ``(level, index)`` covers
  leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 are the leaves. Nothing
  stored ever changes, and any range a proof needs is a handful of such nodes
  (``subtrees``), so a proof at ten million leaves is some thirty indexed reads.
- The *frontier* of a tree of size ``n`` is its complete subtrees along the right edge, one
  per bit set in ``n``, largest first: everything an append or a root needs.

Proof generation follows RFC 9162 §2.1.3.1 (PATH) and §2.1.4.1 (PROOF/SUBPROOF), expressed as
the leaf ranges whose hashes make up the proof; verification follows §2.1.3.2 and §2.1.4.2.
"""

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeKey = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)


class ProofError(ValueError):
    """A proof asked for outside the tree, or a stored node missing; the text says which."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size`` > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of the leaf hashes, straight from the RFC's recursive definition (the reference the
    faster code is tested against)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


# Stored nodes


def frontier_keys(size: int) -> list[NodeKey]:
    """The complete subtrees along the right edge of a tree of ``size`` leaves, largest first."""
    return [
        (level, (size >> level) - 1)
        for level in range(size.bit_length() - 1, -1, -1)
        if (size >> level) & 1
    ]


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of adjacent complete subtrees given left to right, each no larger than the one
    before (a frontier, or ``subtrees`` of a range): RFC 9162 splits them right to left."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def subtrees(start: int, end: int) -> list[NodeKey]:
    """The stored complete subtrees that make up leaves ``[start, end)``, left to right, for a
    range some proof needs: ``start`` is a multiple of a power of two at least ``end - start``
    rounded down (RFC 9162's ranges always are), so the sizes only shrink and ``fold`` gives
    the range's hash."""
    keys: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start % (1 << level):
            level -= 1
        keys.append((level, start >> level))
        start += 1 << level
    return keys


def append_leaves(
    frontier: Sequence[bytes], size: int, leaves: Iterable[bytes]
) -> tuple[list[tuple[int, int, bytes]], list[bytes]]:
    """Append ``leaves`` to a tree of ``size`` leaves whose frontier is ``frontier``: the nodes
    that become complete, as ``(level, index, hash)`` (each leaf, then the subtrees it
    closes), and the new frontier."""
    if len(frontier) != size.bit_count():
        raise ProofError(
            f"a tree of {size} leaves has {size.bit_count()} frontier nodes, not {len(frontier)}"
        )
    stack = list(frontier)
    created: list[tuple[int, int, bytes]] = []
    for leaf in leaves:
        created.append((0, size, leaf))
        current = leaf
        level = 0
        # Each trailing one-bit of ``size`` is a subtree the new leaf completes a pair with.
        while (size >> level) & 1:
            current = node_hash(stack.pop(), current)
            level += 1
            created.append((level, (size >> level), current))
        stack.append(current)
        size += 1
    return created, stack


class CompactRange:
    """A growing tree's frontier, fed one leaf at a time: the root at any size, cheaply (what
    a full verification keeps while it reads the ledger)."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        stack, size, current = self._stack, self.size, leaf
        while size & 1:
            current = node_hash(stack.pop(), current)
            size >>= 1
        stack.append(current)
        self.size += 1

    def root(self) -> bytes:
        return fold(self._stack)


# Proofs as ranges of leaves


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose hashes are the audit path of leaf ``index`` in a tree of ``size``
    (RFC 9162 §2.1.3.1), in proof order: the leaf's neighbour first, up to the root."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    path.reverse()
    return path


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The leaf ranges whose hashes prove a tree of ``old_size`` leaves is a prefix of the
    tree of ``new_size`` (RFC 9162 §2.1.4.1), in proof order; empty when either is 0 or the
    two are equal."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[Range] = []
    start, end, complete = 0, new_size, True
    m = old_size
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def nodes_for(ranges: Iterable[Range]) -> list[NodeKey]:
    """Every stored node the ranges need (what to read, in one query)."""
    return [key for start, end in ranges for key in subtrees(start, end)]


def hashes_for(ranges: Sequence[Range], nodes: Mapping[NodeKey, bytes]) -> list[bytes]:
    """The hash of each range, from the stored nodes; ProofError names a missing node."""
    result = []
    for start, end in ranges:
        keys = subtrees(start, end)
        missing = [key for key in keys if key not in nodes]
        if missing:
            level, index = missing[0]
            raise ProofError(f"the tree has no node at level {level}, index {index}")
        result.append(fold([nodes[key] for key in keys]))
    return result


def inclusion_proof(
    index: int, size: int, read: Callable[[Sequence[NodeKey]], Mapping[NodeKey, bytes]]
) -> list[bytes]:
    """Leaf ``index``'s audit path in the tree of ``size``, reading nodes through ``read``."""
    ranges = inclusion_ranges(index, size)
    return hashes_for(ranges, read(nodes_for(ranges)))


def consistency_proof(
    old_size: int, new_size: int, read: Callable[[Sequence[NodeKey]], Mapping[NodeKey, bytes]]
) -> list[bytes]:
    ranges = consistency_ranges(old_size, new_size)
    return hashes_for(ranges, read(nodes_for(ranges)))


def root_at(size: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """The root of the tree's first ``size`` leaves, from its frontier nodes."""
    return hashes_for([(0, size)], nodes)[0] if size else EMPTY_ROOT


# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True if ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` with
    ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """True if ``proof`` shows the tree of ``old_size`` with ``old_root`` is a prefix of the
    tree of ``new_size`` with ``new_root``."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
