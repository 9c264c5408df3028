"""The central bank's request log on real PostgreSQL: each nonce is fresh once and each
idempotency key keeps its first body, also when several groups of claims are being
written at the same time and share keys, after a restart, and when a key is only in
PostgreSQL; a claim whose write failed holds nothing."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from central_bank.request_log import (
    FRESH,
    NEW_KEY,
    OTHER_BODY,
    REPLAYED,
    SAME_BODY,
    Claim,
    RequestLog,
)

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


def claim(log: RequestLog, number: int, body: bytes = b"same body", *,
          nonce: str | None = None, created: int | None = None
          ) -> asyncio.Future[tuple[str, str]]:
    """A request's claim as an operator call makes it: decided, then made durable."""

    async def reserve_and_settle() -> tuple[str, str]:
        decided = await log.reserve(
            key_id="opa-1", nonce=nonce or f"nonce-{number}",
            created=int(time.time()) if created is None else created, operator="OPA",
            idempotency_key=f"key-{number}", request_hash=body.ljust(32, b"."))
        await log.settle(decided)
        return decided.nonce_state, decided.body_state

    return asyncio.ensure_future(reserve_and_settle())


async def test_groups_written_together_decide_shared_claims_once(pool: asyncpg.Pool) -> None:
    log = RequestLog(pool, max_in_flight=3)
    await log.start()
    try:
        # Each request arrives four times, in waves: copies of one request land in
        # different groups, some written while others are, in opposite orders.
        arrivals = [n for n in range(300) for _ in range(4)]
        random.Random(7).shuffle(arrivals)
        tasks = []
        for index, number in enumerate(arrivals):
            tasks.append((number, claim(log, number)))
            if index % 40 == 0:
                await asyncio.sleep(0.001)  # a group's write is under way meanwhile
        answers = [(number, await task) for number, task in tasks]
    finally:
        await log.close()
    per_request: dict[int, Counter[tuple[str, str]]] = {}
    for number, answer in answers:
        per_request.setdefault(number, Counter())[answer] += 1
    for number, seen in per_request.items():
        assert seen[(FRESH, NEW_KEY)] == 1, (number, seen)
        assert seen[(REPLAYED, SAME_BODY)] == 3, (number, seen)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM request_nonces") == 300
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 300


async def test_groups_sharing_keys_in_opposite_orders_do_not_deadlock(
        pool: asyncpg.Pool) -> None:
    log = RequestLog(pool, max_in_flight=2)
    await log.start()
    try:
        async with pool.acquire(), pool.acquire():
            pass  # both connections open: the second group starts at once
        numbers = range(3000)
        ascending = [claim(log, n) for n in numbers]
        await asyncio.sleep(0.002)  # the first group is on its way
        # Each request sent again, signed afresh (a new nonce): both groups write its key.
        descending = [claim(log, n, nonce=f"again-{n}") for n in reversed(numbers)]
        answers = await asyncio.gather(*ascending, *descending)
    finally:
        await log.close()
    assert Counter(answers) == {(FRESH, NEW_KEY): 3000, (FRESH, SAME_BODY): 3000}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM request_nonces") == 6000
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 3000


async def test_a_restarted_log_refuses_what_an_earlier_one_accepted(pool: asyncpg.Pool) -> None:
    first = RequestLog(pool)
    await first.start()
    try:
        assert await claim(first, 1) == (FRESH, NEW_KEY)
    finally:
        await first.close()
    second = RequestLog(pool)
    await second.start()
    try:
        assert await claim(second, 1) == (REPLAYED, SAME_BODY)
        assert await claim(second, 1, b"another body") == (REPLAYED, OTHER_BODY)
    finally:
        await second.close()


async def test_a_key_only_postgresql_holds_keeps_its_first_body(pool: asyncpg.Pool) -> None:
    log = RequestLog(pool, key_memory_seconds=0)
    await log.start()
    try:
        assert await claim(log, 1) == (FRESH, NEW_KEY)
        await asyncio.sleep(0.01)
        log.forget_old()  # what the pruner does: the key is now only in PostgreSQL
        assert await claim(log, 1, nonce="second") == (FRESH, SAME_BODY)
        log.forget_old()
        assert await claim(log, 1, b"another body", nonce="third") == (FRESH, OTHER_BODY)
    finally:
        await log.close()


async def test_a_claim_whose_write_failed_holds_nothing(pool: asyncpg.Pool) -> None:
    log = RequestLog(pool)
    await log.start()
    try:
        # A `created` PostgreSQL cannot store: the group's write fails.
        with pytest.raises(Exception, match="out of int64 range"):
            await claim(log, 1, created=2**70)
        # Nothing of that request was written, so it may come again, as new.
        assert await claim(log, 1) == (FRESH, NEW_KEY)
    finally:
        await log.close()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM request_nonces") == 1


async def test_claims_held_add_nothing_for_the_cyclic_collector_to_walk(
        pool: asyncpg.Pool) -> None:
    # The log holds two minutes of claims, hundreds of thousands under load: were they
    # or their maps tracked, every full collection would walk them all and stall each
    # request in flight, for longer the more are held.
    log = RequestLog(pool)
    await log.start()
    try:
        answers = await asyncio.gather(*(claim(log, n) for n in range(2000)))
        assert Counter(answers) == {(FRESH, NEW_KEY): 2000}
        assert await claim(log, 60) == (REPLAYED, SAME_BODY)  # held: refused from memory
        gc.collect()
        tracked = gc.get_objects()
        assert [o for o in tracked if isinstance(o, Claim)] == []
        assert [len(o) for o in tracked if isinstance(o, dict) and len(o) >= 2000] == []
    finally:
        await log.close()
