"""A commercial bank's wallet API on real PostgreSQL and Redis, settling its float with a
real central bank: wallets, classes and limits at their boundaries, deposits, top-up and
redemption, signed same-bank payments. After every test each ledger verifies and the
bank's e-CNY (wallets + float + in flight) equals its position at the central bank."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from cbdc.processes import unused_port
from cbdc.settings import Settings
from cbdc.storage import Endpoints
from commercial_bank.keys import BANK
from commercial_bank.run import database_name, start_bank
from tests.conftest import drop_database
from tests.integration.bank_harness import (
    Network,
    assert_reconciled,
    network,
    new_id,
    running_network,
    two_banks,
)

__all__ = ["network", "two_banks"]  # fixtures

CNY = 100  # fen


async def test_open_top_up_pay_and_redeem(network: Network) -> None:
    """A class 4 wallet opened with a phone number is topped up from its deposit account
    (the bank asks the central bank for e-CNY), pays another wallet with a signed order,
    and redeems back to deposits."""
    alice = await network.wallet("BANKA", balance=800 * CNY)
    bob = await network.wallet("BANKA")
    summary = await alice.summary()
    assert (summary["class"], summary["balance"], summary["status"]) == (4, 800 * CNY, "active")
    assert summary["address"].startswith("BANKA-")

    reply = await alice.pay(bob.address, 123 * CNY + 45, memo="lunch")
    assert reply.status == 201, reply.body
    assert reply.body["status"] == "settled"
    assert (await bob.summary())["balance"] == 123 * CNY + 45
    history = await bob.get("/history")
    assert [(e["direction"], e["amount"], e.get("memo")) for e in history.body["entries"]] == [
        ("in", 123 * CNY + 45, "lunch")]
    assert history.body["entries"][0]["counterparty"] == alice.address

    reply = await alice.post("/redeem", {"id": new_id(), "amount": 100 * CNY})
    assert reply.status == 200, reply.body
    summary = await alice.summary()
    assert summary["balance"] == 800 * CNY - 123 * CNY - 45 - 100 * CNY
    assert summary["deposit_account"]["balance"] == 100 * CNY


async def test_class_4_limits_at_their_boundaries(network: Network) -> None:
    """Class 4 (2020 preset): 500 CNY a payment, 1,000 a day, 1,000 balance cap. Exactly
    at each passes; one fen over fails naming the limit and when it resets."""
    payer = await network.wallet("BANKA", balance=1_000 * CNY)
    payee = await network.wallet("BANKA")
    reply = await payer.pay(payee.address, 500 * CNY + 1)
    assert (reply.status, reply.body["code"]) == (422, "exceeds_single_limit")
    assert "single-payment limit of ¥500.00" in reply.body["detail"]
    assert (await payer.pay(payee.address, 500 * CNY)).status == 201
    assert (await payer.pay(payee.address, 500 * CNY)).status == 201
    summary = await payee.summary()
    assert summary["balance"] == 1_000 * CNY  # exactly at the balance cap

    other = await network.wallet("BANKA", balance=10 * CNY)
    reply = await other.pay(payee.address, 1)
    assert (reply.status, reply.body["code"]) == (422, "exceeds_balance_cap")

    reply = await payee.pay(other.address, 1)  # payee is fine; the payer is spent out
    assert reply.status == 201
    await payer.post("/deposit-account")
    spent = await payer.summary()
    assert spent["limits"]["daily"]["used"] == 1_000 * CNY
    reply = await payer.post("/top-up", {"id": new_id(), "amount": 1})
    assert reply.status == 422  # nothing left in the deposit account
    reply = await payer.pay(other.address, 1)
    assert (reply.status, reply.body["code"]) == (422, "insufficient_funds")


async def test_upgrade_raises_limits_and_downgrade_lowers_them(network: Network) -> None:
    """With a resident ID a wallet becomes class 3; a bad ID number is refused naming the
    field; a downgrade applies the lower limits at once."""
    wallet = await network.wallet("BANKA", balance=900 * CNY)
    peer = await network.wallet("BANKA")
    reply = await wallet.post("/class", {"class": 3, "name": "Zhang San",
                                         "resident_id": "11010519491231002Y"})
    assert (reply.status, reply.body["field"]) == (422, "resident_id")
    from stdnum.cn import ric

    body = "11010519900307001"
    valid = body + ric.calc_check_digit(body + "?")  # the library wants all 18 places
    reply = await wallet.post("/class", {"class": 3, "name": "Zhang San", "resident_id": valid})
    assert reply.status == 200, reply.body
    assert reply.body["class"] == 3
    assert reply.body["limits"]["single"] == 2_000 * CNY
    reply = await wallet.bank.teller("POST", f"/v1/teller/deposits/{wallet.deposit_number}"
                                     "/cash-in", {"id": new_id(), "amount": 1_000 * CNY})
    assert reply.status == 201
    reply = await wallet.post("/top-up", {"id": new_id(), "amount": 1_000 * CNY})
    assert (reply.status, reply.body["balance"]) == (200, 1_900 * CNY)  # over class 4's cap
    assert (await wallet.pay(peer.address, 600 * CNY)).status == 201
    reply = await wallet.post("/class", {"class": 1})
    assert reply.status == 403  # class 1 only at a branch
    reply = await wallet.post("/class", {"class": 4})
    assert reply.status == 200
    fresh = await network.wallet("BANKA")
    reply = await wallet.pay(fresh.address, 401 * CNY)  # 1,001 CNY today
    assert reply.status == 422, reply.body
    assert reply.body["code"] == "exceeds_daily_limit"
    assert "resets at" in reply.body["detail"]


async def test_replayed_expired_and_tampered_orders_are_refused(network: Network) -> None:
    """The same signed order twice pays once; an expired order, an order with any field
    changed, and a reused sequence number for another order are all refused."""
    payer = await network.wallet("BANKA", balance=500 * CNY)
    payee = await network.wallet("BANKA")
    order = payer.order(payee.address, 10 * CNY)
    first = await network.banks["BANKA"].call("POST", "/v1/payments", raw=order)
    again = await network.banks["BANKA"].call("POST", "/v1/payments", raw=order)
    assert (first.status, again.status) == (201, 201)
    assert first.body == again.body
    assert (await payee.summary())["balance"] == 10 * CNY

    tampered = json.loads(order)
    tampered["order"]["amount"] = 99 * CNY
    reply = await network.banks["BANKA"].call("POST", "/v1/payments",
                                              raw=json.dumps(tampered).encode())
    assert (reply.status, reply.body["rule"]) == (422, "bad_signature")
    reply = await payer.pay(payee.address, 1, expires_in=-1)
    assert (reply.status, reply.body["rule"]) == (422, "expired")
    reply = await payer.pay(payee.address, 2 * CNY, sequence=1)
    assert reply.status == 409
    assert (await payee.summary())["balance"] == 10 * CNY


async def test_frozen_lost_and_closed_wallets(network: Network) -> None:
    """A frozen wallet cannot pay or be paid until unfrozen; a lost wallet stays frozen
    and its sessions end; closing moves the balance to the deposit account."""
    wallet = await network.wallet("BANKA", balance=300 * CNY)
    peer = await network.wallet("BANKA", balance=50 * CNY)
    assert (await wallet.post("/status", {"status": "frozen"})).status == 200
    reply = await wallet.pay(peer.address, 1)
    assert (reply.status, reply.body["code"]) == (422, "wallet_frozen")
    reply = await peer.pay(wallet.address, 1)
    assert (reply.status, reply.body["code"]) == (422, "payee_cannot_receive")
    assert (await wallet.post("/status", {"status": "active"})).status == 200
    assert (await wallet.pay(peer.address, 1)).status == 201

    assert (await peer.post("/status", {"status": "lost"})).status == 200
    assert (await peer.get()).status == 401  # its sessions ended
    await peer.login()
    assert (await peer.post("/status", {"status": "active"})).status == 403

    reply = await wallet.post("/close")
    assert (reply.status, reply.body["status"]) == (200, "closed")
    assert reply.body["deposit_account"]["balance"] == 300 * CNY - 1


async def test_bad_input_names_the_field(network: Network) -> None:
    """Malformed requests get a 4xx problem naming the field; nothing moves."""
    wallet = await network.wallet("BANKA", balance=100 * CNY)
    bank = network.banks["BANKA"]
    assert (await bank.call("POST", "/v1/wallets", {"public_key_pem": "nope",
                                                    "phone": "13800138000"})).status == 422
    reply = await bank.call("POST", "/v1/wallets", {
        "public_key_pem": wallet.key.public.to_pem().decode(), "phone": "12345"})
    assert (reply.status, reply.body["field"]) == (422, "phone")
    reply = await wallet.post("/top-up", {"id": new_id(), "amount": 1.5})
    assert (reply.status, reply.body["field"]) == (422, "$.amount")
    reply = await bank.call("POST", "/v1/payments", raw=b"{not json")
    assert reply.status in (400, 422)
    from cbdc.addresses import address_for

    reply = await wallet.pay(address_for("BANKA", 1), 1)
    assert (reply.status, reply.body["field"]) == (422, "order.payee")
    reply = await bank.call("GET", "/v1/wallets/BANKA-000000000001-00")
    assert reply.status in (401, 422)
    reply = await bank.call("GET", f"/v1/receivable/{wallet.address}?amount=&amount=-5")
    assert (reply.status, reply.body["field"], reply.body["rule"]) == (422, "amount", "single")
    # Given empty, a parameter is not taken for absent (and its default).
    reply = await bank.call("GET", f"/v1/receivable/{wallet.address}?amount=")
    assert (reply.status, reply.body["field"]) == (422, "amount")
    assert (await wallet.summary())["balance"] == 100 * CNY


async def test_concurrent_payments_never_overspend(network: Network) -> None:
    """Many signed orders at once from one wallet: the ones that settle never take the
    balance below zero, and every settled one is in the payee's history once."""
    payer = await network.wallet("BANKA", balance=1_000 * CNY)
    payees = [await network.wallet("BANKA") for _ in range(3)]
    replies = await asyncio.gather(*(payer.pay(payees[i % 3].address, 90 * CNY)
                                     for i in range(15)))
    settled = [r for r in replies if r.status == 201]
    assert len(settled) == 11  # 1,000 CNY a day at 90 each: eleven fit, the rest refused
    assert all(r.body["code"] in ("exceeds_daily_limit", "insufficient_funds")
               for r in replies if r.status != 201)
    total = sum([(await p.summary())["balance"] for p in payees])
    assert total == 11 * 90 * CNY
    assert (await payer.summary())["balance"] == 1_000 * CNY - total


