"""Account history of the durable blocks not yet in the history index.

The writer commits a batch's transfers without touching any per-account index; the
history indexer (`settlement.history`) copies them into `account_entries` afterwards,
in bulk. Until it has, the writer keeps each durable block's transfers here, so a
history query still sees every committed transfer: it takes a `view()` first, reads the
index, and merges the two (`merge_pages`).

A block's transfers are kept as the batch's rows (the tuples `Batch.transfers` holds),
with the notes committed with them; the per-account lookup of a block is built only when
a query first reads that block, so a ledger nobody asks for history costs an append and
a pop per block.

A follower of the newest transfers (the central bank's events feed, a wallet's history
polled back to back) asks for what came after a recent cursor. When the index holds
nothing after that cursor (`RecentView.holds_all_after`: the cursor is at or past the
newest timestamp the index holds), the view alone is the answer and the query costs no
round trip; the notes of those transfers are here too (`RecentView.notes`). Reading
them from PostgreSQL instead cost the central bank two queries a poll, and on tables
younger than autovacuum's first ANALYZE their cached plans scanned every row of the
ledger: 1.1 and 1.5 ms a query, growing as the tables did.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from settlement.core.types import TransferRecord

DIRECTIONS = ("both", "debits", "credits")
_TIMESTAMP = 10  # a batch row's field: (id, debit, credit, ..., flags, timestamp)


Note = tuple[int, bytes]  # (transfer id, note)


class _Block:
    __slots__ = ("_notes", "_sides", "height", "ledger", "rows")

    def __init__(self, height: int, ledger: int, rows: Sequence[tuple[int, ...]],
                 notes: Sequence[Note]) -> None:
        self.height = height
        self.ledger = ledger
        self.rows = rows
        # account -> [(row index, is_credit)], built on first read
        self._sides: dict[int, list[tuple[int, bool]]] | None = None
        self._notes: Sequence[Note] | dict[int, bytes] = notes  # a dict once read

    def sides(self) -> dict[int, list[tuple[int, bool]]]:
        if self._sides is None:
            sides: dict[int, list[tuple[int, bool]]] = {}
            for n, row in enumerate(self.rows):
                sides.setdefault(row[1], []).append((n, False))
                sides.setdefault(row[2], []).append((n, True))
            self._sides = sides
        return self._sides

    def notes(self) -> dict[int, bytes]:
        if not isinstance(self._notes, dict):
            self._notes = dict(self._notes)
        return self._notes

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

    __slots__ = ("_blocks", "_indexed_timestamp")

    def __init__(self, blocks: tuple[_Block, ...], indexed_timestamp: int | None) -> None:
        self._blocks = blocks
        self._indexed_timestamp = indexed_timestamp

    def holds_all_after(self, after_timestamp: int) -> bool:
        """Whether these blocks hold every committed transfer after the cursor (the
        index holds none): `records` is then the whole answer."""
        return self._indexed_timestamp is not None and after_timestamp >= self._indexed_timestamp

    def notes(self, ids: Iterable[int]) -> dict[int, bytes]:
        """The notes these blocks hold of the transfers `ids`."""
        found: dict[int, bytes] = {}
        wanted = set(ids)
        for block in reversed(self._blocks):  # a follower asks for the newest
            if not wanted:
                break
            notes = block.notes()
            here = wanted & notes.keys()
            found.update((i, notes[i]) for i in here)
            wanted -= here
        return found

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
                if block.rows[n][_TIMESTAMP] > after_timestamp:
                    found.append(block.record(n))
                    if len(found) >= limit:
                        return found
        return found


class RecentHistory:
    """Durable blocks whose transfers the history index does not hold yet."""

    def __init__(self, ledger: int, indexed_height: int = 0,
                 indexed_timestamp: int | None = None) -> None:
        """`indexed_timestamp`: no transfer in the index is later (None: unknown, so
        every query reads the index until a block held here has been indexed)."""
        self.ledger = ledger
        self.indexed_height = indexed_height
        self.indexed_timestamp = indexed_timestamp
        self._blocks: deque[_Block] = deque()
        self.transfers = 0  # in the blocks held

    def add(self, height: int, rows: Sequence[tuple[int, ...]],
            notes: Sequence[Note] = ()) -> None:
        """A block that just became durable, with its batch's transfer rows and notes."""
        if not rows or height <= self.indexed_height:
            return
        if self._blocks and height <= self._blocks[-1].height:
            raise ValueError(f"block {height} added after block {self._blocks[-1].height}")
        self._blocks.append(_Block(height, self.ledger, rows, notes))
        self.transfers += len(rows)

    def indexed_through(self, height: int) -> int:
        """The index now holds every transfer up to block `height`: forget those blocks
        and return how many transfers they held."""
        self.indexed_height = max(self.indexed_height, height)
        blocks = self._blocks
        dropped = 0
        while blocks and blocks[0].height <= height:
            block = blocks.popleft()
            dropped += len(block.rows)
            self.indexed_timestamp = max(self.indexed_timestamp or 0,
                                         block.rows[-1][_TIMESTAMP])
        self.transfers -= dropped
        return dropped

    @property
    def newest_timestamp(self) -> int | None:
        """Every committed transfer up to this timestamp is here or in the index (None:
        not known yet): blocks become durable, and are added, in timestamp order."""
        if not self._blocks:
            return self.indexed_timestamp
        return self._blocks[-1].rows[-1][_TIMESTAMP]

    @property
    def newest_height(self) -> int:
        """The newest block held, or the indexed height when none is."""
        return self._blocks[-1].height if self._blocks else self.indexed_height

    def view(self) -> RecentView:
        return RecentView(tuple(self._blocks), self.indexed_timestamp)


def merge_pages(*pages: Iterable[TransferRecord], limit: int) -> list[TransferRecord]:
    """The first `limit` records of several pages, by timestamp, each transfer once
    (a block indexed while a query ran is in both the index and the view it took)."""
    merged: dict[int, TransferRecord] = {}
    for page in pages:
        for record in page:
            merged.setdefault(record.timestamp, record)
    return [merged[ts] for ts in sorted(merged)[:limit]]
