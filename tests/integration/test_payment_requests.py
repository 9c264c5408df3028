"""Merchant payment requests on real PostgreSQL and Redis: a request's URI and QR code, and
its status as payments arrive. A payment with the request's memo (``req:<id>``) and
amount fills it; the wrong amount or no memo leaves it open; the first payment that fills
it stays its payment; an unpaid request expires; a payment from another bank fills one
too; and a fill whose mark never reached Redis is found in the ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from cbdc.payment_orders import parse_payment_uri, qr_text
from commercial_bank.keys import BANK
from commercial_bank.payment_requests import (
    MEMO_LIMIT,
    PAYMENT_REQUESTS,
    request_id_in,
    request_memo,
)
from tests.integration.bank_harness import (
    Network,
    Reply,
    WalletUnderTest,
    network,
    running_network,
)

__all__ = ["network"]  # fixture

CNY = 100  # fen


async def send(wallet: WalletUnderTest, method: str, path: str, body: Any = None, *,
               token: str | None = None) -> Reply:
    """A call on the wallet's own path (`BankUnderTest.call` checks the answer against
    the bank's OpenAPI document), with the wallet's session unless `token` is given."""
    token = wallet.token if token is None else token
    return await wallet.bank.call(method, f"/v1/wallets/{wallet.address}{path}", body,
                                  token=token)


async def create(merchant: WalletUnderTest, **body: Any) -> dict[str, Any]:
    reply = await send(merchant, "POST", "/payment-requests", body)
    assert reply.status == 201, reply.body
    return dict(reply.body)


async def status(merchant: WalletUnderTest, request_id: str) -> dict[str, Any]:
    reply = await send(merchant, "GET", f"/payment-requests/{request_id}")
    assert reply.status == 200, reply.body
    return dict(reply.body)


async def marked_paid(client: redis.asyncio.Redis, network: Network, code: str,
                      request_id: str, seconds: float = 5.0) -> bool:
    """Whether the announce hook marked the request paid in Redis (status not asked, so
    the ledger is not looked at)."""
    key = network.banks[code].runner.app[PAYMENT_REQUESTS].key(request_id)
    for _ in range(max(1, int(seconds / 0.05))):
        if await client.hexists(key, "paid"):
            return True
        await asyncio.sleep(0.05)
    return False


# ------------------------------------------------------------------- memos
def test_a_request_memo_carries_the_request_id_in_front() -> None:
    assert request_memo("r-1") == "req:r-1"
    assert request_memo("r-1", "Tea for two") == "req:r-1 Tea for two"
    assert request_id_in("req:r-1") == "r-1"
    assert request_id_in("req:r-1 Tea for two") == "r-1"
    for memo in ("", "Tea", "req:", "req: r-1", "tea req:r-1", "req:r-1!", "req:r/1 x",
                 "req:" + "x" * 37):
        assert request_id_in(memo) is None, memo
    with pytest.raises(ValueError, match="not a payment request id"):
        request_memo("r 1")


# ----------------------------------------------------------------- requests
async def test_a_request_is_paid_by_its_memo_and_amount(network: Network,
        redis_client: redis.asyncio.Redis) -> None:
    """Create a request for ¥12.34; a payment of the wrong amount, and one of the right
    amount without the memo, leave it open; the right one fills it; a second right one
    does not replace the first."""
    merchant = await network.wallet("BANKA")
    payer = await network.wallet("BANKA", balance=100 * CNY)
    made = await create(merchant, amount=1234, memo="Tea", expires_in=600)
    assert set(made) == {"uri", "qr", "request_id", "expires"}
    request = parse_payment_uri(made["uri"])
    assert (str(request.payee), request.amount, request.memo, request.expires,
            request.request_id) == (merchant.address, 1234, "Tea", made["expires"],
                                    made["request_id"])
    assert abs(made["expires"] - (int(time.time()) + 600)) <= 2
    assert made["qr"] == qr_text(made["uri"])
    request_id = made["request_id"]
    assert (await status(merchant, request_id))["status"] == "open"

    memo = request_memo(request_id, "Tea")
    assert (await payer.pay(merchant.address, 1233, memo=memo)).status == 201
    assert (await payer.pay(merchant.address, 1234, memo="Tea")).status == 201
    assert not await marked_paid(redis_client, network, "BANKA", request_id, seconds=0.5)
    assert (await status(merchant, request_id))["status"] == "open"

    first = await payer.pay(merchant.address, 1234, memo=memo)
    assert first.status == 201, first.body
    assert await marked_paid(redis_client, network, "BANKA", request_id)
    second = await payer.pay(merchant.address, 1234, memo=memo)
    assert second.status == 201, second.body  # a request never stops a payment
    await asyncio.sleep(0.3)
    assert await status(merchant, request_id) == {
        "request_id": request_id, "status": "paid", "amount": 1234, "memo": "Tea",
        "expires": made["expires"], "paid_by": payer.address,
        "payment_id": first.body["id"]}


async def test_a_request_without_an_amount_takes_any(network: Network,
        redis_client: redis.asyncio.Redis) -> None:
    merchant = await network.wallet("BANKA")
    payer = await network.wallet("BANKA", balance=100 * CNY)
    made = await create(merchant)
    assert parse_payment_uri(made["uri"]).amount is None
    assert made["expires"] - int(time.time()) in range(898, 902)  # 15 minutes by default
    reply = await payer.pay(merchant.address, 777, memo=request_memo(made["request_id"]))
    assert reply.status == 201, reply.body
    assert await marked_paid(redis_client, network, "BANKA", made["request_id"])
    answer = await status(merchant, made["request_id"])
    assert (answer["status"], answer["amount"], answer["payment_id"]) == (
        "paid", None, reply.body["id"])


class ShiftedClock:
    """The bank's clock: real time plus an offset the test moves forward, so a request
    expires when the test says, however slowly a busy machine runs the steps before."""

    def __init__(self) -> None:
        self.offset_ns = 0

    def __call__(self) -> int:
        return time.time_ns() + self.offset_ns


async def test_an_unpaid_request_expires(make_database: Callable[[], Awaitable[str]],
        redis_url: str, redis_client: redis.asyncio.Redis, tmp_path: Path) -> None:
    """After its expiry a request reads expired, and a payment then does not fill it."""
    clock = ShiftedClock()
    async with running_network(make_database, redis_url, tmp_path, clock=clock) as network:
        merchant = await network.wallet("BANKA")
        payer = await network.wallet("BANKA", balance=100 * CNY)
        made = await create(merchant, amount=500, expires_in=60)
        assert (await status(merchant, made["request_id"]))["status"] == "open"
        clock.offset_ns = 61 * 1_000_000_000
        assert (await status(merchant, made["request_id"]))["status"] == "expired"
        reply = await payer.pay(merchant.address, 500, memo=request_memo(made["request_id"]))
        assert reply.status == 201, reply.body
        assert not await marked_paid(redis_client, network, "BANKA", made["request_id"],
                                     seconds=0.5)
        assert (await status(merchant, made["request_id"]))["status"] == "expired"


async def test_the_ledger_finds_a_fill_whose_mark_never_reached_redis(
        network: Network, redis_client: redis.asyncio.Redis) -> None:
    """If the announce hook never ran (Redis away at that moment), the status call finds
    the payment in the wallet's history, and keeps it from then on."""
    merchant = await network.wallet("BANKA")
    payer = await network.wallet("BANKA", balance=100 * CNY)
    made = await create(merchant, amount=250, memo="Cake")
    bank = network.banks["BANKA"].runner.app[BANK]
    notify, bank.notify = bank.notify, None
    try:
        wrong = await payer.pay(merchant.address, 251,
                                memo=request_memo(made["request_id"], "Cake"))
        assert wrong.status == 201, wrong.body
        right = await payer.pay(merchant.address, 250,
                                memo=request_memo(made["request_id"], "Cake"))
        assert right.status == 201, right.body
    finally:
        bank.notify = notify
    assert not await marked_paid(redis_client, network, "BANKA", made["request_id"], seconds=0.3)
    answer = await status(merchant, made["request_id"])
    assert (answer["status"], answer["paid_by"], answer["payment_id"]) == (
        "paid", payer.address, right.body["id"])
    assert await marked_paid(redis_client, network, "BANKA", made["request_id"], seconds=0.1)


