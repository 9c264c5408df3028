"""Account history of the durable blocks not yet in the history index.

The writer commits a batch's transfers without touching any per-account index; the
history indexer (`settlement.history`) copies them into `account_entries` afterwards,
in bulk. Until it has, the writer keeps each durable block's transfers here, so a
history query still sees every committed transfer: it takes a `view()` first, reads the
index, and merges the two (`merge_pages`).

A block's transfers are kept as the batch's rows (the tuples `Batch.transfers` holds);
the per-account lookup of a block is built only when a query first reads that block, so
a ledger nobody asks for history costs an append and a pop per block.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from settlement.core.types import TransferRecord

DIRECTIONS = ("both", "debits", "credits")


class _Block:
    __slots__ = ("_sides", "height", "ledger", "rows")

    def __init__(self, height: int, ledger: int, rows: Sequence[tuple[int, ...]]) -> None:
        self.height = height
        self.ledger = ledger
        self.rows = rows
        # account -> [(row index, is_credit)], built on first read
        self._sides: dict[int, list[tuple[int, bool]]] | None = None

    def sides(self) -> dict[int, list[tuple[int, bool]]]:
        if self._sides is None:
            sides: dict[int, list[tuple[int, bool]]] = {}
            for n, row in enumerate(self.rows):
                sides.setdefault(row[1], []).append((n, False))
                sides.setdefault(row[2], []).append((n, True))
            self._sides = sides
        return self._sides

    def record(self, n: int) -> TransferRecord:
        (id_, debit, credit, amount, pending_id, user_data, timeout, _ledger, code, flags,
         timestamp) = self.rows[n]
        return TransferRecord(
            id=id_, debit_account_id=debit, credit_account_id=credit, amount=amount,
            ledger=self.ledger, code=code, flags=flags, pending_id=pending_id,
            timeout=timeout, user_data=user_data, timestamp=timestamp,
            block_height=self.height,
        )


class RecentView:
    """The unindexed blocks as of one moment; later changes to the history don't
    affect it."""

    __slots__ = ("_blocks",)

    def __init__(self, blocks: tuple[_Block, ...]) -> None:
        self._blocks = blocks

    def records(self, account_id: int, *, after_timestamp: int = 0, limit: int = 100,
                direction: str = "both") -> list[TransferRecord]:
        """The account's transfers in these blocks, oldest first, strictly after the
        cursor, at most `limit`; `direction` as for `account_history`."""
        if direction not in DIRECTIONS:
            raise ValueError("direction must be 'both', 'debits' or 'credits'")
        found: list[TransferRecord] = []
        for block in self._blocks:  # in height order, so in timestamp order
            for n, is_credit in block.sides().get(account_id, ()):
                if (direction == "debits" and is_credit) or (
                        direction == "credits" and not is_credit):
                    continue
                if block.rows[n][10] > after_timestamp:
                    found.append(block.record(n))
                    if len(found) >= limit:
                        return found
        return found


class RecentHistory:
    """Durable blocks whose transfers the history index does not hold yet."""

    def __init__(self, ledger: int, indexed_height: int = 0) -> None:
        self.ledger = ledger
        self.indexed_height = indexed_height
        self._blocks: deque[_Block] = deque()
        self.transfers = 0  # in the blocks held

    def add(self, height: int, rows: Sequence[tuple[int, ...]]) -> None:
        """A block that just became durable, with its batch's transfer rows."""
        if not rows or height <= self.indexed_height:
            return
        if self._blocks and height <= self._blocks[-1].height:
            raise ValueError(f"block {height} added after block {self._blocks[-1].height}")
        self._blocks.append(_Block(height, self.ledger, rows))
        self.transfers += len(rows)

    def indexed_through(self, height: int) -> int:
        """The index now holds every transfer up to block `height`: forget those blocks
        and return how many transfers they held."""
        self.indexed_height = max(self.indexed_height, height)
        blocks = self._blocks
        dropped = 0
        while blocks and blocks[0].height <= height:
            dropped += len(blocks.popleft().rows)
        self.transfers -= dropped
        return dropped

    @property
    def newest_height(self) -> int:
        """The newest block held, or the indexed height when none is."""
        return self._blocks[-1].height if self._blocks else self.indexed_height

    def view(self) -> RecentView:
        return RecentView(tuple(self._blocks))


def merge_pages(*pages: Iterable[TransferRecord], limit: int) -> list[TransferRecord]:
    """The first `limit` records of several pages, by timestamp, each transfer once
    (a block indexed while a query ran is in both the index and the view it took)."""
    merged: dict[int, TransferRecord] = {}
    for page in pages:
        for record in page:
            merged.setdefault(record.timestamp, record)
    return [merged[ts] for ts in sorted(merged)[:limit]]
