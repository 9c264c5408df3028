"""Sealing a committed batch into a block: Merkle root of its entries, header, signature.

Pure functions over `cbdc.receipts` encodings; the writer seals, `settlement.audit`
re-derives and checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Final

from cbdc.merkle import MerkleFrontier, merkle_root
from cbdc.receipts import BlockHeader
from cbdc.signing import SigningKey

_sha256: Final = sha256  # compiled: a C static, not a lookup per leaf


@dataclass(frozen=True, slots=True)
class SealedBlock:
    header: BlockHeader
    hash: bytes
    signature: bytes


def leaf_hashes(entries: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 leaf hashes (cbdc.merkle.leaf_hash), inlined for the hot path."""
    return [_sha256(b"\x00" + entry).digest() for entry in entries]


def add_leaves(frontier: MerkleFrontier, entries: Sequence[bytes]) -> None:
    """Add the leaves of `entries` that `frontier` does not hold yet (those past its
    size): a batch's tree grows as its entries are decided."""
    for index in range(frontier.size, len(entries)):
        frontier.add(_sha256(b"\x00" + entries[index]).digest())


def seal_block(
    *,
    ledger: int,
    height: int,
    previous_hash: bytes,
    time_ns: int,
    entries: Sequence[bytes],
    key: SigningKey,
    frontier: MerkleFrontier | None = None,
) -> SealedBlock:
    """Seal `entries` into block `height`. With `frontier` (the leaves of the first
    entries, added while they were decided: `add_leaves`), only the rest are hashed now."""
    if frontier is None:
        root = merkle_root(leaf_hashes(entries))
    else:
        add_leaves(frontier, entries)
        root = frontier.root()
    header = BlockHeader(
        ledger=ledger,
        height=height,
        previous_hash=previous_hash,
        merkle_root=root,
        time_ns=time_ns,
        entry_count=len(entries),
    )
    encoded = header.encode()
    return SealedBlock(header=header, hash=sha256(encoded).digest(), signature=key.sign(encoded))
