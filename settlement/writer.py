"""The single writer of one ledger.

Callers hand it requests (a list of accounts or transfers) and await their results. The
writer gathers what has queued into a batch (bounded by `max_events` and `max_wait`),
decides every event against its in-memory `LedgerState`, seals the batch into a signed
block, and commits it to PostgreSQL in one transaction. Only when that commit returns
(fsync on) do the batch's callers hear their results.

A batch is what queued while the batch before it committed; `max_wait` (default 0) also
lets one with nothing committing ahead of it wait that long to fill. Waiting 1 ms cost
more than it gathered: the central bank's single-transfer endpoint settled 1,853 to
2,171 transfers/s with it against 2,061 to 2,489 without (p99 34 to 41 ms against 31 to
34), and the engine's peak 96,000 to 107,000 against 107,000 to 112,000 (alternating
runs of `cbdc bench central-bank` and `cbdc bench ledger`).

Under load the stages overlap: while batch N commits, batch N+1 is decided on top of N's
state when the queue holds a big batch (`pipeline_min_events`), and written on a second
connection while N's COMMIT (the fsync) is still under way (`pipeline_depth`, default 2).
N+1 sends its own COMMIT only once N's has returned, so a block is never durable before
the one it chains to, and PostgreSQL works on one batch while the disk takes the other.
Less than that is not sent before N's commit returns (group commit), so all that
arrives while N commits goes out together right after it: sent at once, a small batch
would only have waited for N anyway, and what came after it would have waited for both
(four dependent one-transfer calls at 500 a second: p50 13 to 14 ms before, 7 to 8 ms
after). That batch is decided while it gathers, `GATHER_STEP_EVENTS` events at a time
once that many have arrived (fewer wait for N's commit, as one-transfer requests do), so
it goes out the moment N's commit returns instead of being decided only then: at the
ledger bench's half load (about 14,000 transfers/s in calls of 64, on a slow machine) the
p99 fell from 91 / 81 ms to 59 / 47 ms.

A batch gathering behind N's commit also streams: it opens its transaction on the next
writer connection at once, and each request's accepted transfers go to the server through
an open COPY as they are decided (`store.StreamedTransfers`), its Merkle leaves hashed
meanwhile too (`MerkleFrontier`). When N's commit returns, the batch seals (its tree is
all but done), ends the COPY, writes its block and commits: the server stored its rows
while N committed, so the batch's own commit no longer grows with them, and it gathers for
as long as N takes (a stalled fsync included) rather than up to `pipeline_min_events`. At
the ledger bench's half load (66,000 transfers/s) this halved the p50, 6.0 to 6.3 ms to
3.0 ms, and the mean commit, 2.6 ms to 1.4 ms. Fewer than `GATHER_STEP_EVENTS` left when
N returned (one-transfer requests) go as one statement instead, which costs fewer round
trips than a stream. If a commit fails, the batches after it fail too with
`BatchNotCommitted` (one gathering behind it, and its stream, as well), the writer drops
its state and loads it again from the database, and carries on with later requests.

A caller may attach rows of its own to a request (`create_transfers(..., attachment=)`):
the writer's `attachments` function turns those of a batch into rows the store writes
inside the batch's transaction (`settlement.attachments`), whatever the transfers'
results, so they are durable exactly when the batch is. The central bank attaches a
request's nonce and idempotency key this way, so a signed transfer costs one commit, not
a commit for its claim and another for its effect.

Every `checkpoint_every` entries the writer stores the balances of the accounts changed
since the last checkpoint (so a restart replays only the journal after it). The
checkpoint is copy-on-write (`LedgerState.begin_checkpoint`): it is as of one block, its
accounts are copied a few per entry of each later batch decided
(`CHECKPOINT_STEP_PER_ENTRY`, up to `CHECKPOINT_STEP`; an account about to change first
is copied first), the rest at once when the writer has been idle for
`IDLE_CHECKPOINT_S`, and it is written once complete, after the batch that completed it
is durable. An idle writer also begins one early, after a quarter of `checkpoint_every`
(`IDLE_CHECKPOINT_SHARE`), so fewer fall in the middle of heavy traffic. Copying 100,000
accounts at once stopped the writer for about 65 ms, and each 50,000-row statement's
rows held the event loop for about 40 ms more: a stall that set the p99 of a whole paced
run. The store stages the rows in a temporary table, pausing between chunks, and applies
them in one statement
(`LedgerStore.checkpoint`), so the checkpoint neither crowds out the commits nor holds the
accounts' rows while it is written.

The ledger's state is long-lived: an object per account and per open pending transfer,
millions of them, which Python's cyclic collector would walk in every full collection
(a 1,000,000-account bench run once spent 4.9 s in 16 full collections of up to 856 ms,
stalls that made the half-load p99). They hold no reference cycles, so the writer moves
them out of the collector's sight (`gc.freeze`) once loaded and again whenever they have
grown by a quarter; reference counting still frees them as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cbdc.merkle import MerkleFrontier
from cbdc.receipts import Receipt
from cbdc.signing import SigningKey
from settlement.attachments import AttachedRows, AttachmentRows
from settlement.blocks import SealedBlock, add_leaves, seal_block
from settlement.core.calendar import LimitCalendar
from settlement.core.state import Batch, LedgerState
from settlement.core.types import (
    Account,
    AccountBalance,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferRecord,
    UpdateAccountResult,
)
from settlement.errors import BatchNotCommitted, WriterClosed
from settlement.metrics import WriterMetrics
from settlement.store import ChainTip, LedgerStore, StreamedTransfers

log = logging.getLogger(__name__)

Clock = Callable[[], int]
MAX_EVENTS_PER_REQUEST = 8190
YIELD_EVERY_EVENTS = 128
GATHER_STEP_EVENTS = 64  # arrivals a batch gathering behind a commit decides at a time
FREEZE_MIN_GROWTH = 10_000  # state objects added before the heap is frozen again
CHECKPOINT_STEP = 4096  # most accounts copied into a checkpoint under way per batch
CHECKPOINT_STEP_PER_ENTRY = 4  # and at most this many per entry of the batch
IDLE_CHECKPOINT_S = 0.05  # idle this long, the writer does a checkpoint's work
IDLE_CHECKPOINT_SHARE = 0.25  # of checkpoint_every: entries for an idle writer to take one


@dataclass(slots=True)
class _Request:
    kind: str  # "accounts" | "transfers" | "balances"
    items: Sequence[Any]
    future: asyncio.Future[list[Any]]
    notes: Sequence[bytes | None] | None = None
    attachment: Any = None


@dataclass(slots=True)
class _Decided:
    batch: Batch
    block: SealedBlock | None
    requests: list[tuple[_Request, list[Any]]] = field(default_factory=list)
    # A completed checkpoint to store once this batch is durable: its height and rows.
    checkpoint: tuple[int, list[tuple[int, tuple[int, ...]]]] | None = None
    rows: bytes | None = None  # the transfers as the commit sends them
    stream: StreamedTransfers | None = None  # or the stream they went out on


class LedgerWriter:
    """Owns one ledger: decides, seals and commits its batches, one at a time."""

    def __init__(
        self,
        *,
        ledger: int,
        store: LedgerStore,
        key: SigningKey,
        clock: Clock = time.time_ns,
        timezone: str = "Asia/Shanghai",
        max_events: int = 8190,
        max_wait: float = 0.0,
        checkpoint_every: int = 1_000_000,
        pipeline_depth: int = 2,
        pipeline_min_events: int = 1024,
        attachments: AttachmentRows | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.key = key
        self.clock = clock
        self.timezone = timezone
        self.max_events = max_events
        self.max_wait = max_wait
        self.checkpoint_every = checkpoint_every
        if pipeline_depth < 1:
            raise ValueError("pipeline_depth must be at least 1")
        self.pipeline_depth = pipeline_depth
        self.pipeline_min_events = pipeline_min_events
        self.attachments = attachments
        self._slot = 0  # the writer connection the last commit used
        self.metrics = WriterMetrics()
        self.state = LedgerState(ledger, LimitCalendar(timezone))
        self.tip = ChainTip(0, b"")
        self._queue: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        # While a batch gathers behind a commit: done when enough events have arrived.
        self._arrival: asyncio.Future[None] | None = None
        self._arrived = 0
        self._task: asyncio.Task[None] | None = None
        # The newest timestamp of the durable blocks: every transfer up to it is in
        # the history (`history_horizon`).
        self.durable_timestamp = 0
        self._closed = False
        self._next_commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Entries committed since the last checkpoint.
        self._since_checkpoint = 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._checkpoint_height = 0  # the block the checkpoint under way is as of
        self._failed_since_reload = False
        self._frozen_objects = 0  # accounts + pendings when the heap was last frozen
        # At least accounts + pendings: their count when last taken, plus the entries
        # committed since (each new account or pending transfer is one).
        self._held_at_most = 0

    # --------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self._reload()
        self._task = asyncio.create_task(self._run(), name=f"ledger-{self.ledger}-writer")

    async def close(self) -> None:
        """Stop taking requests, finish what is committing, write a last checkpoint."""
        self._closed = True
        self._wakeup.set()
        if self._arrival is not None and not self._arrival.done():
            self._arrival.set_result(None)
        if self._task is not None:
            # A writer that stopped on a bug has logged it; closing still frees the rest.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 30)
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
        if (self._since_checkpoint or self.state.checkpoint_under_way) and (
            not self._failed_since_reload
        ):
            with contextlib.suppress(Exception):
                await self.store.checkpoint(self.tip.height, self.state.take_checkpoint(),
                                            pause=0)
        while self._queue:
            request = self._queue.popleft()
            if not request.future.done():
                request.future.set_exception(WriterClosed(self.ledger))
        self._news()  # a history query waiting for a commit that will not come ends
        await self.store.close()

    async def _reload(self) -> None:
        state = LedgerState(self.ledger, LimitCalendar(self.timezone))
        started = time.perf_counter()
        self.tip = await self.store.load(state)
        self.durable_timestamp = state.last_timestamp  # all loaded is durable
        self.state = state
        self._news()
        # Accounts the replay moved are ahead of their checkpoint (and marked dirty).
        self._since_checkpoint = self.store.replayed
        self._failed_since_reload = False
        self.metrics.reloads += 1
        self._freeze_long_lived(force=True)
        log.info("ledger %d loaded: %d accounts, height %d, in %.2fs", self.ledger,
                 len(state.accounts), self.tip.height, time.perf_counter() - started)

    # ------------------------------------------------------------------ intake
    async def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]:
        return await self._submit("accounts", accounts)

    async def update_accounts(self, accounts: Sequence[Account]
                              ) -> list[UpdateAccountResult]:
        """New flags, cap or limits for existing accounts, in turn with transfers: every
        transfer decided after this sees the new definition."""
        return await self._submit("updates", accounts)

    async def create_transfers(self, transfers: Sequence[Transfer],
                               notes: Sequence[bytes | None] | None = None,
                               attachment: Any = None,
                               ) -> list[CreateTransferResult]:
        """One result per transfer, once the batch holding them is durable.

        `notes`, aligned with `transfers`, are stored with the transfers that are
        accepted (OK), in the same transaction. `attachment` is handed to the writer's
        `attachments` function, which writes it in that transaction too, whatever the
        results (and on its own when the batch has nothing else to write).
        """
        if notes is not None and len(notes) != len(transfers):
            raise ValueError("notes must be aligned with transfers")
        if attachment is not None and self.attachments is None:
            raise ValueError("this writer has no attachments function")
        return await self._submit("transfers", transfers, notes, attachment)

    def _news(self) -> None:
        """Wake whoever waits for the next commit (event feeds, history queries)."""
        news = self._next_commit
        self._next_commit = asyncio.get_running_loop().create_future()
        news.set_result(None)

    def next_commit(self) -> asyncio.Future[None]:
        """Done when the next batch commits. Take it before reading what is committed:
        a batch that commits during the read then wakes the waiter instead of slipping
        between the read and the wait. (Cancelling it leaves the writer untouched.)"""
        return asyncio.shield(self._next_commit)

    async def _submit(self, kind: str, items: Sequence[Any],
                      notes: Sequence[bytes | None] | None = None,
                      attachment: Any = None) -> list[Any]:
        if self._closed:
            raise WriterClosed(self.ledger)
        if not items:
            return []
        if len(items) > MAX_EVENTS_PER_REQUEST:
            raise ValueError(
                f"a request holds at most {MAX_EVENTS_PER_REQUEST} events, got {len(items)}"
            )
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(kind, items, future, notes, attachment))
        self._wakeup.set()
        arrival = self._arrival
        if arrival is not None and not arrival.done():
            self._arrived += len(items)
            if self._arrived >= GATHER_STEP_EVENTS:
                arrival.set_result(None)
        return await future

    # ----------------------------------------------------------------- lookups
    async def lookup_transfers(self, ids: Sequence[int]) -> list[TransferRecord | None]:
        return await self.store.lookup_transfers(ids)

    def may_have_transfer(self, transfer_id: int) -> bool:
        """False when this ledger never accepted a transfer with this id (no I/O), so a
        caller can skip `lookup_transfers` for an id that is surely new."""
        return transfer_id in self.state.fingerprints

    async def lookup_accounts(self, ids: Sequence[int]) -> list[AccountBalance | None]:
        """Current balances, answered in turn with writes: they include every request
        submitted before, and are released only once those are durable."""
        return await self._submit("balances", ids)

    def decided_balances(self, ids: Sequence[int]) -> list[AccountBalance | None]:
        """Balances as the writer has decided them so far, at once: they may include
        transfers whose batch is not durable yet (and would be undone if its commit
        failed). For a check that only advises, such as whether a wallet could take a
        credit (its booking is decided again, in turn, when it comes), where
        `lookup_accounts` would wait for the writer's turn and a commit; never for an
        answer someone may rely on as durable."""
        return self.state.balances(ids, self.clock())

    async def account_history(self, account_id: int, *, after_timestamp: int = 0,
                              limit: int = 100, direction: str = "both"
                              ) -> list[TransferRecord]:
        """Committed transfers touching the account, oldest first, strictly after the
        cursor (`limit` at most 10,000), walked back along the account's history chains
        from their heads. A head decided in a batch still committing is waited for (a
        commit or two), so the walk starts at a row that is there; a follower whose
        cursor is at the heads (nothing new) costs no query."""
        limit = max(1, min(limit, 10_000))
        while True:
            account = self.state.accounts.get(account_id)
            if account is None:
                return []
            debit_head, credit_head = account.debit_head, account.credit_head
            if max(debit_head, credit_head) <= self.durable_timestamp:
                break
            if self._closed and self._task is not None and self._task.done():
                raise WriterClosed(self.ledger)
            await self.next_commit()  # or a reload, whose heads are all durable
        return await self.store.account_history(
            account_id, debit_head=debit_head, credit_head=credit_head,
            after_timestamp=after_timestamp, limit=limit, direction=direction)

    def history_horizon(self) -> int:
        """A timestamp up to which every committed transfer is in the history now, so an
        `account_history` call made next sees all of them. A follower that found
        nothing after its cursor may move the cursor here."""
        return self.durable_timestamp

    async def lookup_notes(self, ids: Sequence[int]) -> dict[int, bytes]:
        """The notes of committed transfers `ids` (those that have one)."""
        return await self.store.lookup_notes(ids)

    async def receipt(self, transfer_id: int) -> Receipt | None:
        return await self.store.receipt(transfer_id)

    # -------------------------------------------------------------------- loop
    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception as exc:
            # A bug, not a database failure (those are retried): stop taking requests
            # and tell every waiting caller, rather than leave them waiting forever.
            log.critical("ledger %d: the writer stopped: %r", self.ledger, exc, exc_info=True)
            self._closed = True
            while self._queue:
                request = self._queue.popleft()
                if not request.future.done():
                    request.future.set_exception(WriterClosed(self.ledger))
            raise

    async def _loop(self) -> None:
        in_flight: deque[asyncio.Task[None]] = deque()  # commits, oldest first
        while not self._closed:
            await self._wait_for_work(in_flight)
            if self._closed:
                break
            # A small batch sent beside the commit in flight would only wait for it, and
            # what arrives meanwhile would wait for its commit too: so it gathers all
            # that arrives until that commit returns, deciding arrivals as they come (a
            # step at a time), and goes out then with most of its deciding done.
            gather_until = (in_flight[-1] if in_flight and not in_flight[-1].done()
                            and self._queued_events() < self.pipeline_min_events else None)
            if gather_until is not None and self._queued_events() < GATHER_STEP_EVENTS:
                # Too little to decide yet: wait for the commit, or for enough arrivals.
                await self._arrival_or(gather_until)
            failed = False
            while in_flight and in_flight[0].done():
                failed = in_flight.popleft().exception() is not None or failed
            if failed:
                await _settle(in_flight)  # the later ones fail with it (they build on it)
                await self._recover()
                continue
            if self.max_wait and not in_flight and gather_until is None and (
                self._queued_events() < self.max_events
            ):
                # Nothing in flight to batch behind: linger (max_wait) to gather more.
                await asyncio.sleep(self.max_wait)
            stream = None
            if gather_until is not None and (
                not gather_until.done() or self._queued_events() >= GATHER_STEP_EVENTS
            ) and sum(not commit.done() for commit in in_flight) < self.pipeline_depth:
                # Its transfers go to the server as they are decided, on the next slot
                # (a few left when the commit returned go as one statement instead).
                stream = self.store.open_stream((self._slot + 1) % self.pipeline_depth,
                                                self.tip.height + 1)
            decided = await self._decide(in_flight[-1] if in_flight else None,
                                         gather_until=gather_until, stream=stream)
            # A big batch goes in beside the commit in flight; a small one waits for it,
            # as what arrives meanwhile then makes the next batch bigger (a commit has a
            # fixed cost, and under light load two small ones in flight save nothing).
            beside = len(decided.batch.entries) >= self.pipeline_min_events
            limit = self.pipeline_depth if beside else 1
            try:
                while len(in_flight) >= limit:
                    await in_flight.popleft()
            except BatchNotCommitted:
                self._fail(decided, "an earlier batch it builds on did not commit")
                if decided.stream is not None:
                    await decided.stream.rollback()
                await _settle(in_flight)
                await self._recover()
                continue
            previous = in_flight[-1] if in_flight else None
            self._slot = (decided.stream.slot if decided.stream is not None
                          else (self._slot + 1) % self.pipeline_depth)
            commit = asyncio.create_task(self._commit(decided, previous, self._slot))
            commit.add_done_callback(_retrieve)
            in_flight.append(commit)
        await _settle(in_flight)

    async def _wait_for_work(self, in_flight: deque[asyncio.Task[None]]) -> None:
        """Wait for a request, the next expiry or a failed commit; meanwhile, once idle
        for `IDLE_CHECKPOINT_S`, do the checkpoint's work (`_checkpoint_while_idle`),
        and look again each time a checkpoint has been written: the entries committed
        while it was written may call for the next one."""
        while not self._queue and not self._closed and not _any_failed(in_flight):
            self._wakeup.clear()
            timeout = None
            next_expiry = self.state.next_expiry()
            if next_expiry is not None:
                timeout = max(0.0, (next_expiry - self.clock()) / 1e9)
            if self._checkpoint_due_when_idle() and (timeout is None
                                                     or timeout > IDLE_CHECKPOINT_S):
                if await self._woken(IDLE_CHECKPOINT_S):
                    return
                await self._checkpoint_while_idle(in_flight)
                continue
            writing = self._checkpointing if self._writing_checkpoint() else None
            if await self._woken(timeout, writing) or writing is None or (
                    not writing.done()):
                return  # a request, or the expiry is due
            # The checkpoint is written: another may be due already.

    async def _woken(self, within: float | None,
                     written: asyncio.Task[None] | None = None) -> bool:
        """Whether a request woke the writer within `within` seconds (None: no limit); with
        `written`, the wait also ends when that checkpoint has been written."""
        woken = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait({woken} if written is None else {woken, written},
                               timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        return self._wakeup.is_set()

    def _checkpoint_due_when_idle(self) -> bool:
        """A checkpoint is being copied, or none is under way and enough entries were
        committed since the last (`IDLE_CHECKPOINT_SHARE` of `checkpoint_every`)."""
        if self.state.checkpoint_under_way:
            return True
        return not self._writing_checkpoint() and self._since_checkpoint > 0 and (
            self._since_checkpoint >= self.checkpoint_every * IDLE_CHECKPOINT_SHARE)

    def _writing_checkpoint(self) -> bool:
        """A checkpoint copied out is still being written to the store."""
        return self._checkpointing is not None and not self._checkpointing.done()

    def _begin_checkpoint(self, height: int) -> None:
        """Begin a copy-on-write checkpoint as of block `height` (the tip)."""
        self.state.begin_checkpoint()
        self._checkpoint_height = height
        self._since_checkpoint = 0

    async def _checkpoint_while_idle(self, in_flight: deque[asyncio.Task[None]]) -> None:
        """With no request waiting: once every batch decided is durable, begin a
        checkpoint if one is due, copy the rest of the one under way (a step at a time,
        stopping if a request comes: the batches then copy the rest), and write it.

        A checkpoint taken under load slows the commits beside it (the ledger bench's
        half-load p99 was 25 ms in a phase holding one, 8.5 without), so the writer
        takes one early when the traffic pauses; and one begun just before the traffic
        stopped is finished then, instead of in the middle of the next traffic."""
        if in_flight:
            await asyncio.wait(in_flight)
            if _any_failed(in_flight):
                return  # the loop reloads the state, which drops the checkpoint
            if self._queue or self._closed:
                return  # requests came meanwhile: the batches copy it, or it waits
        state = self.state
        if not state.checkpoint_under_way:
            if not self._checkpoint_due_when_idle():
                return
            self._begin_checkpoint(self.tip.height)  # durable now
        while state.checkpoint_under_way and not self._queue and not self._closed:
            saved = state.save_some(CHECKPOINT_STEP)
            if saved is not None:
                self._checkpointing = asyncio.create_task(
                    self._write_checkpoint(self._checkpoint_height, saved))
                return
            await asyncio.sleep(0)

    async def checkpoint_settled(self) -> None:
        """Return once no balance checkpoint is under way or due while idle: the idle
        writer takes it, copies it out and writes it. For benchmarks, between phases: it
        looks every `IDLE_CHECKPOINT_S` (a reload may drop the checkpoint, with no
        news)."""
        while self._checkpoint_due_when_idle() or self._writing_checkpoint():  # noqa: ASYNC110
            await asyncio.sleep(IDLE_CHECKPOINT_S)

    def _queued_events(self) -> int:
        return sum(len(r.items) for r in self._queue)

    async def _decide(self, committing: asyncio.Task[None] | None, *,
                      gather_until: asyncio.Task[None] | None = None,
                      stream: StreamedTransfers | None = None) -> _Decided:
        """Take queued requests up to the batch bound and decide them in order; with
        `gather_until` (the commit in flight), also those that arrive until it is done,
        `GATHER_STEP_EVENTS` at a time, while the batch stays under `pipeline_min_events`
        (what is still queued when the commit returns is decided then).

        While the previous batch commits, this yields to the event loop every few
        hundred events so the commit's round trips proceed as it works (the two stages
        overlap instead of taking turns).
        """
        state = self.state
        batch = state.begin(self.clock())
        # Gathering behind a commit, the block's tree is hashed as its entries come.
        frontier = MerkleFrontier() if gather_until is not None else None
        taken: list[tuple[_Request, list[Any]]] = []
        events = yielded_at = 0
        queue = self._queue
        request: _Request | None = None
        try:
            while True:
                if not queue or (taken and events + len(queue[0].items) > self.max_events):
                    if queue or gather_until is None or not self._gathering(
                            gather_until, events, streaming=stream is not None):
                        break
                    await self._arrival_or(gather_until)
                    continue
                request = queue.popleft()
                if request.future.cancelled():
                    continue
                if request.kind == "transfers":
                    results: list[Any] = state.create_transfers(batch, request.items)
                    if stream is not None:
                        stream.send(batch.transfers)
                    if request.notes is not None:
                        batch.notes.extend(
                            (t.id, note)
                            for t, note, result in zip(request.items, request.notes, results,
                                                       strict=True)
                            if note is not None and result is CreateTransferResult.OK
                        )
                elif request.kind == "accounts":
                    results = state.create_accounts(batch, request.items)
                elif request.kind == "updates":
                    results = state.update_accounts(batch, request.items)
                else:
                    results = state.balances(request.items, batch.now)
                taken.append((request, results))
                events += len(request.items)
                if frontier is not None:
                    add_leaves(frontier, batch.entries)
                if committing is not None and not committing.done() and (
                    events - yielded_at >= YIELD_EVERY_EVENTS
                ):
                    yielded_at = events
                    await asyncio.sleep(0)
        except Exception:
            # Those taken, and the one being decided, are out of the queue: tell them.
            for waiting in [r for r, _ in taken] + ([request] if request else []):
                if not waiting.future.done():
                    waiting.future.set_exception(WriterClosed(self.ledger))
            if stream is not None:
                await stream.rollback()
            raise
        state.finish(batch)
        self.metrics.queue_depth = len(queue)
        if batch.empty:
            # Nothing to write, but answers may rest on the batch still committing
            # (an EXISTS for a transfer in it), so they wait their turn all the same.
            return _Decided(batch=batch, block=None, requests=taken, stream=stream)
        height = self.tip.height + 1
        assert stream is None or stream.height == height, "a stream opened for another block"
        block = seal_block(ledger=self.ledger, height=height, previous_hash=self.tip.hash,
                           time_ns=batch.now, entries=batch.entries, key=self.key,
                           frontier=frontier)
        self.tip = ChainTip(height, block.hash)
        rows = self.store.transfer_rows(batch, height) if stream is None else None
        self._since_checkpoint += len(batch.entries)
        if self._since_checkpoint >= self.checkpoint_every and not state.checkpoint_under_way \
                and not self._writing_checkpoint():
            self._begin_checkpoint(height)  # copied out over the next batches
        checkpoint = None
        if state.checkpoint_under_way:
            # In step with the batch: a small batch copying thousands of accounts
            # would take several times as long to decide.
            step = min(CHECKPOINT_STEP, CHECKPOINT_STEP_PER_ENTRY * max(1, len(batch.entries)))
            saved = state.save_some(step)
            if saved is not None:
                checkpoint = (self._checkpoint_height, saved)
        return _Decided(batch=batch, block=block, requests=taken, checkpoint=checkpoint,
                        rows=rows, stream=stream)

    def _gathering(self, until: asyncio.Task[None], events: int, *, streaming: bool) -> bool:
        """Whether a batch of `events` still takes arrivals while `until` commits: up to
        `pipeline_min_events` (then it goes in beside `until`), or, with its transfers
        streaming to the server as they are decided, as long as `until` takes."""
        return not until.done() and not self._closed and (
            streaming or events < self.pipeline_min_events)

    async def _arrival_or(self, until: asyncio.Task[None]) -> None:
        """Wait until `GATHER_STEP_EVENTS` more events are queued or `until` is done."""
        arrival: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._arrival = arrival
        self._arrived = 0
        try:
            await asyncio.wait([arrival, until], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._arrival = None

    async def _commit(self, decided: _Decided, previous: asyncio.Task[None] | None,
                      slot: int) -> None:
        """Make `decided` durable, after `previous` (the block before, if still in
        flight), then answer its callers; a failure of either fails them."""
        if decided.block is None:
            # Nothing to write, but answers may rest on batches still committing (an
            # EXISTS for a transfer in one), so they wait their turn all the same.
            if decided.stream is not None:
                await decided.stream.rollback()
            if previous is not None:
                try:
                    await previous
                except BatchNotCommitted:
                    self._fail(decided, "an earlier batch it builds on did not commit")
                    raise
            attached = self._attach(decided)
            if attached is not None:
                try:
                    await self.store.write_attachments(attached)
                except Exception as exc:  # the ledger is untouched: no reload
                    log.error("ledger %d: attachments failed: %s", self.ledger, exc)
                    self._fail(decided, f"the commit failed: {exc}")
                    return
            self._answer(decided)
            return
        started = time.perf_counter()
        try:
            if decided.stream is not None:
                await self.store.commit_streamed(decided.stream, decided.batch, decided.block,
                                                 after=previous, attached=self._attach(decided))
            else:
                await self.store.commit(decided.batch, decided.block, decided.rows,
                                        after=previous, slot=slot,
                                        attached=self._attach(decided))
        except BatchNotCommitted:
            self._fail(decided, "an earlier batch it builds on did not commit")
            raise
        except Exception as exc:
            log.error("ledger %d: commit of block %d failed: %s", self.ledger,
                      decided.block.header.height, exc)
            self.metrics.failed_commits += 1
            self._failed_since_reload = True
            self._fail(decided, f"the commit failed: {exc}")
            await self.store.drop_writer_connection(slot)
            raise BatchNotCommitted(self.ledger, str(exc)) from exc
        self.metrics.observe_commit(time.perf_counter() - started, len(decided.batch.entries))
        self.durable_timestamp = decided.batch.last_timestamp
        self._answer(decided)
        self._freeze_long_lived(len(decided.batch.entries))
        self._news()
        if decided.checkpoint is not None:
            self._checkpointing = asyncio.create_task(
                self._write_checkpoint(*decided.checkpoint))

    async def _write_checkpoint(self, height: int,
                                rows: list[tuple[int, tuple[int, ...]]]) -> None:
        started = time.perf_counter()
        try:
            await self.store.checkpoint(height, rows)
        except Exception as exc:
            # Nothing is lost: the journal still holds every transfer. Mark all accounts
            # so the next checkpoint rewrites them.
            log.warning("ledger %d: checkpoint at block %d failed: %s", self.ledger, height,
                        exc)
            self.state.mark_all_dirty()
            return
        self.metrics.checkpoints += 1
        log.info("ledger %d: checkpoint of %d accounts at block %d in %.2fs", self.ledger,
                 len(rows), height, time.perf_counter() - started)

    def _freeze_long_lived(self, new_entries: int = 0, *, force: bool = False) -> None:
        """Take the state's objects out of the cyclic collector's walks once they have
        grown by a quarter since the last time (amortised: each object is frozen once).

        Young garbage is collected first, so only what survived two collections (the
        state, the service's long-lived objects) is frozen. The objects are counted only
        when enough entries were committed for them to have grown that much: counting
        walks each id map's thousand shards.
        """
        self._held_at_most += new_entries
        threshold = self._frozen_objects * 1.25 + FREEZE_MIN_GROWTH
        if not force and self._held_at_most < threshold:
            return
        held = self._held_at_most = len(self.state.accounts) + len(self.state.pendings)
        if not force and held < threshold:
            return
        gc.collect(1)
        gc.freeze()
        self._frozen_objects = held

    def _attach(self, decided: _Decided) -> AttachedRows | None:
        """The rows the batch's requests' attachments stand for (None: none to write)."""
        if self.attachments is None:
            return None
        attachments = [r.attachment for r, _ in decided.requests if r.attachment is not None]
        return self.attachments(attachments) if attachments else None

    @staticmethod
    def _answer(decided: _Decided) -> None:
        for request, results in decided.requests:
            if not request.future.done():
                request.future.set_result(results)

    def _fail(self, decided: _Decided, reason: str) -> None:
        for request, _ in decided.requests:
            if not request.future.done():
                request.future.set_exception(BatchNotCommitted(self.ledger, reason))

    async def _recover(self) -> None:
        """Drop in-memory state and load the committed truth, retrying until it works."""
        delay = 0.05
        while not self._closed:
            try:
                await self._reload()
                return
            except Exception as exc:
                log.warning("ledger %d: reload failed (%s); retrying in %.2fs",
                            self.ledger, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


async def _settle(commits: deque[asyncio.Task[None]]) -> None:
    """Wait for every commit still in flight; their callers hear the outcome from them."""
    while commits:
        with contextlib.suppress(BatchNotCommitted):
            await commits.popleft()


def _any_failed(commits: deque[asyncio.Task[None]]) -> bool:
    """Whether a commit in flight has failed (the loop then reloads the state)."""
    return any(t.done() and (t.cancelled() or t.exception() is not None) for t in commits)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a commit's failure as seen; the loop acts on it (and its callers were told)."""
    if not task.cancelled():
        task.exception()