async def wait_for_balance(wallet: object, expected: int, seconds: float = 5.0) -> int:
    balance = -1
    for _ in range(int(seconds / 0.05)):
        balance = (await wallet.summary())["balance"]  # type: ignore[attr-defined]
        if balance == expected:
            break
        await asyncio.sleep(0.05)
    return balance


async def test_payment_to_another_bank_settles_through_the_central_bank(
        two_banks: Network) -> None:
    """Alice at bank A pays Bob at bank B: A debits Alice, the central bank moves e-CNY
    from A's position to B's, and B credits Bob from its events feed; both histories
    show the payment, and the same order sent again pays nothing more."""
    alice = await two_banks.wallet("BANKA", balance=500 * CNY)
    bob = await two_banks.wallet("BANKB")
    order = alice.order(bob.address, 120 * CNY, memo="rent share")
    reply = await two_banks.banks["BANKA"].call("POST", "/v1/payments", raw=order)
    assert reply.status == 201, reply.body
    assert reply.body["status"] == "settled"
    assert await wait_for_balance(bob, 120 * CNY) == 120 * CNY
    assert (await alice.summary())["balance"] == 380 * CNY
    again = await two_banks.banks["BANKA"].call("POST", "/v1/payments", raw=order)
    assert (again.status, again.body["status"]) == (201, "settled")
    history = (await bob.get("/history")).body["entries"]
    assert [(e["direction"], e["amount"], e["counterparty"], e["memo"]) for e in history] == [
        ("in", 120 * CNY, alice.address, "rent share")]
    await asyncio.sleep(0.2)
    assert (await bob.summary())["balance"] == 120 * CNY
    # Bank A's /metrics times each stage of the payment once (the replay went to none).
    lines = (await two_banks.banks["BANKA"].call("GET", "/metrics")).body.splitlines()
    for stage in ("payee_check", "hold", "settlement", "post"):
        assert f'cbdc_interbank_stage_seconds_count{{stage="{stage}"}} 1.0' in lines


