"""The history indexer: copies durable blocks into `account_entries`, behind the commits.

A commit writes a batch's transfers and nothing per account; this task then copies the
transfers of every block committed since its last round into the history index, in one
statement (`LedgerStore.index_history`). Under load the rounds run back to back and each
takes all that committed during the one before; under light load a round waits
`interval` seconds, so a trickle of small commits costs one index round per interval
rather than one per commit.

Until a block is indexed its transfers and their notes stay in `recent`
(`RecentHistory`), from which the writer answers history and note queries for the blocks
the index lacks. When the index falls `max_lag` transfers behind, the writer waits for a
round before it decides more (so memory stays bounded while the database cannot keep
up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from settlement.core.recent_history import Note, RecentHistory
from settlement.store import LedgerStore

log = logging.getLogger(__name__)

BUSY_ROUND_TRANSFERS = 1024  # a round at least this big starts the next one at once
STOP_WAIT_S = 30.0  # how long `stop` lets a round under way finish


class HistoryIndexer:
    def __init__(self, store: LedgerStore, recent: RecentHistory, *,
                 interval: float = 0.05, max_lag: int = 500_000) -> None:
        self.store = store
        self.recent = recent
        self.interval = interval
        self.max_lag = max_lag
        self.rounds = 0
        self.round_seconds = 0.0
        self._work = asyncio.Event()
        self._round_done = asyncio.Event()
        self._indexing = asyncio.Lock()  # one round at a time, whoever asks
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ledger-{self.store.ledger}-history")

    async def stop(self, *, finish: bool = False) -> None:
        """Stop the task, once the round under way (if any) has ended; with `finish`,
        index what is still unindexed first.

        A round cancelled while its COMMIT was on its way would leave the indexer not
        knowing what it indexed (the next round starts from the height the database
        records, so nothing is left out, but the blocks would stay in memory for a round
        more) and the connection mid-statement: so the round may end first, for up to
        `STOP_WAIT_S` (a database that does not answer is not waited for longer).
        """
        if self._task is not None:
            try:
                async with asyncio.timeout(STOP_WAIT_S):
                    await self._indexing.acquire()
                held = True
            except TimeoutError:
                held = False
            try:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            finally:
                if held:
                    self._indexing.release()
            self._task = None
        if finish:
            with contextlib.suppress(Exception):
                await self.index_once()

    def block_committed(self, height: int, rows: list[tuple[int, ...]],
                        notes: Sequence[Note] = ()) -> None:
        """A block is durable: keep its transfers and their notes until indexed, and
        wake the task."""
        self.recent.add(height, rows, notes)
        if self.recent.transfers:
            self._work.set()

    @property
    def behind(self) -> bool:
        return self.recent.transfers >= self.max_lag

    async def wait_until_within_lag(self) -> None:
        """Return once the unindexed transfers are fewer than `max_lag`."""
        while self.behind and self._task is not None and not self._task.done():
            self._round_done.clear()
            await self._round_done.wait()

    async def index_once(self) -> int:
        """Index every block held now; return the transfers indexed."""
        async with self._indexing:
            recent = self.recent
            through = recent.newest_height
            if through <= recent.indexed_height:
                return 0
            started = time.perf_counter()
            await self.store.index_history(through)
            indexed = recent.indexed_through(through)
            self.rounds += 1
            self.round_seconds += time.perf_counter() - started
            return indexed

    async def _run(self) -> None:
        delay = 0.05
        while True:
            await self._work.wait()
            self._work.clear()
            try:
                indexed = await self.index_once()
            except Exception as exc:
                # Nothing is lost: the blocks stay in memory and are indexed next round.
                log.warning("ledger %d: history indexing failed (%s); retrying in %.2fs",
                            self.store.ledger, exc, delay)
                self._work.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            self._round_done.set()
            if self.recent.transfers:
                self._work.set()
            if indexed < BUSY_ROUND_TRANSFERS:
                await asyncio.sleep(self.interval)