async def test_requests_belong_to_their_wallet_and_are_checked(network: Network) -> None:
    merchant = await network.wallet("BANKA")
    other = await network.wallet("BANKA")
    made = await create(merchant, amount=100)
    reply = await send(merchant, "GET", f"/payment-requests/{made['request_id']}",
                       token=other.token)
    assert reply.status == 401
    reply = await send(merchant, "POST", "/payment-requests", {"amount": 1},
                       token=other.token)
    assert reply.status == 401
    reply = await send(other, "GET", f"/payment-requests/{made['request_id']}")
    assert reply.status == 404
    for name in ("not-a-request-id", "bad*id"):
        assert (await send(merchant, "GET", f"/payment-requests/{name}")).status == 404
    for body, field in (({"amount": 0}, "$.amount"), ({"amount": 1.5}, "$.amount"),
                        ({"expires_in": 0}, "$.expires_in"),
                        ({"expires_in": 8 * 86_400}, "$.expires_in"),
                        ({"memo": "x" * (MEMO_LIMIT + 1)}, "$.memo"),
                        ({"memo": "tab\there"}, "$.memo"),
                        ({"memo": "茶" * 30}, "$.memo"),  # too long for a QR code
                        ({"payee": merchant.address}, "$.payee")):
        reply = await send(merchant, "POST", "/payment-requests", body)
        assert (reply.status, reply.body.get("field")) == (422, field), (body, reply.body)
    made = await create(merchant, memo="x" * MEMO_LIMIT)
    memo = request_memo(made["request_id"], "x" * MEMO_LIMIT)
    assert len(memo) == 140  # exactly what a payment order's memo holds


async def test_a_request_is_paid_from_another_bank(
        make_database: Callable[[], Awaitable[str]], redis_url: str, tmp_path: Path,
        redis_client: redis.asyncio.Redis) -> None:
    """The memo travels through the central bank: a merchant at bank B is paid by a
    wallet at bank A."""
    async with running_network(make_database, redis_url, tmp_path,
                               codes=("BANKA", "BANKB")) as network:
        payer = await network.wallet("BANKA", balance=100 * CNY)
        merchant = await network.wallet("BANKB")
        made = await create(merchant, amount=4321, memo="Noodles")
        reply = await payer.pay(merchant.address, 4321,
                                memo=request_memo(made["request_id"], "Noodles"))
        assert reply.status == 201, reply.body
        assert await marked_paid(redis_client, network, "BANKB", made["request_id"], seconds=10)
        answer = await status(merchant, made["request_id"])
        assert (answer["status"], answer["paid_by"], answer["payment_id"]) == (
            "paid", payer.address, reply.body["id"])
        await asyncio.sleep(0.3)  # let bank B's last events settle before shutting down
