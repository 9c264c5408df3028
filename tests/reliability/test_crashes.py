"""Crashes under load: kill -9 the central bank or a commercial bank, or stop PostgreSQL
immediately (a private server), at seeded random moments while wallets pay each other
within and across banks and top up and redeem (so banks swap float with the central
bank); restart what was killed at once.

Clients retry every order whose answer was lost with the same bytes (the same payment
id), so each order ends with one definite answer. Pass: each service is ready again
(a payment from every bank to another settles) within 30 s of the kill; afterwards every
acknowledged payment is in the payer bank's journal exactly once (and, across banks, at
the central bank and booked at the payee's), every wallet holds exactly what the
acknowledged payments imply (so nothing was half applied or applied twice), each bank's
holdings equal its position, and `cbdc reconcile` is clean.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from loadtest.network import CENTRAL_BANK_SERVICE
from loadtest.retail_bench import Orders
from tests.reliability.cluster import READY_WITHIN_S, Cluster
from tests.reliability.load import Payments, Shape, bank_pools, check_books
from tests.reliability.stores import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.reliability

POSTGRES = "postgres"
CODES = ("BANKA", "BANKB")
TARGETS = (CENTRAL_BANK_SERVICE, *CODES, POSTGRES)
# A small float: top-ups and redemptions under load make the banks swap float with the
# central bank again and again, through the kills.
FLOAT_TARGET = 20_000
DEPOSIT = 200_000  # fen paid into each cold wallet's deposit account for top-ups


@dataclass(frozen=True)
class Size:
    kills: int
    wallets: int  # per bank
    clients: int
    gap: tuple[float, float]  # seconds of load between one service ready and the next kill


SIZES = {
    "quick": Size(kills=4, wallets=10, clients=8, gap=(0.2, 1.5)),
    "long": Size(kills=24, wallets=40, clients=24, gap=(0.5, 4.0)),
}


def kill_plan(rng: random.Random, kills: int) -> list[str]:
    """Every target at least once (when there are enough kills), the rest drawn."""
    plan = list(TARGETS)[:kills] + [rng.choice(TARGETS) for _ in range(kills - len(TARGETS))]
    rng.shuffle(plan)
    return plan


async def ready_again(payments: Payments, rng: random.Random, orders: Orders,
                      killed_at: float) -> float:
    """Seconds from the kill until a payment from each bank to the other settled."""
    for code in CODES:
        other = next(c for c in CODES if c != code)
        while True:
            answer = await payments.pay(rng, orders, code, other)
            if answer is not None and answer.acknowledged and \
                    answer.body["status"] == "settled":
                break
            assert time.monotonic() - killed_at < READY_WITHIN_S, \
                f"{code} could not settle a payment {READY_WITHIN_S:g} s after the kill"
            await asyncio.sleep(0.1)
    return time.monotonic() - killed_at


async def crash(cluster: Cluster, session: aiohttp.ClientSession, postgres: PrivatePostgres,
                target: str) -> None:
    """Kill `target` without warning, and start it again at once."""
    if target == POSTGRES:
        await asyncio.to_thread(postgres.crash)
        await asyncio.to_thread(postgres.start)
    else:
        await cluster.kill(target)
        await cluster.restart(session, target)


async def test_kill_9_under_load_loses_and_doubles_nothing(
        private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path,
        profile: str, seed: int) -> None:
    size = SIZES[profile]
    rng = random.Random(seed)
    plan = kill_plan(rng, size.kills)
    cluster = Cluster(private_postgres.url, private_redis.url, tmp_path / "system",
                      codes=CODES, float_target=FLOAT_TARGET)
    recoveries: list[tuple[str, float]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session, \
            cluster.running(session):
        wallets = await cluster.seed_wallets(session, size.wallets)
        shape = Shape(size.clients, money_clients=2, hot=2, cross_share=0.4)
        for made in wallets.values():
            for wallet in made[shape.hot:]:  # what top-ups draw on
                await cluster.cash_in(session, wallet, DEPOSIT)
        payments = Payments(cluster, session, wallets, seed, shape)
        probe_rng = random.Random(f"{seed}:probes")
        probes = Orders(probe_rng)
        async with payments.running():
            for target in plan:
                await asyncio.sleep(rng.uniform(*size.gap))
                killed_at = time.monotonic()
                await crash(cluster, session, private_postgres, target)
                recoveries.append((target, await ready_again(payments, probe_rng, probes,
                                                             killed_at)))
            await asyncio.sleep(rng.uniform(*size.gap))
        async with bank_pools(cluster) as pools:
            figures = await check_books(cluster, payments, pools)
        print(f"{len(recoveries)} kills survived: "
              + ", ".join(f"{t} ready in {s:.1f} s" for t, s in recoveries))
        print(f"{payments.sent} orders, {figures['acknowledged']} acknowledged "
              f"({figures['cross_bank']} across banks), {payments.moves} top-ups and "
              f"redemptions ({figures['float_swaps']} float swaps), "
              f"{payments.answered_after_retry} answered only on a retry, "
              f"refused: {dict(payments.refused)}")
        assert len(recoveries) == size.kills
        # Refused orders are allowed only while the payee's bank was down (nothing
        # was taken: the balances above prove it).
        assert set(payments.refused) <= {"422 payee_cannot_receive"}