async def test_a_payee_that_cannot_receive_fails_before_money_moves(two_banks: Network) -> None:
    """Paying a frozen, unknown or full wallet at another bank is refused with the reason,
    and the payer keeps the money."""
    alice = await two_banks.wallet("BANKA", balance=900 * CNY)
    bob = await two_banks.wallet("BANKB", balance=950 * CNY)
    reply = await alice.pay(bob.address, 51 * CNY)  # would take Bob over 1,000 CNY
    assert (reply.status, reply.body["code"]) == (422, "payee_cannot_receive")
    assert "balance cap" in reply.body["detail"]
    await bob.post("/status", {"status": "frozen"})
    reply = await alice.pay(bob.address, 1)
    assert (reply.status, reply.body["code"]) == (422, "payee_cannot_receive")
    from cbdc.addresses import address_for

    reply = await alice.pay(address_for("BANKB", 999_999), 1)
    assert (reply.status, reply.body["code"]) == (422, "payee_cannot_receive")
    assert (await alice.summary())["balance"] == 900 * CNY


async def test_many_payments_to_another_bank_at_once_each_get_their_own_answer(
        two_banks: Network) -> None:
    """Payments to another bank sent together (their payee checks and settlements go to
    the other bank and the central bank in batches when they queue up): each is answered
    as if sent alone, a payee that cannot receive is refused before money moves, and the
    money that moved is exactly what the settled answers say."""
    from cbdc.addresses import address_for

    payers = [await two_banks.wallet("BANKA", balance=100 * CNY) for _ in range(8)]
    bob = await two_banks.wallet("BANKB", balance=990 * CNY)
    carol = await two_banks.wallet("BANKB")
    frozen = await two_banks.wallet("BANKB")
    await frozen.post("/status", {"status": "frozen"})
    unknown = address_for("BANKB", 999_999)
    plan = []  # (payer, payee address, amount, expected status, expected code)
    for i, payer in enumerate(payers):
        plan.append((payer, carol.address, (i + 1) * CNY, 201, None))
        plan.append((payer, frozen.address, CNY, 422, "payee_cannot_receive"))
        plan.append((payer, unknown, CNY, 422, "payee_cannot_receive"))
        plan.append((payer, bob.address, 11 * CNY, 422, "payee_cannot_receive"))  # over cap
    for _ in range(3):
        replies = await asyncio.gather(*(payer.pay(payee, amount)
                                         for payer, payee, amount, _, _ in plan))
        for (_, payee, amount, status, code), reply in zip(plan, replies, strict=True):
            assert reply.status == status, (payee, amount, reply.body)
            if code is not None:
                assert reply.body["code"] == code
            else:
                assert reply.body["status"] == "settled"
        plan = [(p, payee, amount, status, code) for p, payee, amount, status, code in plan
                if status == 201]
    sent = sum(i + 1 for i in range(8)) * CNY * 3
    assert await wait_for_balance(carol, sent) == sent
    assert sum([(await p.summary())["balance"] for p in payers]) == 800 * CNY - sent
    assert (await bob.summary())["balance"] == 990 * CNY
    assert (await frozen.summary())["balance"] == 0


