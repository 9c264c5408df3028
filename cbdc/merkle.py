"""SHA-256 Merkle trees as RFC 6962 defines them (Certificate Transparency).

Leaves are hashed with a 0x00 prefix and inner nodes with 0x01, so a leaf can never
pass for a node. An odd node at the end of a level is carried up unchanged (never
duplicated), which gives exactly RFC 6962's tree hash and its audit paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Final

EMPTY_ROOT: Final = sha256(b"").digest()
_sha256: Final = sha256  # compiled: a C static, not a lookup per node


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves, in order."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [
            _sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class MerkleFrontier:
    """`merkle_root` of leaves added one at a time, so a tree's hashing can be done as
    its leaves come rather than all at the end: it holds the roots of the perfect
    subtrees the leaves so far make (one per bit set in their count, biggest first).
    Adding a leaf merges the equal-sized ones it completes, one hash on average; the
    root folds the rest from the right, as RFC 6962 splits a tree at its largest power
    of two."""

    def __init__(self) -> None:
        self.size = 0
        self._subtrees: list[bytes] = []

    def add(self, leaf_hash: bytes) -> None:
        subtrees = self._subtrees
        node = leaf_hash
        count = self.size
        while count & 1:
            node = _sha256(b"\x01" + subtrees.pop() + node).digest()
            count >>= 1
        subtrees.append(node)
        self.size += 1

    def root(self) -> bytes:
        subtrees = self._subtrees
        if not subtrees:
            return EMPTY_ROOT
        node = subtrees[-1]
        for index in range(len(subtrees) - 2, -1, -1):
            node = _sha256(b"\x01" + subtrees[index] + node).digest()
        return node


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """The audit path of leaf `index` in a tree of `size` leaves, bottom-up."""

    index: int
    size: int
    path: tuple[bytes, ...]


def merkle_proof(leaf_hashes: Sequence[bytes], index: int) -> MerkleProof:
    if not 0 <= index < len(leaf_hashes):
        raise IndexError(f"leaf {index} is outside a tree of {len(leaf_hashes)} leaves")
    path: list[bytes] = []
    level = list(leaf_hashes)
    position = index
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        position //= 2
    return MerkleProof(index=index, size=len(leaf_hashes), path=tuple(path))


def root_from_proof(leaf: bytes, proof: MerkleProof) -> bytes:
    """Recompute the root a proof leads to from a hashed leaf."""
    if not 0 <= proof.index < proof.size:
        raise ValueError("proof index is outside the tree")
    node = leaf
    position, width = proof.index, proof.size
    steps = iter(proof.path)
    while width > 1:
        sibling = position ^ 1
        if sibling < width:
            try:
                other = next(steps)
            except StopIteration:
                raise ValueError("proof is too short for its tree") from None
            node = node_hash(other, node) if position & 1 else node_hash(node, other)
        position //= 2
        width = (width + 1) // 2
    if next(steps, None) is not None:
        raise ValueError("proof is too long for its tree")
    return node
