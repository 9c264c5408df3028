"""The baseline `cbdc bench retail` compares same-bank payments against
(`commercial_bank.baseline`) is a correct bank, so the ratio compares like with like: a
payment moves money once (a retry of its order moves nothing), every limit holds at its
boundary, a forged or foreign order is refused, and a refusal moves nothing. On real
PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from cbdc.addresses import WalletAddress
from cbdc.payment_orders import PaymentOrder
from cbdc.processes import unused_port
from cbdc.signing import SigningKey
from commercial_bank.baseline import BaselineWallet, create_app
from commercial_bank.wallet_classes import ClassLimits

LIMITS = ClassLimits(balance_cap=1_500, single=500, daily=800, yearly=900)
OPENING = 1_000


@dataclass
class Bank:
    url: str
    session: aiohttp.ClientSession
    database_url: str
    keys: dict[int, SigningKey]
    sequences: dict[int, int]

    def order(self, payer: int, payee: int, amount: int, *, sequence: int | None = None,
              key: SigningKey | None = None, bank: str = "BANKA") -> bytes:
        if sequence is None:
            sequence = self.sequences[payer] = self.sequences.get(payer, 0) + 1
        order = PaymentOrder(payer=WalletAddress("BANKA", payer),
                             payee=WalletAddress(bank, payee), amount=amount,
                             sequence=sequence, expires=int(time.time()) + 60)
        return order.sign(key or self.keys[payer]).to_json_bytes()

    async def pay(self, body: bytes) -> tuple[int, Any]:
        async with self.session.post(self.url + "/v1/payments", data=body) as response:
            return response.status, await response.json(content_type=None)

    async def balances(self) -> dict[int, int]:
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch("SELECT number, balance FROM baseline_wallets")
        finally:
            await conn.close()
        return {r["number"]: r["balance"] for r in rows}


@pytest.fixture
async def bank(database_url: str) -> AsyncIterator[Bank]:
    keys = {number: SigningKey.generate() for number in (1, 2, 3)}
    wallets = [BaselineWallet(number, key.public, OPENING, LIMITS)
               for number, key in keys.items()]
    runner = web.AppRunner(create_app(database_url, "BANKA", wallets, "Asia/Shanghai"))
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Bank(f"http://127.0.0.1:{port}", session, database_url, keys, {})
    finally:
        await runner.cleanup()


async def test_a_payment_moves_money_once(bank: Bank) -> None:
    order = bank.order(1, 2, 300)
    for _ in range(2):  # the same order again: answered settled, nothing moves twice
        status, data = await bank.pay(order)
        assert (status, data["status"]) == (201, "settled"), data
    assert await bank.balances() == {1: OPENING - 300, 2: OPENING + 300, 3: OPENING}
    # Wallet 2 is now 200 from its cap: a late retry is still answered settled.
    assert (await bank.pay(bank.order(3, 2, 200)))[0] == 201
    assert (await bank.pay(order))[0] == 201
    assert await bank.balances() == {1: OPENING - 300, 2: OPENING + 500, 3: OPENING - 200}


async def test_limits_hold_at_their_boundaries(bank: Bank) -> None:
    assert (await bank.pay(bank.order(1, 2, 501)))[1]["code"] == "exceeds_single_limit"
    assert (await bank.pay(bank.order(1, 2, 500)))[0] == 201  # exactly the single limit
    assert (await bank.pay(bank.order(1, 3, 301)))[1]["code"] == "exceeds_daily_limit"
    assert (await bank.pay(bank.order(1, 3, 300)))[0] == 201  # exactly the daily limit
    # Wallet 2 holds 1,500 now, its cap: one fen more cannot come in.
    assert (await bank.pay(bank.order(3, 2, 1)))[1]["code"] == "exceeds_balance_cap"
    assert await bank.balances() == {1: 200, 2: 1_500, 3: 1_300}


async def test_refused_orders_move_nothing(bank: Bank) -> None:
    forged, problem = await bank.pay(bank.order(1, 2, 10, key=SigningKey.generate()))
    assert (forged, problem["rule"]) == (422, "bad_signature")
    foreign, problem = await bank.pay(bank.order(1, 2, 10, bank="BANKB"))
    assert (foreign, problem["code"]) == (422, "other_bank")
    unknown, problem = await bank.pay(bank.order(1, 9, 10))
    assert (unknown, problem["code"]) == (422, "payee_unknown")
    broke, problem = await bank.pay(bank.order(3, 1, 600))
    assert (broke, problem["code"]) == (422, "exceeds_single_limit")
    assert await bank.balances() == {1: OPENING, 2: OPENING, 3: OPENING}