class HandClock:
    """The banks' clock, moved by the test (ns since the epoch)."""

    def __init__(self, local: datetime.datetime) -> None:
        self.now = int(local.timestamp()) * 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def set(self, local: datetime.datetime) -> None:
        self.now = int(local.timestamp()) * 1_000_000_000

    @property
    def seconds(self) -> int:
        return self.now // 1_000_000_000


BEIJING = ZoneInfo("Asia/Shanghai")


async def test_daily_limit_rolls_over_at_midnight_and_yearly_at_new_year(
        make_database: Callable[[], Awaitable[str]], redis_url: str, tmp_path: Path) -> None:
    """A class 4 wallet spends its 1,000 CNY day by 23:59:59 Beijing time and is refused
    one fen more; at 00:00:00 it may pay again. Spending 10,000 CNY over ten days uses up
    the year; at New Year it may pay again."""
    clock = HandClock(datetime.datetime(2026, 12, 21, 9, 0, tzinfo=BEIJING))
    async with running_network(make_database, redis_url, tmp_path, clock=clock) as network:
        payer = await network.wallet("BANKA")
        payees = [await network.wallet("BANKA") for _ in range(11)]
        await payer.post("/deposit-account")
        cash = await network.banks["BANKA"].teller(
            "POST", f"/v1/teller/deposits/{(await payer.summary())['deposit_account']['number']}"
            "/cash-in", {"id": new_id(), "amount": 11_000 * CNY})
        assert cash.status == 201
        start = datetime.datetime(2026, 12, 12, 23, 59, 59, tzinfo=BEIJING)
        for day in range(10):  # every other day, so the midnight check has a day to itself
            clock.set(start + datetime.timedelta(days=2 * day))
            reply = await payer.post("/top-up", {"id": new_id(), "amount": 1_000 * CNY})
            assert reply.status == 200, reply.body
            # 10,000 CNY in all with the fen paid just after midnight below.
            amounts = (500 * CNY, 500 * CNY - 1 if day == 9 else 500 * CNY)
            for amount in amounts:
                reply = await payer.pay(payees[day].address, amount, now=clock.seconds)
                assert reply.status == 201, (day, reply.body)
            if day == 0:
                await payer.post("/top-up", {"id": new_id(), "amount": 1})
                reply = await payer.pay(payees[10].address, 1, now=clock.seconds)
                assert (reply.status, reply.body["code"]) == (422, "exceeds_daily_limit")
                clock.set(datetime.datetime(2026, 12, 13, 0, 0, 0, tzinfo=BEIJING))
                reply = await payer.pay(payees[10].address, 1, now=clock.seconds)
                assert reply.status == 201, reply.body  # a new day
                summary = await payer.summary()
                assert summary["limits"]["daily"]["used"] == 1
                assert summary["limits"]["yearly"]["used"] == 1_000 * CNY + 1
        # Ten days in, across the year end: 2026 ran out on 31 December...
        clock.set(datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=BEIJING))
        assert (await payer.summary())["limits"]["yearly"]["left"] == 0
        await payer.post("/top-up", {"id": new_id(), "amount": 100})
        reply = await payer.pay(payees[10].address, 1, now=clock.seconds)
        assert (reply.status, reply.body["code"]) == (422, "exceeds_yearly_limit")
        assert "resets at 2027-01-01T00:00:00+08:00" in reply.body["detail"]
        # ...and 2027 starts fresh.
        clock.set(datetime.datetime(2027, 1, 1, 0, 0, 0, tzinfo=BEIJING))
        reply = await payer.pay(payees[10].address, 1, now=clock.seconds)
        assert reply.status == 201, reply.body
        summary = await payer.summary()
        assert (summary["limits"]["daily"]["used"], summary["limits"]["yearly"]["used"]) == (1, 1)
        await assert_reconciled(network)


