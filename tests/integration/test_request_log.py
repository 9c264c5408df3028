"""The central bank's request log on real PostgreSQL: each nonce is fresh once and each
idempotency key keeps its first body, also when several groups of claims are being
written at the same time and share claims, and after a restart."""

from __future__ import annotations

import asyncio
import random
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


def claim(log: RequestLog, number: int,
          body: bytes = b"same body") -> asyncio.Future[tuple[str, str]]:
    return asyncio.ensure_future(log.claim(
        key_id="opa-1", nonce=f"nonce-{number}", created=1_700_000_000, operator="OPA",
        idempotency_key=f"key-{number}", request_hash=body.ljust(32, b".")))


async def test_groups_written_together_decide_shared_claims_once(pool: asyncpg.Pool) -> None:
    log = RequestLog(pool, max_in_flight=3)
    log.start()
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


async def test_groups_sharing_claims_in_opposite_orders_do_not_deadlock(
        pool: asyncpg.Pool) -> None:
    log = RequestLog(pool, max_in_flight=2)
    log.start()
    try:
        async with pool.acquire(), pool.acquire():
            pass  # both connections open: the second group starts at once
        numbers = range(3000)
        ascending = [claim(log, n) for n in numbers]
        await asyncio.sleep(0.002)  # the first group is on its way
        descending = [claim(log, n) for n in reversed(numbers)]
        answers = await asyncio.gather(*ascending, *descending)
    finally:
        await log.close()
    assert Counter(answers) == {(FRESH, NEW_KEY): 3000, (REPLAYED, SAME_BODY): 3000}


async def test_a_restarted_log_refuses_what_an_earlier_one_accepted(pool: asyncpg.Pool) -> None:
    first = RequestLog(pool)
    first.start()
    try:
        assert await claim(first, 1) == (FRESH, NEW_KEY)
    finally:
        await first.close()
    second = RequestLog(pool)
    second.start()
    try:
        assert await claim(second, 1) == (REPLAYED, SAME_BODY)
        assert await claim(second, 1, b"another body") == (REPLAYED, OTHER_BODY)
    finally:
        await second.close()
