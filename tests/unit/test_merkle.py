"""cbdc.merkle against RFC 6962's own recursive definitions of the tree hash and audit path."""

from __future__ import annotations

from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbdc.merkle import (
    EMPTY_ROOT,
    MerkleFrontier,
    MerkleProof,
    leaf_hash,
    merkle_proof,
    merkle_root,
    node_hash,
    root_from_proof,
)

# Leaves of different lengths, the empty one included.
DATA = [b""] + [i.to_bytes(2, "big") * (i % 3 + 1) for i in range(1, 70)]


def split(n: int) -> int:
    """The largest power of two smaller than n (RFC 6962 section 2.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(data: list[bytes]) -> bytes:
    """RFC 6962 2.1: the Merkle Tree Hash, written recursively as the RFC defines it."""
    n = len(data)
    if n == 0:
        return sha256(b"").digest()
    if n == 1:
        return sha256(b"\x00" + data[0]).digest()
    k = split(n)
    return sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def audit_path(m: int, data: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1: PATH(m, D[n]), bottom-up."""
    n = len(data)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*audit_path(m, data[:k]), mth(data[k:])]
    return [*audit_path(m - k, data[k:]), mth(data[:k])]


def leaves(data: list[bytes]) -> list[bytes]:
    return [leaf_hash(d) for d in data]


@pytest.mark.parametrize("size", range(71))
def test_root_is_rfc6962_tree_hash(size: int) -> None:
    """The root of 0..70 leaves equals RFC 6962's recursive Merkle Tree Hash."""
    assert merkle_root(leaves(DATA[:size])) == mth(DATA[:size])


@pytest.mark.parametrize("size", range(71))
def test_a_tree_grown_a_leaf_at_a_time_has_the_rfc6962_tree_hash_at_every_size(
        size: int) -> None:
    frontier = MerkleFrontier()
    for leaf in DATA[:size]:
        frontier.add(leaf_hash(leaf))
    assert frontier.size == size
    assert frontier.root() == mth(DATA[:size])


def test_empty_tree_root_is_hash_of_nothing() -> None:
    """The root of no leaves is SHA-256 of the empty string."""
    assert merkle_root([]) == EMPTY_ROOT == sha256(b"").digest()


def test_leaves_and_nodes_are_domain_separated() -> None:
    """A leaf is hashed with 0x00 and a node with 0x01, so one cannot pass for the other."""
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(b"") == sha256(b"\x00").digest()
    assert node_hash(left, right) == sha256(b"\x01" + left + right).digest()
    assert leaf_hash(left + right) != node_hash(left, right)
    assert merkle_root([leaf_hash(left + right)]) != merkle_root([left, right])


@pytest.mark.parametrize("size", range(1, 71))
def test_every_proof_is_the_rfc_path_and_verifies(size: int) -> None:
    """Each leaf's proof is RFC 6962's PATH and leads back to the root."""
    data = DATA[:size]
    hashed = leaves(data)
    root = mth(data)
    for index in range(size):
        proof = merkle_proof(hashed, index)
        assert (proof.index, proof.size) == (index, size)
        assert list(proof.path) == audit_path(index, data)
        assert root_from_proof(hashed[index], proof) == root


def leads_to(leaf: bytes, proof: MerkleProof, root: bytes) -> bool:
    """Whether a proof checks out against a root (a malformed proof does not)."""
    try:
        return root_from_proof(leaf, proof) == root
    except ValueError:
        return False


@pytest.mark.parametrize("size", range(1, 71))
def test_proof_fails_for_a_wrong_leaf_index_or_size(size: int) -> None:
    """A proof does not verify for another leaf, at another index, or in a tree of
    another size (that tree's root)."""
    data = DATA[:size]
    hashed = leaves(data)
    root = mth(data)
    for index in range(size):
        proof = merkle_proof(hashed, index)
        assert not leads_to(leaf_hash(data[index] + b"!"), proof, root)
        if size > 1:
            other = hashed[(index + 1) % size]
            assert not leads_to(other, proof, root)
        for wrong_index in {index - 1, index + 1, size - 1 - index, 0, size - 1} - {index}:
            if 0 <= wrong_index < size:
                moved = MerkleProof(index=wrong_index, size=size, path=proof.path)
                assert not leads_to(hashed[index], moved, root)
        for wrong_size in {size - 1, size + 1, 2 * size, size // 2}:
            if index < wrong_size <= len(DATA) and wrong_size != size:
                resized = MerkleProof(index=index, size=wrong_size, path=proof.path)
                assert not leads_to(hashed[index], resized, mth(DATA[:wrong_size]))


def test_proof_path_of_wrong_length_is_malformed() -> None:
    """A path with a node missing or one too many is refused, not silently accepted."""
    hashed = leaves(DATA[:11])
    proof = merkle_proof(hashed, 4)
    with pytest.raises(ValueError, match="too short"):
        root_from_proof(hashed[4], MerkleProof(4, 11, proof.path[:-1]))
    with pytest.raises(ValueError, match="too long"):
        root_from_proof(hashed[4], MerkleProof(4, 11, (*proof.path, hashed[0])))


def test_index_outside_the_tree_is_refused() -> None:
    """Proofs for leaves that do not exist can be neither made nor checked."""
    hashed = leaves(DATA[:5])
    with pytest.raises(IndexError):
        merkle_proof(hashed, 5)
    with pytest.raises(IndexError):
        merkle_proof(hashed, -1)
    with pytest.raises(IndexError):
        merkle_proof([], 0)
    with pytest.raises(ValueError, match="outside"):
        root_from_proof(hashed[0], MerkleProof(index=5, size=5, path=()))
    with pytest.raises(ValueError, match="outside"):
        root_from_proof(hashed[0], MerkleProof(index=0, size=0, path=()))


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_random_trees(data: list[bytes], draw: st.DataObject) -> None:
    """Any list of leaves: the root is the RFC hash and a random leaf's proof verifies."""
    hashed = leaves(data)
    assert merkle_root(hashed) == mth(data)
    index = draw.draw(st.integers(0, len(data) - 1))
    assert root_from_proof(hashed[index], merkle_proof(hashed, index)) == mth(data)