async def test_a_payment_made_while_the_central_bank_is_down_settles_when_it_is_back(
        two_banks: Network) -> None:
    """With the central bank unreachable, a payment to another bank is accepted as
    pending: the payer's money is held, not lost and not moved. When the central bank
    returns, the bank settles it by retrying with the same id; it settles once."""
    alice = await two_banks.wallet("BANKA", balance=300 * CNY)
    bob = await two_banks.wallet("BANKB")
    await two_banks.central_bank.stop()
    try:
        reply = await alice.pay(bob.address, 75 * CNY, memo="while down")
        assert reply.status == 201, reply.body
        assert reply.body["status"] == "pending"
        summary = await alice.summary()
        assert (summary["balance"], summary["available"]) == (300 * CNY, 225 * CNY)
        assert (await bob.summary())["balance"] == 0
    finally:
        await two_banks.central_bank.start()
    assert await wait_for_balance(bob, 75 * CNY, seconds=15) == 75 * CNY
    summary = await alice.summary()
    assert (summary["balance"], summary["available"]) == (225 * CNY, 225 * CNY)
    history = (await alice.get("/history")).body["entries"]
    assert [(e["direction"], e["amount"]) for e in history if e["kind"] == "payment"] == [
        ("out", 75 * CNY)]


async def test_metrics_count_requests_and_ledger_commits(network: Network) -> None:
    """After a payment, /metrics shows the HTTP requests by route and status and the
    ledger writer's commits (Prometheus text, as the document says)."""
    payer = await network.wallet("BANKA", balance=50 * CNY)
    payee = await network.wallet("BANKA")
    assert (await payer.pay(payee.address, 5 * CNY)).status == 201
    reply = await network.banks["BANKA"].call("GET", "/metrics")
    assert reply.status == 200
    lines = reply.body.splitlines()
    assert 'cbdc_http_requests_total{route="/v1/payments",status="201"} 1.0' in lines
    commits = [line for line in lines if line.startswith("cbdc_ledger_commits_total ")]
    assert commits, reply.body
    assert float(commits[0].split()[1]) >= 1


