"""Account history split between the index and the writer's memory
(`settlement.core.recent_history`): whatever block the index has reached, and whichever
blocks it reaches while a query runs, the merged answer is the ledger's history."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.core.recent_history import RecentHistory, merge_pages
from settlement.core.types import TransferRecord

LEDGER = 7
ACCOUNTS = 5

Row = tuple[int, ...]


def make_blocks(sizes: list[int], pairs: list[tuple[int, int]]) -> list[list[Row]]:
    """Blocks of batch rows (as `Batch.transfers` holds them), timestamps rising."""
    blocks: list[list[Row]] = []
    ts = 1_000
    n = 0
    for size in sizes:
        rows = []
        for _ in range(size):
            debit, credit = pairs[n % len(pairs)]
            n += 1
            ts += 1
            rows.append((n, debit, credit, n * 10, 0, 0, 0, LEDGER, 1, 0, ts))
        blocks.append(rows)
    return blocks


def as_records(blocks: list[list[Row]]) -> list[TransferRecord]:
    return [
        TransferRecord(id=r[0], debit_account_id=r[1], credit_account_id=r[2], amount=r[3],
                       ledger=LEDGER, code=r[8], flags=r[9], pending_id=r[4], timeout=r[6],
                       user_data=r[5], timestamp=r[10], block_height=height)
        for height, rows in enumerate(blocks, start=1) for r in rows
    ]


def expected(records: list[TransferRecord], account: int, after: int, limit: int,
             direction: str) -> list[TransferRecord]:
    """What the old one-table query answered: filter, sort by timestamp, cut."""
    found = [
        r for r in records
        if r.timestamp > after and (
            (direction != "credits" and r.debit_account_id == account)
            or (direction != "debits" and r.credit_account_id == account))
    ]
    return sorted(found, key=lambda r: r.timestamp)[:limit]


pairs = st.tuples(st.integers(1, ACCOUNTS), st.integers(1, ACCOUNTS)).filter(
    lambda p: p[0] != p[1])


@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=8),
    pair_list=st.lists(pairs, min_size=1, max_size=10),
    indexed_at_view=st.integers(0, 8),
    indexed_by_query=st.integers(0, 8),
    account=st.integers(1, ACCOUNTS),
    after_step=st.integers(0, 40),
    limit=st.integers(1, 12),
    direction=st.sampled_from(["both", "debits", "credits"]),
)
def test_index_plus_memory_is_the_whole_history(
        sizes: list[int], pair_list: list[tuple[int, int]], indexed_at_view: int,
        indexed_by_query: int, account: int, after_step: int, limit: int,
        direction: str) -> None:
    blocks = make_blocks(sizes, pair_list)
    records = as_records(blocks)
    heights = len(blocks)
    at_view = min(indexed_at_view, heights)
    # The index may move on between the view and its own read, never back.
    by_query = max(at_view, min(indexed_by_query, heights))
    recent = RecentHistory(LEDGER)
    for height, rows in enumerate(blocks, start=1):
        recent.add(height, rows)
    recent.indexed_through(at_view)
    view = recent.view()
    recent.indexed_through(by_query)  # the view it took does not change
    after = 1_000 + after_step
    indexed = expected([r for r in records if r.block_height <= by_query], account, after,
                       limit, direction)
    unindexed = view.records(account, after_timestamp=after, limit=limit,
                             direction=direction)
    assert all(r.block_height > at_view for r in unindexed)
    whole = expected(records, account, after, limit, direction)
    assert merge_pages(indexed, unindexed, limit=limit) == whole
    if view.holds_all_after(after):  # the writer then answers from memory alone
        assert unindexed == whole
    # Once a block with transfers has been indexed, a cursor at the newest transfer is
    # answered from memory (a follower of the newest polls with no query).
    if any(blocks[:at_view]):
        assert view.holds_all_after(records[-1].timestamp)


def test_a_view_holds_the_notes_of_its_blocks_until_they_are_indexed() -> None:
    blocks = make_blocks([2, 3], [(1, 2)])
    recent = RecentHistory(LEDGER)
    recent.add(1, blocks[0], [(1, b"first")])
    recent.add(2, blocks[1], [(3, b"third"), (5, b"fifth")])
    view = recent.view()
    assert view.notes([5, 1, 2, 99]) == {1: b"first", 5: b"fifth"}
    recent.indexed_through(1)
    assert recent.view().notes([1, 3]) == {3: b"third"}  # block 1 is the index's now
    assert view.notes([1]) == {1: b"first"}  # a view taken before keeps its blocks


def test_it_knows_the_index_holds_nothing_after_its_newest_indexed_transfer() -> None:
    blocks = make_blocks([2, 2], [(1, 2)])  # timestamps 1001..1004
    unknown = RecentHistory(LEDGER)
    for height, rows in enumerate(blocks, start=1):
        unknown.add(height, rows)
    assert not unknown.view().holds_all_after(5_000)  # what the index holds is unknown
    unknown.indexed_through(1)
    assert unknown.view().holds_all_after(1002)
    assert not unknown.view().holds_all_after(1001)
    loaded = RecentHistory(LEDGER, indexed_height=4, indexed_timestamp=1004)
    assert loaded.view().holds_all_after(1004)
    assert not loaded.view().holds_all_after(1003)


def test_it_counts_what_it_holds_and_forgets_indexed_blocks() -> None:
    blocks = make_blocks([3, 0, 2, 4], [(1, 2)])
    recent = RecentHistory(LEDGER, indexed_height=0)
    for height, rows in enumerate(blocks, start=1):
        recent.add(height, rows)
    assert (recent.transfers, recent.newest_height) == (9, 4)
    assert recent.indexed_through(3) == 5
    assert (recent.transfers, recent.newest_height, recent.indexed_height) == (4, 4, 3)
    assert recent.indexed_through(4) == 4
    assert (recent.transfers, recent.newest_height) == (0, 4)
    recent.add(4, blocks[3])  # already indexed: ignored
    assert recent.transfers == 0


def test_blocks_must_come_in_height_order() -> None:
    recent = RecentHistory(LEDGER)
    recent.add(5, make_blocks([1], [(1, 2)])[0])
    with pytest.raises(ValueError, match="block 4 added after block 5"):
        recent.add(4, make_blocks([1], [(1, 2)])[0])


def test_an_unknown_direction_is_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        RecentHistory(LEDGER).view().records(1, direction="sideways")
