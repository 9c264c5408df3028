"""Receipts: a transfer's entry, its Merkle proof and its signed block header.

A receipt made from a block the ledger sealed (`settlement.blocks.seal_block`) verifies
offline with the ledger's public key; any flipped byte anywhere in it does not, and the
answer says why.
"""

from __future__ import annotations

import json
import struct
from hashlib import sha256

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cbdc.merkle import MerkleFrontier, MerkleProof, leaf_hash, merkle_proof, merkle_root
from cbdc.receipts import (
    ABSENT,
    GENESIS_HASH,
    BlockHeader,
    Receipt,
    encode_account,
    encode_expiry,
    encode_transfer,
)
from cbdc.signing import SigningKey
from settlement.blocks import add_leaves, leaf_hashes, seal_block
from settlement.core.state import LedgerState
from settlement.core.types import Account, CreateTransferResult, Transfer, TransferFlags

NS = 1_000_000_000
T0 = 1_741_572_000 * NS
HEADER = struct.Struct(">BIQ32s32sQI")  # the layout cbdc/receipts.py documents
KEY = SigningKey(ec.derive_private_key(0x5EC12E7, ec.SECP256R1()))


def ledger_block_entries() -> list[bytes]:
    """Entries the ledger really makes: accounts, plain and pending transfers, an expiry
    and a post (nine, so the tree is not a power of two). They come from two batches;
    a block seals any such list the same way."""
    state = LedgerState(ledger=1)
    pending = int(TransferFlags.PENDING)
    batch = state.begin(T0)
    state.create_accounts(batch, [Account(id=i, ledger=1, code=1) for i in (1, 2, 3)])
    assert state.create_transfers(batch, [
        Transfer(id=10, debit_account_id=1, credit_account_id=2, amount=500, ledger=1, code=1),
        Transfer(id=11, debit_account_id=2, credit_account_id=3, amount=200, ledger=1, code=1,
                 flags=pending, timeout=1),
        Transfer(id=12, debit_account_id=2, credit_account_id=3, amount=100, ledger=1, code=1,
                 flags=pending),
    ]) == [CreateTransferResult.OK] * 3
    state.finish(batch)
    entries = list(batch.entries)
    batch = state.begin(T0 + 2 * NS)  # transfer 11 expires
    assert state.create_transfers(batch, [
        Transfer(id=13, debit_account_id=0, credit_account_id=0, amount=60, ledger=0, code=0,
                 flags=int(TransferFlags.POST_PENDING_TRANSFER), pending_id=12),
        Transfer(id=14, debit_account_id=1, credit_account_id=3, amount=5, ledger=1, code=1),
    ]) == [CreateTransferResult.OK] * 2
    state.finish(batch)
    entries += batch.entries
    assert [e[0] for e in entries] == [1, 1, 1, 2, 2, 2, 3, 2, 2]
    return entries


ENTRIES = ledger_block_entries()


def receipts() -> tuple[list[Receipt], bytes]:
    sealed = seal_block(ledger=1, height=7, previous_hash=sha256(b"block 6").digest(),
                        time_ns=T0 + 2 * NS, entries=ENTRIES, key=KEY)
    hashed = [leaf_hash(e) for e in ENTRIES]
    return [Receipt(header=sealed.header, signature=sealed.signature, entry=entry,
                    proof=merkle_proof(hashed, i)) for i, entry in enumerate(ENTRIES)], sealed.hash


@pytest.mark.parametrize("split", range(len(ENTRIES) + 1))
def test_a_block_whose_leaves_were_added_as_its_entries_came_is_the_same_block(
        split: int) -> None:
    """The writer hashes a gathering batch's leaves as they are decided (`add_leaves`),
    then seals with the rest: the header and hash are those of sealing all at once."""
    whole = seal_block(ledger=1, height=7, previous_hash=GENESIS_HASH, time_ns=T0,
                       entries=ENTRIES, key=KEY)
    frontier = MerkleFrontier()
    add_leaves(frontier, ENTRIES[:split])
    add_leaves(frontier, ENTRIES[:split])  # again: only leaves past its size are added
    assert frontier.size == split
    grown = seal_block(ledger=1, height=7, previous_hash=GENESIS_HASH, time_ns=T0,
                       entries=ENTRIES, key=KEY, frontier=frontier)
    assert (grown.header, grown.hash) == (whole.header, whole.hash)
    assert KEY.public.verify(grown.signature, grown.header.encode())


def flip(data: bytes, position: int, bit: int = 0x01) -> bytes:
    return data[:position] + bytes([data[position] ^ bit]) + data[position + 1:]


def test_sealed_block_header() -> None:
    """The header carries the Merkle root of the entries and their count; its hash is
    SHA-256 of its 89 encoded bytes, which the ledger's key signs."""
    sealed = seal_block(ledger=1, height=1, previous_hash=GENESIS_HASH, time_ns=T0,
                        entries=ENTRIES, key=KEY)
    header = sealed.header
    assert header.merkle_root == merkle_root([leaf_hash(e) for e in ENTRIES])
    assert header.entry_count == len(ENTRIES) == 9
    assert (header.ledger, header.height, header.previous_hash, header.time_ns) == (
        1, 1, GENESIS_HASH, T0)
    encoded = header.encode()
    assert len(encoded) == 89
    assert HEADER.unpack(encoded) == (1, 1, 1, GENESIS_HASH, header.merkle_root, T0, 9)
    assert sealed.hash == header.hash == sha256(encoded).digest()
    assert KEY.public.verify(sealed.signature, encoded)


def test_leaf_hashes_of_blocks_are_merkle_leaf_hashes() -> None:
    """The hot-path leaf hashing in blocks.py is cbdc.merkle's leaf hash."""
    assert leaf_hashes(ENTRIES) == [leaf_hash(e) for e in ENTRIES]