async def test_public_calls_and_the_document(network: Network) -> None:
    """/health, /openapi.json and the receivable check other banks ask: each answer is
    what the document says (the harness checks), and the document names this bank."""
    bank = network.banks["BANKA"]
    wallet = await network.wallet("BANKA", balance=990 * CNY)
    reply = await bank.call("GET", "/health")
    assert (reply.status, reply.body["bank"]) == (200, "BANKA")
    reply = await bank.call("GET", "/openapi.json")
    assert reply.status == 200
    assert reply.body["openapi"] == "3.1.0"
    assert reply.body["components"]["schemas"]["OwnAddress"]["pattern"].startswith("^BANKA-")
    reply = await bank.call("GET", f"/v1/receivable/{wallet.address}?amount={10 * CNY}")
    assert reply.body == {"receivable": True, "reason": None}
    reply = await bank.call("GET", f"/v1/receivable/{wallet.address}?amount={10 * CNY + 1}")
    assert reply.body["receivable"] is False
    assert "balance cap" in reply.body["reason"]
    reply = await bank.call("GET", "/v1/receivable/BANKB-000000000001-00")
    assert (reply.status, reply.body["field"]) == (422, "address")
    reply = await bank.call("GET", f"/v1/receivable/{wallet.address}?amount=0")
    assert (reply.status, reply.body["field"]) == (422, "amount")
    # Many checks at once: each answer is the one GET gives.
    from cbdc.addresses import address_for

    checks = [(wallet.address, 10 * CNY), (wallet.address, 10 * CNY + 1),
              (address_for("BANKA", 999_999), 1), (address_for("BANKB", 1), 1)]
    reply = await bank.call("POST", "/v1/receivable", {"checks": [
        {"address": address, "amount": amount} for address, amount in checks]})
    assert reply.status == 200, reply.body
    singles = [(await bank.call("GET", f"/v1/receivable/{address}?amount={amount}")).body
               for address, amount in checks]
    assert reply.body["results"] == singles
    assert [r["receivable"] for r in singles] == [True, False, False, False]
    reply = await bank.call("POST", "/v1/receivable", {"checks": [
        {"address": wallet.address, "amount": 1},
        {"address": "BANKB-000000000001-00", "amount": 1}]})
    assert (reply.status, reply.body["field"]) == (422, "$.checks[1].address")
    reply = await bank.call("POST", "/v1/receivable", {"checks": []})
    assert reply.status == 422


