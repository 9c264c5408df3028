"""A map keyed by account or transfer id that never rehashes more than a sliver of itself at once.

The ledger remembers every account, every transfer id it has accepted (for
idempotency), every id it has refused and every pending transfer, for as long as it
runs: tens of millions of entries. A Python dict grows by rebuilding its whole table,
during which no batch is decided: measured here, 140 to 190 ms once a `cbdc bench
ledger` run (about 1.5 million ids), 540 to 800 ms at 3 million, and longer each time
the ledger doubles.

`IdMap` splits the entries over `SHARDS` dicts by bits 10 to 19 of the id, so a rebuild
moves one shard's entries. Which bits matters: shards that fill evenly, one id each in
turn, all reach their limit together and rebuild within the same batch, which is the
stall again. Counters (1, 2, 3, ...) fill shards a run of 1,024 ids at a time, so their
rebuilds fall at different moments; ids made by `cbdc.ids.new_id`, and hashes, are random
in those bits, so the shards' rebuilds spread out by chance. Ids that all share those
bits land in one shard and grow like a single dict, no worse than before.
`tests/unit/test_idmap.py` counts the entries rebuilt per batch for each kind of id.

The state machine's hottest lines pick shards inline, `shards[(id >> SHARD_SHIFT) &
SHARD_MASK]`, and work on the dicts directly; everything else uses the mapping methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Generic, TypeVar

__all__ = ["SHARDS", "SHARD_MASK", "SHARD_SHIFT", "IdMap"]

V = TypeVar("V")

SHARD_BITS: Final = 10
SHARDS: Final = 1 << SHARD_BITS
SHARD_SHIFT: Final = 10  # an id's shard is its bits 10..19; see the module docstring
SHARD_MASK: Final = SHARDS - 1


class IdMap(Generic[V]):
    """A mapping from int ids to values, spread over `SHARDS` dicts."""

    __slots__ = ("shards",)

    def __init__(self) -> None:
        self.shards: list[dict[int, V]] = [{} for _ in range(SHARDS)]

    def shard(self, key: int) -> dict[int, V]:
        """The dict that holds `key` (if anything does)."""
        return self.shards[(key >> SHARD_SHIFT) & SHARD_MASK]

    def get(self, key: int) -> V | None:
        return self.shards[(key >> SHARD_SHIFT) & SHARD_MASK].get(key)

    def pop(self, key: int) -> V | None:
        return self.shards[(key >> SHARD_SHIFT) & SHARD_MASK].pop(key, None)

    def __getitem__(self, key: int) -> V:
        return self.shards[(key >> SHARD_SHIFT) & SHARD_MASK][key]

    def __setitem__(self, key: int, value: V) -> None:
        self.shards[(key >> SHARD_SHIFT) & SHARD_MASK][key] = value

    def __contains__(self, key: int) -> bool:
        return key in self.shards[(key >> SHARD_SHIFT) & SHARD_MASK]

    def __len__(self) -> int:
        return sum(map(len, self.shards))

    def __iter__(self) -> Iterator[int]:
        for shard in self.shards:
            yield from shard

    def values(self) -> Iterator[V]:
        for shard in self.shards:
            yield from shard.values()

    def items(self) -> Iterator[tuple[int, V]]:
        for shard in self.shards:
            yield from shard.items()