def test_every_entry_of_a_sealed_block_has_a_receipt_that_verifies() -> None:
    """A receipt for each entry of a sealed block verifies with the ledger's key."""
    made, _ = receipts()
    for receipt in made:
        assert receipt.verify(KEY.public) is None


def test_receipt_survives_json() -> None:
    """A receipt sent as JSON and read back still verifies and is the same receipt."""
    made, block_hash = receipts()
    for receipt in made:
        data = json.loads(json.dumps(receipt.to_json()))
        assert data["block_hash"] == block_hash.hex()
        again = Receipt.from_json(data)
        assert again == receipt
        assert again.verify(KEY.public) is None


def test_receipt_from_another_key_fails() -> None:
    """A receipt does not verify with another ledger's key."""
    made, _ = receipts()
    reason = made[0].verify(SigningKey.generate().public)
    assert reason is not None
    assert "signature" in reason


@pytest.mark.parametrize("index", [0, 3, 6, 8])
def test_any_flipped_entry_byte_fails(index: int) -> None:
    """Changing any bit of the entry breaks its path to the block's root."""
    receipt = receipts()[0][index]
    for position in range(len(receipt.entry)):
        for bit in (0x01, 0x80):
            forged = Receipt(receipt.header, receipt.signature,
                             flip(receipt.entry, position, bit), receipt.proof)
            reason = forged.verify(KEY.public)
            assert reason is not None
            assert "Merkle root" in reason


@pytest.mark.parametrize("index", [0, 3, 6, 8])
def test_any_flipped_proof_byte_fails(index: int) -> None:
    """Changing any bit of any node of the proof, its index or its size fails."""
    receipt = receipts()[0][index]
    proof = receipt.proof
    for node in range(len(proof.path)):
        for position in range(32):
            path = list(proof.path)
            path[node] = flip(path[node], position)
            forged = Receipt(receipt.header, receipt.signature, receipt.entry,
                             MerkleProof(proof.index, proof.size, tuple(path)))
            assert forged.verify(KEY.public) is not None
    for other_index in set(range(proof.size)) - {proof.index}:
        moved = MerkleProof(other_index, proof.size, proof.path)
        assert Receipt(receipt.header, receipt.signature, receipt.entry,
                       moved).verify(KEY.public) is not None
    for other_size in (proof.size - 1, proof.size + 1):
        resized = MerkleProof(proof.index, other_size, proof.path)
        reason = Receipt(receipt.header, receipt.signature, receipt.entry,
                         resized).verify(KEY.public)
        assert reason is not None
        assert "entry count" in reason
    for path in (proof.path[:-1], (*proof.path, proof.path[0])):
        reason = Receipt(receipt.header, receipt.signature, receipt.entry,
                         MerkleProof(proof.index, proof.size, path)).verify(KEY.public)
        assert reason is not None
        assert "malformed" in reason


def test_any_flipped_header_byte_fails() -> None:
    """Changing any bit of the signed header (version, ledger, height, previous hash,
    root, time, entry count) fails."""
    receipt = receipts()[0][3]
    encoded = receipt.header.encode()
    for position in range(len(encoded)):
        for bit in (0x01, 0x80):
            version, ledger, height, previous, root, time_ns, count = HEADER.unpack(
                flip(encoded, position, bit))
            header = BlockHeader(ledger=ledger, height=height, previous_hash=previous,
                                 merkle_root=root, time_ns=time_ns, entry_count=count,
                                 version=version)
            forged = Receipt(header, receipt.signature, receipt.entry, receipt.proof)
            assert forged.verify(KEY.public) is not None, position


def test_any_flipped_signature_byte_fails() -> None:
    """Changing any bit of the signature, or cutting or extending it, fails."""
    receipt = receipts()[0][3]
    signature = receipt.signature
    forged_signatures = [flip(signature, p, bit) for p in range(len(signature))
                         for bit in (0x01, 0x80)]
    forged_signatures += [signature[:-1], signature + b"\x00", b""]
    for forged_signature in forged_signatures:
        forged = Receipt(receipt.header, forged_signature, receipt.entry, receipt.proof)
        reason = forged.verify(KEY.public)
        assert reason is not None
        assert "signature" in reason


def test_entry_encodings() -> None:
    """Entries are fixed-size big-endian records whose first byte names their kind; an
    absent cap or limit is 2**64-1."""
    transfer = encode_transfer(2**128 - 1, 1, 2, 2**63 - 1, 3, 2**128 - 2, 2**32 - 1,
                               2**32 - 1, 2**16 - 1, 15, 2**64 - 1)
    assert len(transfer) == 109
    assert struct.unpack(">B16s16s16sQ16s16sIIHHQ", transfer) == (
        2, (2**128 - 1).to_bytes(16, "big"), (1).to_bytes(16, "big"),
        (2).to_bytes(16, "big"), 2**63 - 1, (3).to_bytes(16, "big"),
        (2**128 - 2).to_bytes(16, "big"), 2**32 - 1, 2**32 - 1, 2**16 - 1, 15, 2**64 - 1)
    account = encode_account(5, 6, 1, 2, 4, None, 0, 100, None, T0)
    assert len(account) == 81
    assert struct.unpack(">B16s16sIHHQQQQQ", account) == (
        1, (5).to_bytes(16, "big"), (6).to_bytes(16, "big"), 1, 2, 4, ABSENT, 0, 100,
        ABSENT, T0)
    expiry = encode_expiry(11, 1, T0)
    assert len(expiry) == 29
    assert struct.unpack(">B16sIQ", expiry) == (3, (11).to_bytes(16, "big"), 1, T0)