async def test_error_answers_are_documented_problems(network: Network) -> None:
    """Refusals the other tests do not reach: each is an RFC 9457 problem with a status
    the document gives for that operation (the harness checks every answer)."""
    bank = network.banks["BANKA"]
    wallet = await network.wallet("BANKA", balance=100 * CNY)
    # 400: no body, or not JSON; 413: too large.
    assert (await bank.call("POST", "/v1/wallets", raw=b"")).status == 400
    assert (await bank.call("POST", "/v1/sessions", raw=b"{nope")).status == 400
    assert (await wallet.post("/top-up")).status == 400
    big = b'{"x": "' + b"a" * 70_000 + b'"}'
    assert (await bank.call("POST", "/v1/payments", raw=big)).status == 413
    assert (await bank.call("POST", "/v1/sessions/challenge", raw=big)).status == 413
    # 409: a key that already holds a wallet; an id reused for another amount.
    reply = await bank.call("POST", "/v1/wallets", {
        "public_key_pem": wallet.key.public.to_pem().decode(), "phone": "13800138000"})
    assert reply.status == 409
    move = {"id": new_id(), "amount": 1 * CNY}
    assert (await wallet.post("/redeem", move)).status == 200
    assert (await wallet.post("/redeem", move | {"amount": 2 * CNY})).status == 409
    # 401: a bad login, a wrong session, no teller token.
    reply = await bank.call("POST", "/v1/sessions/challenge", {"address": wallet.address})
    reply = await bank.call("POST", "/v1/sessions", {
        "address": wallet.address, "challenge": reply.body["challenge"], "signature": "AAAA"})
    assert reply.status == 401
    other = await network.wallet("BANKA")
    reply = await bank.call("GET", f"/v1/wallets/{wallet.address}", token=other.token)
    assert reply.status == 401
    reply = await bank.call("GET", f"/v1/wallets/{wallet.address}", token="x" * 43)
    assert reply.status == 401
    reply = await bank.call("POST", f"/v1/teller/deposits/{wallet.deposit_number}/cash-in",
                            {"id": new_id(), "amount": 1})
    assert reply.status == 401
    # 404: a wallet this bank does not have.
    from cbdc.addresses import address_for

    nobody = address_for("BANKA", 999_999)
    reply = await bank.call("POST", "/v1/sessions", {
        "address": nobody, "challenge": "A" * 22, "signature": "AAAA"})
    assert reply.status == 404
    reply = await bank.teller("POST", f"/v1/teller/wallets/{nobody}/class", {"class": 2})
    assert reply.status == 404
    # 422: parameters and ledger refusals.
    for query in ("direction=sideways", "limit=0", "after=x", "since=yesterday",
                  "direction=", "limit=", "after=", "until="):
        reply = await wallet.get(f"/history?{query}")
        assert reply.status == 422, query
    reply = await bank.teller("POST", "/v1/teller/deposits/12x/cash-in",
                              {"id": new_id(), "amount": 1})
    assert (reply.status, reply.body["field"]) == (422, "number")
    reply = await bank.teller("POST", "/v1/teller/deposits/987654/cash-in",
                              {"id": new_id(), "amount": 1})
    assert (reply.status, reply.body["code"]) == (422, "credit_account_not_found")
    reply = await other.post("/top-up", {"id": new_id(), "amount": 1})
    assert (reply.status, reply.body["code"]) == (422, "no_deposit_account")
    # The teller may raise a wallet to class 1, which the wallet itself may not.
    reply = await bank.teller("POST", f"/v1/teller/wallets/{other.address}/class", {
        "class": 1, "name": "Li Si", "resident_id": "110105199003070017", "bank_card": True,
        "in_person": True})
    assert (reply.status, reply.body["class"]) == (200, 1), reply.body
    history = await wallet.get("/history?direction=out&limit=1")
    assert history.status == 200
    assert history.body["next_after"] is not None
    page = await wallet.get(f"/history?direction=out&after={history.body['next_after']}")
    assert page.status == 200


async def test_a_refused_top_up_asks_nothing_of_the_central_bank(network: Network) -> None:
    """A top-up the deposit account cannot cover, or that would break the wallet's cap,
    is refused before the bank swaps any reserves for e-CNY; absurd history cursors are
    a 422, not a server error."""
    wallet = await network.wallet("BANKA", balance=1 * CNY)
    operator = network.central_bank.operators["BANKA"]
    before = await operator.client.positions()
    reply = await wallet.post("/top-up", {"id": new_id(), "amount": 5_000_000 * CNY})
    assert (reply.status, reply.body["code"]) == (422, "insufficient_funds")
    assert await operator.client.positions() == before
    reply = await wallet.get("/history?after=99999999999999999999")
    assert (reply.status, reply.body["field"]) == (422, "after")
    reply = await wallet.get("/history?since=99999999999999999999")
    assert (reply.status, reply.body["field"]) == (422, "since")


async def test_the_cbdc_batch_settings_bound_a_banks_ledger_batches(
        pg_server_url: str, redis_url: str, tmp_path: Path, clean_env: None) -> None:
    """`CBDC_BATCH_MAX_EVENTS` and `CBDC_BATCH_MAX_WAIT_MS` bound the batches of a bank's
    ledger writer as they do the central bank's (the bank started the way
    `cbdc commercial-bank` starts it)."""
    settings = Settings(batch_max_events=300, batch_max_wait_ms=2.5, data_dir=tmp_path,
                        database_prefix=f"cbdc_b{os.getpid()}_")
    runner = await start_bank(settings, Endpoints(pg_server_url, redis_url, embedded=False),
                              "BANKA", unused_port(), central_bank_url="http://127.0.0.1:9",
                              peers={})
    try:
        writer = runner.app[BANK].ledger
        assert (writer.max_events, writer.max_wait) == (300, 0.0025)
    finally:
        await runner.cleanup()
        admin = await asyncpg.connect(pg_server_url)
        try:
            await drop_database(admin, database_name(settings, "BANKA"))
        finally:
            await admin.close()
