"""The bank test: several banks, hundreds of wallets, dozens of concurrent clients with hot
wallets, and a reader that sums every balance ten times a second.

Each read takes every bank's books in one snapshot of its database and counts the money
between two banks once (`tests.reliability.ledgers`): the total must be the e-CNY the
central bank issued at the start, every time, and no wallet, float or in-flight balance
(posted, or available after pending debits) may ever be below zero.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from loadtest.network import CENTRAL_BANK_SERVICE
from tests.reliability import ledgers
from tests.reliability.cluster import Cluster
from tests.reliability.load import Payments, Shape, bank_pools, check_books
from tests.reliability.stores import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.reliability

READ_EVERY_S = 0.1


@dataclass(frozen=True)
class Size:
    banks: tuple[str, ...]
    wallets: int  # per bank
    clients: int
    seconds: float


SIZES = {
    "quick": Size(("BANKA", "BANKB", "BANKC"), wallets=70, clients=24, seconds=8.0),
    "long": Size(("BANKA", "BANKB", "BANKC", "BANKD"), wallets=150, clients=64,
                 seconds=90.0),
}


async def test_every_read_of_all_balances_equals_the_starting_total(
        private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path,
        profile: str, seed: int) -> None:
    size = SIZES[profile]
    cluster = Cluster(private_postgres.url, private_redis.url, tmp_path / "system",
                      codes=size.banks)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session, \
            cluster.running(session):
        wallets = await cluster.seed_wallets(session, size.wallets)
        async with bank_pools(cluster) as pools:
            bank_only = {code: pools[code] for code in cluster.codes}
            start = await ledgers.read_all(bank_only)
            total = ledgers.conserved_total(start)
            assert total == await ledgers.outstanding(pools[CENTRAL_BANK_SERVICE])
            payments = Payments(cluster, session, wallets, seed, Shape(size.clients))
            reads: list[int] = []
            broken: list[str] = []
            done = asyncio.Event()

            async def reader() -> None:
                while not done.is_set():
                    began = time.monotonic()
                    books = await ledgers.read_all(bank_only)
                    seen = ledgers.conserved_total(books)
                    reads.append(seen)
                    if seen != total:
                        broken.append(f"read {len(reads)}: total {seen} != {total}")
                    broken.extend(ledgers.problems(books))
                    await asyncio.sleep(max(0.0, READ_EVERY_S - (time.monotonic() - began)))

            watching = asyncio.create_task(reader())
            async with payments.running():
                await asyncio.sleep(size.seconds)
            await check_books(cluster, payments, pools)
            done.set()
            await watching
            print(f"{len(reads)} reads of all balances, {payments.sent} orders sent, "
                  f"{len(payments.acknowledged)} acknowledged, total {total} fen")
            assert broken == []
            assert len(reads) >= size.seconds  # at least one read a second got through
            assert payments.refused == {}
            assert len(payments.acknowledged) > size.clients
