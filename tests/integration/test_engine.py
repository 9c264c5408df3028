"""The settlement engine on a real PostgreSQL: durability, idempotency, recovery, limits,
expiry, chain verification and tamper detection."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from cbdc.signing import SigningKey
from settlement import (
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Engine,
    LedgerWriter,
    Transfer,
    TransferFlags,
    UpdateAccountResult,
)
from settlement import store as settlement_store
from settlement import writer as settlement_writer
from settlement.attachments import AttachedRows
from settlement.audit import export_lines, verify_file, verify_store
from settlement.errors import BatchNotCommitted, KeyMismatch, WriterClosed

R = CreateTransferResult
LEDGER = 1
SECOND = 1_000_000_000
# 2026-11-23 12:00:00 Asia/Shanghai, in ns.
NOON = 1_795_406_400 * SECOND
_ids = itertools.count(1_000)


def next_id() -> int:
    return next(_ids)


class FakeClock:
    """A clock the test moves by hand (ns since the epoch)."""

    def __init__(self, now: int = NOON) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


@dataclass
class Ledger:
    engine: Engine
    writer: LedgerWriter
    key: SigningKey
    dsn: str
    clock: FakeClock


async def open_ledger(dsn: str, key: SigningKey, clock: FakeClock, **options: int) -> Ledger:
    engine = await Engine.open(dsn, key=key, clock=clock, **options)
    return Ledger(engine, await engine.ledger(LEDGER), key, dsn, clock)


def kill(opened: Ledger) -> None:
    """Stop as a kill would: no final checkpoint, connections cut (the writer's task is
    cancelled so it does not outlive the test, retrying on a closed pool)."""
    w = opened.writer
    assert w._task is not None
    w._task.cancel()
    opened.engine.pool.terminate()


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    opened = await open_ledger(database_url, SigningKey.generate(), FakeClock())
    yield opened
    await opened.engine.close()


def wallet(account_id: int, **limits: int | None) -> Account:
    return Account(id=account_id, ledger=LEDGER, code=2,
                   flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, **limits)


def issuer(account_id: int) -> Account:
    return Account(id=account_id, ledger=LEDGER, code=1)


def pay(debit: int, credit: int, amount: int, **fields: int) -> Transfer:
    return Transfer(id=fields.pop("id", None) or next_id(), debit_account_id=debit,
                    credit_account_id=credit, amount=amount, ledger=LEDGER, code=1, **fields)


async def setup_accounts(writer: LedgerWriter, *accounts: Account) -> None:
    results = await writer.create_accounts(list(accounts))
    assert results == [CreateAccountResult.OK] * len(accounts)


async def credit_balance(writer: LedgerWriter, account_id: int) -> int:
    [balance] = await writer.lookup_accounts([account_id])
    assert balance is not None
    return balance.credits_posted - balance.debits_posted


async def stored_checkpoint_height(opened: Ledger) -> int:
    """The block the ledger's stored balances are as of."""
    async with opened.engine.pool.acquire() as conn:
        height: int = await conn.fetchval(
            "SELECT checkpoint_height FROM ledgers WHERE ledger = $1", LEDGER)
    return height


async def begin_a_slow_checkpoint(w: LedgerWriter, wallets: range,
                                  monkeypatch: pytest.MonkeyPatch) -> asyncio.Task[None]:
    """Fund `wallets` from issuer 1 (both created here) and begin a checkpoint of their
    accounts, copied at once and written two rows a chunk with long pauses between
    chunks: the checkpoint's write, still under way."""
    monkeypatch.setattr(settlement_store, "_CHECKPOINT_CHUNK", 2)
    monkeypatch.setattr(settlement_store, "CHECKPOINT_PAUSE", 200.0)  # x each chunk's time
    monkeypatch.setattr(settlement_writer, "CHECKPOINT_STEP_PER_ENTRY", 100)
    await setup_accounts(w, issuer(1), *(wallet(i) for i in wallets))
    await w.create_transfers([pay(1, i, 1_000) for i in wallets])
    w.checkpoint_every = 1  # the next batch begins one, copied at once
    await w.create_transfers([pay(wallets[0], wallets[1], 10)])
    w.checkpoint_every = 10**9
    assert w._checkpointing is not None
    return w._checkpointing


