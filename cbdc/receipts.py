"""How ledger entries and blocks are encoded, hashed and signed, and how a receipt proves
that one transfer is in a signed block.

This is the single definition every part shares: the settlement engine seals blocks with
it, `cbdc audit` re-derives them, and wallets check their receipts with it offline.

Entry encodings are fixed-size big-endian records (ids as 16 bytes, like TigerBeetle's):

    transfer: kind=2 | id | debit | credit | amount:u64 | pending_id | user_data
              | timeout:u32 | ledger:u32 | code:u16 | flags:u16 | timestamp:u64
    account:  kind=1 | id | user_data | ledger:u32 | code:u16 | flags:u16
              | balance_cap:u64 | limit_single:u64 | limit_daily:u64 | limit_yearly:u64
              | timestamp:u64             (an absent cap or limit is 2**64-1)
    expiry:   kind=3 | pending_id | ledger:u32 | timestamp:u64
    account update: as account, with kind=4 and the new flags, cap and limits

A block header is `version:u8 | ledger:u32 | height:u64 | previous_hash:32 | merkle_root:32
| time_ns:u64 | entry_count:u32`; its hash is SHA-256 of those bytes, and the ledger's
P-256 key signs the same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Final

from cbdc.merkle import MerkleProof, leaf_hash, root_from_proof
from cbdc.signing import VerifyingKey

ENTRY_ACCOUNT: Final = 1
ENTRY_TRANSFER: Final = 2
ENTRY_EXPIRY: Final = 3
ENTRY_ACCOUNT_UPDATE: Final = 4
ABSENT: Final = (1 << 64) - 1
HEADER_VERSION: Final = 1
GENESIS_HASH = bytes(32)

_TRANSFER: Final = struct.Struct(">B16s16s16sQ16s16sIIHHQ")
_ACCOUNT: Final = struct.Struct(">B16s16sIHHQQQQQ")
_EXPIRY: Final = struct.Struct(">B16sIQ")
_HEADER: Final = struct.Struct(">BIQ32s32sQI")


def encode_transfer(
    id_: int,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    pending_id: int,
    user_data: int,
    timeout: int,
    ledger: int,
    code: int,
    flags: int,
    timestamp: int,
) -> bytes:
    return encode_transfer_b16(
        id_.to_bytes(16, "big"),
        debit_account_id.to_bytes(16, "big"),
        credit_account_id.to_bytes(16, "big"),
        amount,
        pending_id.to_bytes(16, "big"),
        user_data.to_bytes(16, "big"),
        timeout,
        ledger,
        code,
        flags,
        timestamp,
    )


def encode_transfer_b16(
    id_: bytes,
    debit_account_id: bytes,
    credit_account_id: bytes,
    amount: int,
    pending_id: bytes,
    user_data: bytes,
    timeout: int,
    ledger: int,
    code: int,
    flags: int,
    timestamp: int,
) -> bytes:
    """`encode_transfer` with the ids already as 16 big-endian bytes (the ledger's core
    makes them once per transfer for the entry, its fingerprint and its row)."""
    return _TRANSFER.pack(ENTRY_TRANSFER, id_, debit_account_id, credit_account_id, amount,
                          pending_id, user_data, timeout, ledger, code, flags, timestamp)


def _optional(value: int | None) -> int:
    return ABSENT if value is None else value


def encode_account(
    id_: int,
    user_data: int,
    ledger: int,
    code: int,
    flags: int,
    balance_cap: int | None,
    limit_single: int | None,
    limit_daily: int | None,
    limit_yearly: int | None,
    timestamp: int,
    kind: int = ENTRY_ACCOUNT,
) -> bytes:
    return _ACCOUNT.pack(
        kind,
        id_.to_bytes(16, "big"),
        user_data.to_bytes(16, "big"),
        ledger,
        code,
        flags,
        _optional(balance_cap),
        _optional(limit_single),
        _optional(limit_daily),
        _optional(limit_yearly),
        timestamp,
    )


def encode_expiry(pending_id: int, ledger: int, timestamp: int) -> bytes:
    return _EXPIRY.pack(ENTRY_EXPIRY, pending_id.to_bytes(16, "big"), ledger, timestamp)


@dataclass(frozen=True, slots=True)
class BlockHeader:
    ledger: int
    height: int
    previous_hash: bytes
    merkle_root: bytes
    time_ns: int
    entry_count: int
    version: int = HEADER_VERSION

    def encode(self) -> bytes:
        return _HEADER.pack(
            self.version,
            self.ledger,
            self.height,
            self.previous_hash,
            self.merkle_root,
            self.time_ns,
            self.entry_count,
        )

    @property
    def hash(self) -> bytes:
        return sha256(self.encode()).digest()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "ledger": self.ledger,
            "height": self.height,
            "previous_hash": self.previous_hash.hex(),
            "merkle_root": self.merkle_root.hex(),
            "time_ns": self.time_ns,
            "entry_count": self.entry_count,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BlockHeader:
        return cls(
            version=int(data["version"]),
            ledger=int(data["ledger"]),
            height=int(data["height"]),
            previous_hash=bytes.fromhex(data["previous_hash"]),
            merkle_root=bytes.fromhex(data["merkle_root"]),
            time_ns=int(data["time_ns"]),
            entry_count=int(data["entry_count"]),
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that one encoded entry is leaf `proof.index` of a signed block."""

    header: BlockHeader
    signature: bytes
    entry: bytes
    proof: MerkleProof

    def verify(self, key: VerifyingKey) -> str | None:
        """None when the receipt holds; otherwise the reason it does not."""
        if self.proof.size != self.header.entry_count:
            return "the proof's tree size differs from the block's entry count"
        try:
            root = root_from_proof(leaf_hash(self.entry), self.proof)
        except ValueError as exc:
            return f"the Merkle proof is malformed: {exc}"
        if root != self.header.merkle_root:
            return "the entry and proof do not lead to the block's Merkle root"
        if not key.verify(self.signature, self.header.encode()):
            return "the block signature does not verify with the ledger's key"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header.to_json(),
            "block_hash": self.header.hash.hex(),
            "signature": self.signature.hex(),
            "entry": self.entry.hex(),
            "proof": {
                "index": self.proof.index,
                "size": self.proof.size,
                "path": [node.hex() for node in self.proof.path],
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Receipt:
        proof = data["proof"]
        return cls(
            header=BlockHeader.from_json(data["header"]),
            signature=bytes.fromhex(data["signature"]),
            entry=bytes.fromhex(data["entry"]),
            proof=MerkleProof(
                index=int(proof["index"]),
                size=int(proof["size"]),
                path=tuple(bytes.fromhex(node) for node in proof["path"]),
            ),
        )


def verify_transfer_receipt(receipt: Receipt, key: VerifyingKey, transfer_id: int,
                            amount: int) -> str | None:
    """None when `receipt` proves that transfer `transfer_id` of `amount` fen is in a block
    signed by `key`; otherwise the reason it does not (a receipt of another transfer, or
    of the same id with another amount, proves nothing about this one)."""
    if len(receipt.entry) != _TRANSFER.size or receipt.entry[0] != ENTRY_TRANSFER:
        return "the receipt's entry is not a transfer"
    fields = _TRANSFER.unpack(receipt.entry)
    if int.from_bytes(fields[1], "big") != transfer_id:
        return "the receipt is for another transfer"
    if fields[4] != amount:
        return "the receipt's amount differs from the payment's"
    return receipt.verify(key)