async def count_rows(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def test_transfer_moves_money_and_retry_is_idempotent(ledger: Ledger) -> None:
    """A retried transfer answers EXISTS and moves money once; a reused id with other
    fields is refused."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    first = pay(1, 2, 10_000)
    assert await w.create_transfers([first]) == [R.OK]
    assert await w.create_transfers([first]) == [R.EXISTS]
    changed = pay(1, 2, 10_001, id=first.id)
    assert await w.create_transfers([changed]) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert await credit_balance(w, 2) == 10_000
    assert await credit_balance(w, 1) == -10_000
    assert await count_rows(ledger.dsn, "transfers") == 1


async def test_rejection_is_remembered_even_after_funds_arrive(ledger: Ledger) -> None:
    """The first answer to an id stands: a refused transfer retried later is refused
    the same way, even across a restart."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    broke = pay(2, 3, 500)
    assert await w.create_transfers([broke]) == [R.EXCEEDS_CREDITS]
    assert await w.create_transfers([pay(1, 2, 1_000)]) == [R.OK]
    assert await w.create_transfers([broke]) == [R.EXCEEDS_CREDITS]
    other = pay(2, 3, 400, id=broke.id)
    assert await w.create_transfers([other]) == [R.ID_ALREADY_FAILED]
    await ledger.engine.close()
    reopened = await open_ledger(ledger.dsn, ledger.key, ledger.clock)
    try:
        assert await reopened.writer.create_transfers([broke]) == [R.EXCEEDS_CREDITS]
        assert await credit_balance(reopened.writer, 3) == 0
    finally:
        await reopened.engine.close()
        ledger.engine = reopened.engine


@pytest.mark.parametrize(
    ("limit", "value", "code"),
    [
        ("balance_cap", 100_000, R.EXCEEDS_BALANCE_CAP),
        ("debit_limit_single", 50_000, R.EXCEEDS_SINGLE_LIMIT),
        ("debit_limit_daily", 60_000, R.EXCEEDS_DAILY_LIMIT),
        ("debit_limit_yearly", 70_000, R.EXCEEDS_YEARLY_LIMIT),
    ],
)
async def test_limits_at_the_boundary(ledger: Ledger, limit: str, value: int,
                                      code: CreateTransferResult) -> None:
    """Exactly at a cap or limit passes; one fen more fails with that limit's code."""
    w = ledger.writer
    limited = wallet(2, **{limit: value})
    await setup_accounts(w, issuer(1), limited, wallet(3))
    if limit == "balance_cap":
        assert await w.create_transfers([pay(1, 2, value)]) == [R.OK]
        assert await w.create_transfers([pay(1, 2, 1)]) == [code]
        assert await credit_balance(w, 2) == value
        return
    assert await w.create_transfers([pay(1, 2, 200_000)]) == [R.OK]
    if limit == "debit_limit_single":
        assert await w.create_transfers([pay(2, 3, value + 1)]) == [code]
        assert await w.create_transfers([pay(2, 3, value)]) == [R.OK]
    else:
        assert await w.create_transfers([pay(2, 3, value - 10)]) == [R.OK]
        assert await w.create_transfers([pay(2, 3, 11)]) == [code]
        assert await w.create_transfers([pay(2, 3, 10)]) == [R.OK]
        assert await w.create_transfers([pay(2, 3, 1)]) == [code]
    assert await credit_balance(w, 3) == value


async def test_daily_limit_rolls_over_at_midnight_in_beijing(ledger: Ledger) -> None:
    """Spending the daily limit at 23:59:59 Beijing time blocks more that day; at
    00:00:00 the limit is fresh, and the usage shown to clients says so."""
    w, clock = ledger.writer, ledger.clock
    await setup_accounts(w, issuer(1), wallet(2, debit_limit_daily=1_000), wallet(3))
    assert await w.create_transfers([pay(1, 2, 5_000)]) == [R.OK]
    clock.now = NOON + 12 * 3600 * SECOND - SECOND  # 23:59:59 local
    assert await w.create_transfers([pay(2, 3, 1_000)]) == [R.OK]
    assert await w.create_transfers([pay(2, 3, 1)]) == [R.EXCEEDS_DAILY_LIMIT]
    [balance] = await w.lookup_accounts([2])
    assert balance is not None
    assert balance.debits_today == 1_000
    clock.advance(1)  # 00:00:00 the next day
    [balance] = await w.lookup_accounts([2])
    assert balance is not None
    assert balance.debits_today == 0
    assert await w.create_transfers([pay(2, 3, 1_000)]) == [R.OK]


async def test_pending_post_void_and_expiry(ledger: Ledger) -> None:
    """A pending transfer reserves funds; posting part releases the rest, voiding
    releases all, and one left past its timeout expires and cannot be posted."""
    w, clock = ledger.writer, ledger.clock
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    await w.create_transfers([pay(1, 2, 10_000)])
    held = pay(2, 3, 4_000, flags=TransferFlags.PENDING)
    voided = pay(2, 3, 3_000, flags=TransferFlags.PENDING)
    expiring = pay(2, 3, 3_000, flags=TransferFlags.PENDING, timeout=30)
    assert await w.create_transfers([held, voided, expiring]) == [R.OK] * 3
    assert await w.create_transfers([pay(2, 3, 1)]) == [R.EXCEEDS_CREDITS]
    post = pay(0, 0, 2_500, flags=TransferFlags.POST_PENDING_TRANSFER, pending_id=held.id)
    void = pay(0, 0, 0, flags=TransferFlags.VOID_PENDING_TRANSFER, pending_id=voided.id)
    assert await w.create_transfers([post, void]) == [R.OK, R.OK]
    assert await w.create_transfers([post]) == [R.EXISTS]
    again = pay(0, 0, 0, flags=TransferFlags.POST_PENDING_TRANSFER, pending_id=held.id)
    assert await w.create_transfers([again]) == [R.PENDING_TRANSFER_ALREADY_POSTED]
    clock.advance(31)
    late = pay(0, 0, 0, flags=TransferFlags.POST_PENDING_TRANSFER, pending_id=expiring.id)
    assert await w.create_transfers([late]) == [R.PENDING_TRANSFER_EXPIRED]
    [payer, payee] = await w.lookup_accounts([2, 3])
    assert payer is not None
    assert payee is not None
    assert (payer.credit_balance, payer.debits_pending) == (7_500, 0)
    assert (payee.credit_balance, payee.credits_pending) == (2_500, 0)
    assert await count_rows(ledger.dsn, "expirations") == 1


async def test_linked_chain_fails_as_a_whole(ledger: Ledger) -> None:
    """When one transfer of a linked chain fails, none of the chain is applied."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    chain = [pay(1, 2, 500, flags=TransferFlags.LINKED), pay(2, 3, 600)]
    assert await w.create_transfers(chain) == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS]
    assert await credit_balance(w, 2) == 0
    ok_chain = [pay(1, 2, 500, flags=TransferFlags.LINKED), pay(2, 3, 500)]
    assert await w.create_transfers(ok_chain) == [R.OK, R.OK]
    assert await credit_balance(w, 3) == 500


async def test_bad_input_gets_precise_codes_and_writes_nothing(ledger: Ledger) -> None:
    """Zero, negative, fractional, string and oversized amounts, malformed ids and the
    same account on both sides are refused with their own code; nothing is stored."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    before = await count_rows(ledger.dsn, "transfers")
    cases: list[tuple[Callable[[], Transfer], CreateTransferResult]] = [
        (lambda: pay(1, 2, 0), R.AMOUNT_MUST_NOT_BE_ZERO),
        (lambda: pay(1, 2, -5), R.AMOUNT_INVALID),
        (lambda: pay(1, 2, 1.5), R.AMOUNT_INVALID),  # type: ignore[arg-type]
        (lambda: pay(1, 2, "100"), R.AMOUNT_INVALID),  # type: ignore[arg-type]
        (lambda: pay(1, 2, 1 << 63), R.AMOUNT_INVALID),
        (lambda: pay(1, 1, 100), R.ACCOUNTS_MUST_BE_DIFFERENT),
        (lambda: pay(1, 2, 100, id=-1), R.ID_INVALID),
        (lambda: pay(1, 2, 100, id=1 << 128), R.ID_INVALID),
        (lambda: pay(1, 99, 100), R.CREDIT_ACCOUNT_NOT_FOUND),
    ]
    results = await w.create_transfers([make() for make, _ in cases])
    assert results == [code for _, code in cases]
    assert await count_rows(ledger.dsn, "transfers") == before
    assert await credit_balance(w, 2) == 0


async def test_restart_replays_the_journal_after_the_last_checkpoint(database_url: str) -> None:
    """Balances survive a restart whether or not the last checkpoint was written: the
    writer replays the transfers committed after it."""
    key, clock = SigningKey.generate(), FakeClock()
    first = await open_ledger(database_url, key, clock, checkpoint_every=7)
    w = first.writer
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    held = pay(2, 3, 300, flags=TransferFlags.PENDING)
    for step in range(12):
        await w.create_transfers([pay(1, 2, 1_000)])
        if step == 5:
            await w.create_transfers([held])
    assert w.metrics.checkpoints >= 1 or w._checkpointing is not None
    if w._checkpointing is not None:
        await w._checkpointing
    # Whether a batch takes a checkpoint depends on whether the previous one is still
    # being written (timing); from here on none does, so the last batch must be replayed.
    w.checkpoint_every = 10**9
    post = pay(0, 0, 100, flags=TransferFlags.POST_PENDING_TRANSFER, pending_id=held.id)
    await w.create_transfers([post, pay(2, 3, 50)])
    expected = [b.credit_balance for b in await w.lookup_accounts([1, 2, 3]) if b]
    assert w.metrics.checkpoints >= 1
    kill(first)
    second = await open_ledger(database_url, key, clock)
    try:
        assert second.writer.store.replayed > 0
        after = [b.credit_balance for b in await second.writer.lookup_accounts([1, 2, 3]) if b]
        assert after == expected == [-12_000, 12_000 - 150, 150]
        assert await second.writer.create_transfers([post]) == [R.EXISTS]
        report = await verify_store(second.writer.store, key.public)
        assert report.ok, report.summary()
    finally:
        await second.engine.close()


async def test_a_checkpoint_copied_a_few_accounts_a_batch_is_as_of_one_block(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint copies its accounts out over the batches after the one it is as of,
    while payments keep changing them: the stored balances are those of that block (the
    audit after the test re-adds the journal up to it), and a restart from it replays
    the rest to the same balances."""
    monkeypatch.setattr(settlement_writer, "CHECKPOINT_STEP", 2)
    key, clock = SigningKey.generate(), FakeClock()
    first = await open_ledger(database_url, key, clock, checkpoint_every=10**9)
    w = first.writer
    wallets = range(2, 22)
    await setup_accounts(w, issuer(1), *(wallet(i) for i in wallets))
    await w.create_transfers([pay(1, i, 1_000) for i in wallets])
    w.checkpoint_every = 1  # the next batch begins one: 21 accounts changed
    await w.create_transfers([pay(2, 3, 10), pay(4, 5, 10)])
    began_at = w.tip.height
    w.checkpoint_every = 10**9  # and no other begins after it
    assert w.state.checkpoint_under_way
    for step in range(12):  # each batch copies two more and changes two of them
        await w.create_transfers([pay(wallets[step], wallets[-1 - step], 1)])
    assert not w.state.checkpoint_under_way
    assert w._checkpointing is not None
    await w._checkpointing
    assert await stored_checkpoint_height(first) == began_at < w.tip.height
    expected = [b.credit_balance for b in await w.lookup_accounts([1, *wallets]) if b]
    kill(first)

    second = await open_ledger(database_url, key, clock)
    try:
        assert second.writer.store.replayed > 0
        after = [b.credit_balance
                 for b in await second.writer.lookup_accounts([1, *wallets]) if b]
        assert after == expected
        assert sum(after) == 0
    finally:
        await second.engine.close()


async def test_an_idle_writer_finishes_the_checkpoint_under_way(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint begun by the last batch before the traffic stops is copied out and
    written once the writer is idle, not in the middle of the next traffic: stored as
    of the block it began at, with no batch after it."""
    monkeypatch.setattr(settlement_writer, "CHECKPOINT_STEP", 2)
    opened = await open_ledger(database_url, SigningKey.generate(), FakeClock(),
                               checkpoint_every=10**9)
    w = opened.writer
    try:
        wallets = range(2, 22)
        await setup_accounts(w, issuer(1), *(wallet(i) for i in wallets))
        w.checkpoint_every = 1  # the next batch begins one, with 21 accounts to copy
        await w.create_transfers([pay(1, i, 1_000) for i in wallets])
        w.checkpoint_every = 10**9
        began_at = w.tip.height
        assert w.state.checkpoint_under_way
        await asyncio.wait_for(w.checkpoint_settled(), 10)
        assert not w.state.checkpoint_under_way
        assert w.tip.height == began_at  # no batch copied it
        assert w.metrics.checkpoints == 1
        assert await stored_checkpoint_height(opened) == began_at
    finally:
        await opened.engine.close()


async def test_an_idle_writer_takes_a_checkpoint_once_a_quarter_of_one_is_due(
        database_url: str) -> None:
    """Traffic that paused after a quarter of `checkpoint_every` entries gets its
    checkpoint then, as of the tip, rather than in the middle of the next traffic;
    fewer entries than that wait for more."""
    opened = await open_ledger(database_url, SigningKey.generate(), FakeClock(),
                               checkpoint_every=40)
    w = opened.writer
    try:
        await setup_accounts(w, issuer(1), wallet(2))
        await w.create_transfers([pay(1, 2, 10)])  # with the accounts: 3 entries of 40
        await asyncio.sleep(0.3)
        assert w.metrics.checkpoints == 0
        await w.create_transfers([pay(1, 2, 10 + i) for i in range(8)])  # 11 of 40
        await asyncio.wait_for(w.checkpoint_settled(), 10)
        assert w.metrics.checkpoints == 1
        assert await stored_checkpoint_height(opened) == w.tip.height
    finally:
        await opened.engine.close()


async def test_an_idle_writer_takes_the_checkpoint_due_after_one_being_written(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries committed while a checkpoint is being written can call for the next one;
    once that write ends, a writer that has gone idle takes it without waiting for
    another request (the ledger bench once waited for it forever between phases)."""
    opened = await open_ledger(database_url, SigningKey.generate(), FakeClock(),
                               checkpoint_every=10**9)
    w = opened.writer
    wallets = range(2, 10)
    try:
        first = await begin_a_slow_checkpoint(w, wallets, monkeypatch)
        w.checkpoint_every = 40  # an idle writer takes one after 10 entries
        for i in range(12):
            await w.create_transfers([pay(wallets[i % 8], wallets[(i + 1) % 8], 1)])
        assert not first.done(), "the first checkpoint was written too fast for this test"
        await asyncio.wait_for(w.checkpoint_settled(), 20)
        assert w.metrics.checkpoints == 2
        assert await stored_checkpoint_height(opened) == w.tip.height
    finally:
        await opened.engine.close()


async def test_an_account_update_commits_while_a_checkpoint_is_being_written(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint stages its balances without locking the accounts' rows, so a freeze
    (a commit that updates an account's row) goes through while the checkpoint is still
    being written instead of waiting for all of it; the checkpoint then stores every
    balance as of its block."""
    key, clock = SigningKey.generate(), FakeClock()
    opened = await open_ledger(database_url, key, clock, checkpoint_every=10**9)
    w = opened.writer
    wallets = range(2, 10)
    try:
        checkpointing = await begin_a_slow_checkpoint(w, wallets, monkeypatch)
        as_of = w.tip.height

        conn = await asyncpg.connect(opened.dsn)
        try:
            # Between two chunks the checkpoint's transaction waits, open.
            for _ in range(500):
                if await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND state = 'idle in transaction'"):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the checkpoint never paused between its chunks")
            # Every wallet, so the freeze touches rows of the chunks already written.
            frozen = [Account(id=i, ledger=LEDGER, code=2, flags=AccountFlags.FROZEN
                              | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) for i in wallets]
            assert await w.update_accounts(frozen) == [UpdateAccountResult.OK] * len(frozen)
            assert not checkpointing.done()
            flags = await conn.fetch("SELECT flags FROM accounts WHERE ledger = $1 AND "
                                     "flags & $2 <> 0", LEDGER, int(AccountFlags.FROZEN))
            assert len(flags) == len(frozen)
            await checkpointing
            assert w.metrics.checkpoints == 1
            stored = {int.from_bytes(r["id"], "big"): r["balance"] for r in await conn.fetch(
                "SELECT id, credits_posted - debits_posted AS balance FROM accounts "
                "WHERE ledger = $1", LEDGER)}
            height = await conn.fetchval(
                "SELECT checkpoint_height FROM ledgers WHERE ledger = $1", LEDGER)
        finally:
            await conn.close()
        assert height == as_of
        assert stored == {1: -8_000, 2: 990, 3: 1_010, **dict.fromkeys(wallets[2:], 1_000)}
    finally:
        await opened.engine.close()


async def test_failed_commit_fails_its_callers_and_reloads(ledger: Ledger) -> None:
    """If PostgreSQL refuses a batch, its callers hear so, nothing of it is applied,
    and a retry with the same id then succeeds once."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    conn = await asyncpg.connect(ledger.dsn)
    try:
        await conn.execute("""
            CREATE FUNCTION refuse_block() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON blocks
                FOR EACH ROW EXECUTE FUNCTION refuse_block();
        """)
        doomed = pay(1, 2, 700)
        with pytest.raises(BatchNotCommitted):
            await w.create_transfers([doomed])
        await conn.execute("DROP TRIGGER refuse ON blocks")
    finally:
        await conn.close()
    assert await credit_balance(w, 2) == 0
    assert await w.create_transfers([doomed]) == [R.OK]
    assert await w.create_transfers([doomed]) == [R.EXISTS]
    assert await credit_balance(w, 2) == 700
    assert w.metrics.failed_commits == 1


async def until(conn: asyncpg.Connection, query: str, seconds: float = 10.0) -> None:
    """Poll `query` until it counts a row (a state another connection reaches)."""
    for _ in range(int(seconds / 0.01)):
        if await conn.fetchval(query):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never true within {seconds} s: {query}")


async def test_decided_balances_answer_at_once_while_lookups_wait_for_the_commit(
        ledger: Ledger) -> None:
    """`decided_balances` includes a transfer whose batch is still committing and answers
    without waiting; `lookup_accounts` answers only once that batch is durable."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    conn, watcher = await asyncpg.connect(ledger.dsn), await asyncpg.connect(ledger.dsn)
    try:
        lock = conn.transaction()
        await lock.start()
        await conn.execute("LOCK TABLE blocks IN ACCESS EXCLUSIVE MODE")  # holds the commit
        paying = asyncio.create_task(w.create_transfers([pay(1, 2, 1_234)]))
        # (Watched from outside the lock's transaction: one sees a frozen pg_stat_activity.)
        await until(watcher, "SELECT count(*) FROM pg_stat_activity "
                             "WHERE wait_event_type = 'Lock' AND datname = current_database()")
        [decided] = w.decided_balances([2])
        assert decided is not None
        assert decided.credits_posted == 1_234
        assert w.decided_balances([99]) == [None]
        looking = asyncio.create_task(w.lookup_accounts([2]))
        await asyncio.sleep(0.2)
        assert not paying.done()
        assert not looking.done()
        await lock.rollback()
    finally:
        await conn.close()
        await watcher.close()
    assert await paying == [R.OK]
    [durable] = await looking
    assert durable is not None
    assert durable.credits_posted == 1_234


async def refuse_next_block_at_commit(conn: asyncpg.Connection) -> int:
    """Make the next block's COMMIT fail 1.5 s in (a deferred trigger, dropped with
    `DROP TRIGGER refuse ON blocks`), so what the writer does meanwhile can be watched;
    return that block's height."""
    height = int(await conn.fetchval("SELECT max(height) FROM blocks")) + 1
    await conn.execute(f"""
        CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN
            IF NEW.height = {height} THEN
                PERFORM pg_sleep(1.5);
                RAISE EXCEPTION 'the disk failed at commit (simulated)';
            END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON blocks
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();
    """)
    return height


async def fail_together_then_retry(ledger: Ledger, conn: asyncpg.Connection, height: int,
                                   doomed: asyncio.Task[Any], follower: asyncio.Task[Any],
                                   transfers: list[Transfer], credits: list[int]) -> None:
    """The batch whose commit was refused (`refuse_next_block_at_commit`) and the one
    behind it fail together with nothing stored from `height` on; with the refusal
    gone, `transfers` succeed on retry, accounts 2 and 3 hold `credits` and the chain
    verifies."""
    assert not doomed.done()
    for task in (doomed, follower):
        with pytest.raises(BatchNotCommitted):
            await task
    assert await conn.fetchval("SELECT count(*) FROM blocks WHERE height >= $1",
                               height) == 0
    await conn.execute("DROP TRIGGER refuse ON blocks")
    w = ledger.writer
    assert await w.create_transfers(transfers) == [R.OK] * len(transfers)
    assert [await credit_balance(w, a) for a in (2, 3)] == credits
    report = await verify_store(w.store, ledger.key.public)
    assert report.ok, report.summary()


async def test_a_batch_is_never_durable_before_the_one_it_chains_to(ledger: Ledger) -> None:
    """The writer writes batch N+1 while N's COMMIT is under way; when N's COMMIT fails,
    N+1 fails with it and neither is stored, so the chain has no gap; both then succeed
    on retry and the chain verifies."""
    w = ledger.writer
    assert w.pipeline_depth >= 2
    w.pipeline_min_events = 1  # these one-transfer batches go beside each other too
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    conn = await asyncpg.connect(ledger.dsn)
    try:
        # Slowly enough that the block after it is written (and waits for it) meanwhile.
        height = await refuse_next_block_at_commit(conn)
        first, second = pay(1, 2, 700), pay(1, 3, 300)
        doomed = asyncio.create_task(w.create_transfers([first]))
        await until(conn, "SELECT count(*) FROM pg_stat_activity "
                          "WHERE wait_event = 'PgSleep'")  # its COMMIT is under way
        follower = asyncio.create_task(w.create_transfers([second]))
        # The follower is written on another connection and waits, open, for its turn.
        await until(conn, "SELECT count(*) FROM pg_stat_activity "
                          "WHERE state = 'idle in transaction' AND datname = current_database()")
        await fail_together_then_retry(ledger, conn, height, doomed, follower,
                                       [first, second], [700, 300])
    finally:
        await conn.close()


async def test_a_batch_gathered_behind_a_commit_is_decided_during_it_and_fails_with_it(
        ledger: Ledger) -> None:
    """Requests that arrive while a batch commits are decided as they arrive, before
    that commit returns (too few to go beside it, they form the next batch); when the
    commit fails, they fail with it, nothing of either is stored, and both then
    succeed on retry."""
    w = ledger.writer
    step = settlement_writer.GATHER_STEP_EVENTS
    assert step < w.pipeline_min_events  # so the follower gathers, not goes beside
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    conn = await asyncpg.connect(ledger.dsn)
    try:
        height = await refuse_next_block_at_commit(conn)
        first = pay(1, 2, 700)
        rest = [pay(1, 3, 1) for _ in range(step)]
        doomed = asyncio.create_task(w.create_transfers([first]))
        await until(conn, "SELECT count(*) FROM pg_stat_activity "
                          "WHERE wait_event = 'PgSleep'")  # its COMMIT is under way
        follower = asyncio.create_task(w.create_transfers(rest))
        for _ in range(100):
            await asyncio.sleep(0.01)
            [decided] = w.decided_balances([3])
            if decided is not None and decided.credits_posted:
                break
        assert decided is not None
        assert decided.credits_posted == step  # decided while the commit is under way
        await fail_together_then_retry(ledger, conn, height, doomed, follower,
                                       [first, *rest], [700, step])
    finally:
        await conn.close()


class HeldBlocks:
    """The `blocks` table locked from another connection: the batch committing holds
    at its block's INSERT until `release`, while the writer goes on deciding."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def __aenter__(self) -> HeldBlocks:
        self.conn = await asyncpg.connect(self.dsn)
        self.watcher = await asyncpg.connect(self.dsn)
        self.lock = self.conn.transaction()
        self.released = False
        await self.lock.start()
        await self.conn.execute("LOCK TABLE blocks IN ACCESS EXCLUSIVE MODE")
        return self

    async def held(self) -> None:
        """Return once a commit waits for the lock."""
        await until(self.watcher, "SELECT count(*) FROM pg_stat_activity WHERE "
                                  "wait_event_type = 'Lock' AND datname = current_database()")

    async def streamed(self, tuples: int) -> int:
        """Wait until an open COPY into `transfers` has taken `tuples` rows; its pid."""
        await until(self.watcher, "SELECT count(*) FROM pg_stat_progress_copy WHERE "
                                  f"relid = 'transfers'::regclass AND tuples_processed = {tuples}")
        pid: int = await self.watcher.fetchval(
            "SELECT pid FROM pg_stat_progress_copy WHERE relid = 'transfers'::regclass")
        return pid

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self.lock.rollback()

    async def __aexit__(self, *_: object) -> None:
        await self.release()
        await self.conn.close()
        await self.watcher.close()


async def test_a_batch_gathered_behind_a_commit_streams_its_transfers_meanwhile(
        ledger: Ledger) -> None:
    """The transfers of a batch gathering behind a commit reach the server as they are
    decided (`GATHER_STEP_EVENTS` at a time), before that commit returns; once it does,
    the batch commits with them, every field stored as sent, and the chain verifies."""
    w = ledger.writer
    step = settlement_writer.GATHER_STEP_EVENTS
    await setup_accounts(w, issuer(1), wallet(2), wallet(3), wallet(4))
    async with HeldBlocks(ledger.dsn) as blocks:
        ahead = asyncio.create_task(w.create_transfers([pay(1, 2, 700)]))
        await blocks.held()
        first = [pay(1, 3, 5, user_data=2**128 - 1, timeout=0) for _ in range(step)]
        behind = [asyncio.create_task(w.create_transfers(first))]
        await blocks.streamed(step)  # on the server while the batch ahead still waits
        second = [pay(1, 4, 2**56 + i, user_data=i) for i in range(step)]  # widest that sum
        behind.append(asyncio.create_task(w.create_transfers(second)))
        await blocks.streamed(2 * step)  # and so is the next request, in the same COPY
        assert not ahead.done()
        assert not any(task.done() for task in behind)
        await blocks.release()
    assert await ahead == [R.OK]
    assert [await task for task in behind] == [[R.OK] * step] * 2
    sent = first + second
    stored = await w.lookup_transfers([t.id for t in sent])
    assert [(r.id, r.debit_account_id, r.credit_account_id, r.amount, r.user_data)
            for r in stored if r is not None] == [
        (t.id, t.debit_account_id, t.credit_account_id, t.amount, t.user_data) for t in sent]
    assert len({r.block_height for r in stored if r is not None}) == 1
    report = await verify_store(w.store, ledger.key.public)
    assert report.ok, report.summary()


async def test_a_stream_cut_off_fails_its_callers_and_stores_nothing_of_their_batch(
        ledger: Ledger) -> None:
    """If the connection a batch streams on dies before the batch commits, its callers
    hear so, nothing of it is stored, the batch ahead of it still commits, and a retry
    of the same transfers succeeds once."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    async with HeldBlocks(ledger.dsn) as blocks:
        ahead = asyncio.create_task(w.create_transfers([pay(1, 2, 700)]))
        await blocks.held()
        doomed = [pay(1, 3, 10) for _ in range(settlement_writer.GATHER_STEP_EVENTS)]
        behind = asyncio.create_task(w.create_transfers(doomed))
        pid = await blocks.streamed(len(doomed))
        assert await blocks.watcher.fetchval("SELECT pg_terminate_backend($1)", pid)
        await blocks.release()
    assert await ahead == [R.OK]
    with pytest.raises(BatchNotCommitted):
        await behind
    assert await w.lookup_transfers([t.id for t in doomed]) == [None] * len(doomed)
    assert await credit_balance(w, 3) == 0
    assert await w.create_transfers(doomed) == [R.OK] * len(doomed)
    assert await w.create_transfers(doomed) == [R.EXISTS] * len(doomed)
    assert [await credit_balance(w, a) for a in (2, 3)] == [700, 10 * len(doomed)]
    report = await verify_store(w.store, ledger.key.public)
    assert report.ok, report.summary()


async def test_a_stream_opened_for_a_batch_that_writes_nothing_is_rolled_back(
        ledger: Ledger) -> None:
    """Balance lookups arriving behind a commit open a stream like any request, but
    their batch has nothing to write: they answer once the commit ahead is durable, and
    no transaction is left open on the server."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    async with HeldBlocks(ledger.dsn) as blocks:
        ahead = asyncio.create_task(w.create_transfers([pay(1, 2, 700)]))
        await blocks.held()
        unknown = range(1_000, 1_000 + settlement_writer.GATHER_STEP_EVENTS - 1)
        looking = asyncio.create_task(w.lookup_accounts([2, *unknown]))
        await blocks.streamed(0)  # the lookup's batch opened a stream
        await asyncio.sleep(0.1)
        assert not looking.done()
        await blocks.release()
        assert await ahead == [R.OK]
        [balance, *none] = await looking
        assert balance is not None
        assert balance.credits_posted == 700
        assert none == [None] * len(unknown)
        await until(blocks.watcher, "SELECT count(*) = 0 FROM pg_stat_activity WHERE "
                                    "state LIKE 'idle in transaction%' "
                                    "AND datname = current_database()")
        assert await blocks.watcher.fetchval("SELECT count(*) FROM pg_stat_progress_copy") == 0


async def test_a_writer_that_breaks_tells_its_callers_instead_of_leaving_them_waiting(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in deciding (here: the core raising) stops the writer; the caller being
    decided and every later caller hear WriterClosed at once, rather than hanging."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))

    class BrokenCore:
        """The writer's core, but deciding transfers raises (the core may be compiled,
        where its methods cannot be patched one by one)."""

        def __init__(self, core: object) -> None:
            self.core = core

        def __getattr__(self, name: str) -> object:
            return getattr(self.core, name)

        def create_transfers(self, *_: object) -> None:
            raise RuntimeError("a bug in the core")

    monkeypatch.setattr(w, "state", BrokenCore(w.state))
    with pytest.raises(WriterClosed):
        await asyncio.wait_for(w.create_transfers([pay(1, 2, 100)]), 10)
    with pytest.raises(WriterClosed):
        await asyncio.wait_for(w.create_transfers([pay(1, 2, 100)]), 10)


async def test_concurrent_submitters_keep_the_ledger_balanced(ledger: Ledger) -> None:
    """Many submitters at once: every OK transfer is applied exactly once and the
    balances of the ledger sum to zero."""
    w = ledger.writer
    accounts = list(range(10, 60))
    await setup_accounts(w, issuer(1), *(wallet(a) for a in accounts))
    await w.create_transfers([pay(1, a, 10_000) for a in accounts])

    async def submitter(seed: int) -> int:
        ok = 0
        for round_ in range(20):
            batch = [pay(accounts[(seed + i) % 50], accounts[(seed * 7 + i + round_ + 1) % 50],
                         1 + (seed + i) % 900) for i in range(25)]
            batch = [t for t in batch if t.debit_account_id != t.credit_account_id]
            ok += sum(r is R.OK for r in await w.create_transfers(batch))
        return ok

    moved = await asyncio.gather(*(submitter(s) for s in range(8)))
    assert sum(moved) > 0
    balances = await w.lookup_accounts([1, *accounts])
    assert sum(b.credit_balance for b in balances if b) == 0
    assert all(b.credit_balance >= 0 for b in balances[1:] if b)
    assert await count_rows(ledger.dsn, "transfers") == 50 + sum(moved)


async def test_receipt_proves_the_transfer_is_in_a_signed_block(ledger: Ledger) -> None:
    """A transfer's receipt verifies with the ledger's public key; another key fails."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    transfers = [pay(1, 2, 100 + i) for i in range(9)]
    await w.create_transfers(transfers)
    receipt = await w.receipt(transfers[4].id)
    assert receipt is not None
    assert receipt.header.entry_count == 9
    assert receipt.verify(ledger.key.public) is None
    assert receipt.verify(SigningKey.generate().public) is not None


@pytest.mark.parametrize("count", [1, 300], ids=["one-statement", "transaction"])
async def test_notes_are_stored_with_their_transfers_in_either_commit_shape(
        ledger: Ledger, count: int) -> None:
    """A small noted batch commits as one statement, a large one as a transaction with
    COPY: either way every note of a settled transfer is stored and the chain verifies."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    transfers = [pay(1, 2, 10) for _ in range(count)]
    notes = [f"note {t.id}".encode() if i % 3 != 1 else None
             for i, t in enumerate(transfers)]
    assert await w.create_transfers(transfers, notes=notes) == [R.OK] * count
    stored = await w.store.lookup_notes([t.id for t in transfers])
    assert stored == {t.id: n for t, n in zip(transfers, notes, strict=True) if n is not None}
    assert await count_rows(ledger.dsn, "transfers") == count
    report = await verify_store(w.store, ledger.key.public)
    assert report.ok, report.summary()


@pytest.mark.parametrize("padding", [0, settlement_store.SMALL_BATCH],
                         ids=["one statement", "COPY"])
async def test_every_field_of_a_transfer_is_stored_as_sent_in_either_commit_shape(
        ledger: Ledger, padding: int) -> None:
    """The widest values each field takes (128-bit ids and user data, the largest code,
    an amount that brings the accounts to the largest total, a timeout, pending and
    posting flags, a pending id) read back from PostgreSQL as they were sent, whether
    the batch went as one statement of packed records or by COPY; the chain verifies
    over them."""
    w = ledger.writer
    top = 2**128 - 1
    await setup_accounts(w, issuer(top - 1), wallet(2))
    pending = Transfer(id=top - 2 - padding, debit_account_id=top - 1, credit_account_id=2,
                       amount=2**63 - 1 - 2 * padding, ledger=LEDGER, code=65535,
                       user_data=top, timeout=4_294_967_295, flags=TransferFlags.PENDING)
    filler = [pay(top - 1, 2, 1) for _ in range(padding)]
    assert await w.create_transfers([pending, *filler]) == [R.OK] * (1 + padding)
    post = Transfer(id=top - 3 - padding, debit_account_id=0, credit_account_id=0, amount=0,
                    pending_id=pending.id, ledger=LEDGER, code=65535, user_data=2**64,
                    flags=TransferFlags.POST_PENDING_TRANSFER)
    assert await w.create_transfers([post, *[pay(top - 1, 2, 1) for _ in range(padding)]]
                                    ) == [R.OK] * (1 + padding)
    stored_pending, stored_post = await w.lookup_transfers([pending.id, post.id])
    assert stored_pending is not None
    assert stored_post is not None
    assert (stored_pending.id, stored_pending.debit_account_id,
            stored_pending.credit_account_id, stored_pending.amount, stored_pending.code,
            stored_pending.flags, stored_pending.pending_id, stored_pending.timeout,
            stored_pending.user_data) == (
        pending.id, top - 1, 2, 2**63 - 1 - 2 * padding, 65535, int(TransferFlags.PENDING), 0,
        4_294_967_295, top)
    assert (stored_post.id, stored_post.debit_account_id, stored_post.credit_account_id,
            stored_post.amount, stored_post.code, stored_post.flags, stored_post.pending_id,
            stored_post.timeout, stored_post.user_data) == (
        post.id, top - 1, 2, 2**63 - 1 - 2 * padding, 65535,
        int(TransferFlags.POST_PENDING_TRANSFER), pending.id, 0, 2**64)
    assert stored_post.timestamp > stored_pending.timestamp > 0
    report = await verify_store(w.store, ledger.key.public)
    assert report.ok, report.summary()


async def test_a_pool_connection_comes_back_without_an_open_transaction(ledger: Ledger) -> None:
    """The pool skips asyncpg's reset query, but a transaction left open by a borrower
    is still rolled back on release: the next borrower starts clean."""
    pool = ledger.engine.pool
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMPORARY TABLE left_behind (x int)")
    for _ in range(pool.get_size()):
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_behind')") is None


@pytest.mark.tampers
async def test_audit_names_the_block_of_a_tampered_transfer(ledger: Ledger, tmp_path) -> None:
    """Changing one stored transfer makes the audit fail at exactly that block, from
    the database and from an exported file."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    for amount in (100, 200, 300, 400):
        await w.create_transfers([pay(1, 2, amount)])
    report = await verify_store(w.store, ledger.key.public)
    assert report.ok, report.summary()
    assert report.blocks_checked == 5
    blocks = [block async for block in w.store.blocks()]
    export = tmp_path / "chain.jsonl"
    export.write_text("\n".join(export_lines(LEDGER, ledger.key.public, blocks)) + "\n")
    assert (await verify_file(export)).ok

    conn = await asyncpg.connect(ledger.dsn)
    try:
        height = await conn.fetchval(
            "UPDATE transfers SET amount = amount + 1 WHERE amount = 300 RETURNING block_height")
    finally:
        await conn.close()
    report = await verify_store(w.store, ledger.key.public)
    assert not report.ok
    assert report.finding is not None
    assert report.finding.height == height
    assert "Merkle root" in report.finding.reason

    lines = export.read_text().splitlines()
    lines[2] = lines[2].replace('"signature": "3', '"signature": "4', 1)
    export.write_text("\n".join(lines) + "\n")
    tampered = await verify_file(export)
    assert tampered.finding is not None
    assert tampered.finding.height == 2


async def test_engine_refuses_another_key_for_an_existing_chain(ledger: Ledger) -> None:
    """A ledger sealed with one key cannot be continued with another."""
    other = await Engine.open(ledger.dsn, key=SigningKey.generate())
    try:
        with pytest.raises(KeyMismatch):
            await other.ledger(LEDGER)
    finally:
        await other.close()


async def test_account_history_pages_in_time_order(ledger: Ledger) -> None:
    """An account's history lists its transfers oldest first, page by page, and can be
    filtered to money out or money in."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    incoming = [pay(1, 2, 1_000 + i) for i in range(5)]
    for transfer in incoming:
        await w.create_transfers([transfer])
    outgoing = [pay(2, 3, 10 + i) for i in range(3)]
    await w.create_transfers(outgoing)
    first_page = await w.account_history(2, limit=4)
    assert [t.id for t in first_page] == [t.id for t in incoming[:4]]
    rest = await w.account_history(2, after_timestamp=first_page[-1].timestamp, limit=100)
    assert [t.id for t in rest] == [incoming[4].id, *(t.id for t in outgoing)]
    debits = await w.account_history(2, direction="debits")
    assert [t.amount for t in debits] == [10, 11, 12]
    [record] = await w.lookup_transfers([outgoing[1].id])
    assert record is not None
    assert (record.debit_account_id, record.credit_account_id, record.amount) == (2, 3, 11)
    assert await w.lookup_transfers([999_999_999]) == [None]


async def history_of(dsn: str, account_id: int, direction: str = "both") -> list[int]:
    """The account's transfers as the ledger's table holds them, oldest first: the
    reference a history query must match."""
    sides = {"both": "(debit_account_id = $2 OR credit_account_id = $2)",
             "debits": "debit_account_id = $2", "credits": "credit_account_id = $2"}
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT id FROM transfers WHERE ledger = $1 AND {sides[direction]} "
            "ORDER BY timestamp", LEDGER, account_id.to_bytes(16, "big"))
    finally:
        await conn.close()
    return [int.from_bytes(r["id"], "big") for r in rows]


async def test_history_pages_past_every_cursor_match_the_ledger(ledger: Ledger) -> None:
    """Wallet 2's chains run past several marks (every 64th transfer on a side) in
    batches, pending transfers and their resolutions included: from every cursor, in
    pages of every size around a mark's span, each direction lists exactly what the
    ledger holds after the cursor, oldest first."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    for round_ in range(5):
        await w.create_transfers([pay(1, 2, 1_000 + i) for i in range(40)])
        await w.create_transfers([pay(2, 3, 1 + i) for i in range(25 + round_)])
    held = pay(2, 3, 50, flags=int(TransferFlags.PENDING))
    await w.create_transfers([held])
    await w.create_transfers([pay(0, 0, 0, pending_id=held.id,
                                  flags=int(TransferFlags.POST_PENDING_TRANSFER))])
    whole = await history_of(ledger.dsn, 2)
    assert len(whole) > 3 * settlement_store.MARK_EVERY
    timestamps = {t.id: t.timestamp for t in await w.account_history(2, limit=10_000)}
    assert list(timestamps) == whole
    for direction in ("both", "debits", "credits"):
        expected = await history_of(ledger.dsn, 2, direction)
        for start in range(0, len(whole), 23):
            cursor = timestamps[whole[start - 1]] if start else 0
            after = [i for i in expected if timestamps[i] > cursor]
            for limit in (1, 2, 63, 64, 65, 128, 129, 1_000):
                page = await w.account_history(2, after_timestamp=cursor, limit=limit,
                                               direction=direction)
                assert [t.id for t in page] == after[:limit], (direction, start, limit)


async def test_paging_through_a_history_visits_each_transfer_once(ledger: Ledger) -> None:
    """A follower paging with the last timestamp as its cursor sees every transfer of
    the account once, in order, and then an empty page, before and after a restart
    (which finds the chains' heads again) and as new transfers arrive."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2), wallet(3))
    for i in range(150):
        await w.create_transfers([pay(1, 2, 100 + i) if i % 3 else pay(2, 3, 1)])

    async def pages(writer: LedgerWriter, after: int, limit: int) -> tuple[list[int], int]:
        seen: list[int] = []
        while page := await writer.account_history(2, after_timestamp=after, limit=limit):
            seen += [t.id for t in page]
            after = page[-1].timestamp
        return seen, after

    seen, cursor = await pages(w, 0, 7)
    assert seen == await history_of(ledger.dsn, 2)
    await ledger.engine.close()
    reopened = await open_ledger(ledger.dsn, ledger.key, ledger.clock)
    ledger.engine, w = reopened.engine, reopened.writer
    assert await w.account_history(2, after_timestamp=cursor) == []
    newer = [pay(1, 2, 7), pay(2, 3, 8)]
    await w.create_transfers(newer)
    more, _ = await pages(w, cursor, 1)
    assert more == [t.id for t in newer]
    assert [*seen, *more] == await history_of(ledger.dsn, 2)


async def test_a_history_query_waits_for_the_commit_of_a_transfer_it_would_list(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transfer decided while its batch still commits heads its account's chains: a
    history query made then waits for that commit and lists it, instead of starting
    its walk at a row that is not there yet."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    first = pay(1, 2, 10)
    await w.create_transfers([first])
    committing, release = asyncio.Event(), asyncio.Event()
    commit = w.store.commit

    async def held_commit(*args: Any, **kwargs: Any) -> None:
        committing.set()
        await release.wait()
        await commit(*args, **kwargs)

    monkeypatch.setattr(w.store, "commit", held_commit)
    second = pay(1, 2, 20)
    paying = asyncio.create_task(w.create_transfers([second]))
    await asyncio.wait_for(committing.wait(), 10)
    assert w.state.accounts[2].credit_head > w.durable_timestamp  # decided, not durable
    query = asyncio.create_task(w.account_history(2))
    await asyncio.sleep(0.2)
    assert not query.done()
    release.set()
    assert await paying == [R.OK]
    assert [t.id for t in await query] == [first.id, second.id]


@pytest.mark.tampers
async def test_audit_names_a_transfer_whose_history_link_is_wrong(ledger: Ledger) -> None:
    """A changed link would hide part of an account's history: the audit names the
    transfer, its block and what its link should say."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2))
    first, second = pay(1, 2, 300), pay(1, 2, 400)
    await w.create_transfers([first])
    await w.create_transfers([second])
    assert (await verify_store(w.store, ledger.key.public)).ok
    [one, two] = await w.account_history(2)
    conn = await asyncpg.connect(ledger.dsn)
    try:
        await conn.execute("UPDATE transfers SET credit_prev = 0 WHERE id = $1",
                           second.id.to_bytes(16, "big"))
    finally:
        await conn.close()
    report = await verify_store(w.store, ledger.key.public)
    assert not report.ok
    assert report.history_breaks == (
        f"transfer 0x{second.id:032x} (block {two.block_height}): its credit link names "
        f"the transfer at timestamp 0 and position 2; the credits of that account put "
        f"the one at timestamp {one.timestamp} before it, at position 2",)
    assert "account history links disagree" in report.summary()


async def test_account_updates_change_limits_and_freeze(ledger: Ledger) -> None:
    """A wallet moved to a lower class gets the lower limits at once; a frozen wallet can
    neither pay nor be paid until unfrozen, but its pending transfers can be voided; the
    changes survive a restart and are sealed into the chain."""
    w = ledger.writer
    await setup_accounts(w, issuer(1), wallet(2, debit_limit_single=50_000), wallet(3))
    await w.create_transfers([pay(1, 2, 100_000)])
    held = pay(2, 3, 1_000, flags=TransferFlags.PENDING)
    assert await w.create_transfers([held]) == [R.OK]

    lower = wallet(2, debit_limit_single=500)
    assert await w.update_accounts([lower]) == [UpdateAccountResult.OK]
    assert await w.create_transfers([pay(2, 3, 501)]) == [R.EXCEEDS_SINGLE_LIMIT]
    assert await w.create_transfers([pay(2, 3, 500)]) == [R.OK]

    frozen = Account(id=2, ledger=LEDGER, code=2, debit_limit_single=500,
                     flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.FROZEN)
    assert await w.update_accounts([frozen]) == [UpdateAccountResult.OK]
    assert await w.create_transfers([pay(2, 3, 1)]) == [R.DEBIT_ACCOUNT_FROZEN]
    assert await w.create_transfers([pay(1, 2, 1)]) == [R.CREDIT_ACCOUNT_FROZEN]
    void = pay(0, 0, 0, flags=TransferFlags.VOID_PENDING_TRANSFER, pending_id=held.id)
    assert await w.create_transfers([void]) == [R.OK]

    assert await w.update_accounts([Account(id=2, ledger=LEDGER, code=9)]) == [
        UpdateAccountResult.CODE_MUST_NOT_CHANGE]
    assert await w.update_accounts([wallet(77)]) == [UpdateAccountResult.ACCOUNT_NOT_FOUND]

    await ledger.engine.close()
    reopened = await open_ledger(ledger.dsn, ledger.key, ledger.clock)
    ledger.engine = reopened.engine
    w = reopened.writer
    assert await w.create_transfers([pay(2, 3, 1)]) == [R.DEBIT_ACCOUNT_FROZEN]
    assert await w.update_accounts([lower]) == [UpdateAccountResult.OK]
    assert await w.create_transfers([pay(2, 3, 500)]) == [R.OK]
    assert await credit_balance(w, 2) == 99_000
    report = await verify_store(w.store, ledger.key.public)
    assert report.ok, report.summary()


async def test_notes_are_kept_for_accepted_transfers_only(ledger: Ledger) -> None:
    """A note travels with its transfer into the same commit, whether the batch is small
    (one statement) or carries a rejection too (the general path), and only an accepted
    transfer's note is kept; a restart finds them all."""
    writer = ledger.writer
    source, payee = next_id(), next_id()
    await setup_accounts(writer, issuer(source), wallet(payee))
    small = [pay(source, payee, 5), pay(source, payee, 7)]
    assert await writer.create_transfers(small, [b"first", None]) == [R.OK, R.OK]
    mixed = [pay(source, payee, 3), pay(payee, source, 10_000)]  # the second overdraws
    results = await writer.create_transfers(mixed, [b"kept", b"dropped"])
    assert results == [R.OK, R.EXCEEDS_CREDITS]
    ids = [t.id for t in small + mixed]
    expected = {small[0].id: b"first", mixed[0].id: b"kept"}
    assert await writer.store.lookup_notes(ids) == expected
    await ledger.engine.close()
    reopened = await open_ledger(ledger.dsn, ledger.key, ledger.clock)
    ledger.engine, ledger.writer = reopened.engine, reopened.writer
    assert await reopened.writer.store.lookup_notes(ids) == expected
    assert await credit_balance(reopened.writer, payee) == 15


def marks_rows(attachments: list[list[str]]) -> AttachedRows:
    """The writer's attachments function of the test below: each attachment is a list
    of marks, kept in a table of their own."""
    return AttachedRows(
        ("INSERT INTO attached_marks SELECT * FROM unnest($1::text[]) ON CONFLICT DO NOTHING",),
        ([mark for marks in attachments for mark in marks],))


async def test_attachments_are_durable_exactly_when_their_batch_is(database_url: str) -> None:
    """What a caller attaches to its transfers is written in the transaction of the batch
    that decides them, whatever its shape (one statement, or COPY with rejections), also
    when the batch has nothing else to write (a retry), and not at all when it fails."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("CREATE TABLE attached_marks (mark text PRIMARY KEY)")
    engine = await Engine.open(database_url, key=SigningKey.generate(), clock=FakeClock())
    try:
        w = await engine.ledger(LEDGER, attachments=marks_rows)
        await setup_accounts(w, issuer(1), wallet(2), wallet(3))
        small = pay(1, 2, 10)
        assert await w.create_transfers([small], attachment=["small"]) == [R.OK]
        many = [pay(1, 2, 1) for _ in range(settlement_store.SMALL_BATCH + 1)]
        assert await w.create_transfers(many, attachment=["many"]) == [R.OK] * len(many)
        overdrawn = pay(3, 2, 5)  # wallet 3 holds nothing
        assert await w.create_transfers([overdrawn], attachment=["rejected"]) == [
            R.EXCEEDS_CREDITS]
        assert await w.create_transfers([small], attachment=["retry"]) == [R.EXISTS]
        await conn.execute("""
            CREATE FUNCTION refuse_block() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON blocks
                FOR EACH ROW EXECUTE FUNCTION refuse_block();
        """)
        with pytest.raises(BatchNotCommitted):
            await w.create_transfers([pay(1, 2, 7)], attachment=["failed"])
        await conn.execute("DROP TRIGGER refuse ON blocks")
        marks = {r["mark"] for r in await conn.fetch("SELECT mark FROM attached_marks")}
        assert marks == {"small", "many", "rejected", "retry"}
        assert await credit_balance(w, 2) == 10 + len(many)
        report = await verify_store(w.store, engine.key.public)
        assert report.ok, report.summary()
    finally:
        await engine.close()
        await conn.close()


async def test_a_writer_without_an_attachments_function_refuses_an_attachment(
        ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="attachments"):
        await ledger.writer.create_transfers([pay(1, 2, 1)], attachment=["lost"])
