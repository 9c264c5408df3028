"""Idempotency races at both tiers: 50 concurrent copies of one request have one effect
and all get the same answer; the same id or key with another body is a 409 that moves
nothing. (The central bank's single transfer is raced in
tests/integration/test_central_bank.py; here its issuance and batches, and every money
call of a commercial bank.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.bank_harness import Network, Reply, network, new_id, two_banks
from tests.integration.central_bank_harness import signed_call

pytestmark = pytest.mark.reliability
__all__ = ["network", "two_banks"]  # fixtures

COPIES = 50
CNY = 100


def same_answers(replies: list[Reply], status: int) -> Any:
    """Every copy got `status` and byte-for-byte the same body; that body."""
    assert {r.status for r in replies} == {status}, [r.body for r in replies
                                                     if r.status != status][:3]
    assert len({repr(r.body) for r in replies}) == 1, {repr(r.body) for r in replies}
    return replies[0].body


async def central_positions(network: Network, code: str) -> dict[str, Any]:
    return dict(await network.central_bank.operators[code].client.positions())


async def test_fifty_identical_top_ups_move_money_once(network: Network) -> None:
    """A wallet's top-up sent 50 times at once with one id: one debit of the deposit,
    one credit of the wallet, the same summary for all; then a retry after the fact
    still gets the original answer, and the id with another amount is a 409."""
    wallet = await network.wallet("BANKA", balance=10 * CNY)
    bank = network.banks["BANKA"]
    reply = await bank.teller("POST", f"/v1/teller/deposits/{wallet.deposit_number}/cash-in",
                              {"id": new_id(), "amount": 500 * CNY})
    assert reply.status == 201
    move = {"id": new_id(), "amount": 300 * CNY}
    replies = await asyncio.gather(*(wallet.post("/top-up", move) for _ in range(COPIES)))
    summary = same_answers(list(replies), 200)
    assert summary["balance"] == 310 * CNY
    assert summary["deposit_account"]["balance"] == 200 * CNY
    # Later retries of the settled top-up: the same answer, though the deposit could not
    # cover it again and the wallet could not take it again under its cap.
    again = await wallet.post("/top-up", move)
    assert (again.status, again.body) == (200, summary)
    conflict = await wallet.post("/top-up", move | {"amount": 1 * CNY})
    assert conflict.status == 409
    assert (await wallet.summary()) == summary


async def test_fifty_identical_redemptions_and_cash_ins_move_money_once(
        network: Network) -> None:
    wallet = await network.wallet("BANKA", balance=400 * CNY)
    bank = network.banks["BANKA"]
    move = {"id": new_id(), "amount": 150 * CNY}
    summary = same_answers(list(await asyncio.gather(
        *(wallet.post("/redeem", move) for _ in range(COPIES)))), 200)
    assert (summary["balance"], summary["deposit_account"]["balance"]) == (250 * CNY,
                                                                           150 * CNY)
    assert (await wallet.post("/redeem", move)).body == summary
    assert (await wallet.post("/redeem", move | {"amount": 1})).status == 409

    deposit = {"id": new_id(), "amount": 70 * CNY}
    path = f"/v1/teller/deposits/{wallet.deposit_number}/cash-in"
    same_answers(list(await asyncio.gather(
        *(bank.teller("POST", path, deposit) for _ in range(COPIES)))), 201)
    assert (await bank.teller("POST", path, deposit | {"amount": 1})).status == 409
    assert (await wallet.summary())["deposit_account"]["balance"] == 220 * CNY


async def test_fifty_copies_of_one_signed_order_pay_once(network: Network) -> None:
    """One signed payment order posted 50 times at once pays once; every copy gets the
    same payment back; the sequence number signed into another order is a 409."""
    payer = await network.wallet("BANKA", balance=500 * CNY)
    payee = await network.wallet("BANKA")
    bank = network.banks["BANKA"]
    order = payer.order(payee.address, 123 * CNY)
    payment = same_answers(list(await asyncio.gather(
        *(bank.call("POST", "/v1/payments", raw=order) for _ in range(COPIES)))), 201)
    assert (payment["status"], payment["amount"]) == ("settled", 123 * CNY)
    assert (await payee.summary())["balance"] == 123 * CNY
    assert (await payer.summary())["balance"] == 377 * CNY
    reused = await payer.pay(payee.address, 1 * CNY, sequence=payer.sequence)
    assert reused.status == 409
    assert (await payee.summary())["balance"] == 123 * CNY


async def test_fifty_copies_of_an_order_to_another_bank_settle_once(
        two_banks: Network) -> None:
    """The same order to a wallet of another bank, 50 times at once: one transfer at the
    central bank, one credit at the payee bank, the same answer to every copy (a copy
    that comes while the first is at the central bank waits for its outcome)."""
    alice = await two_banks.wallet("BANKA", balance=500 * CNY)
    bob = await two_banks.wallet("BANKB")
    bank = two_banks.banks["BANKA"]
    before = await central_positions(two_banks, "BANKB")
    order = alice.order(bob.address, 45 * CNY)
    payment = same_answers(list(await asyncio.gather(
        *(bank.call("POST", "/v1/payments", raw=order) for _ in range(COPIES)))), 201)
    assert (payment["status"], payment["amount"]) == ("settled", 45 * CNY)
    for _ in range(100):
        if (await bob.summary())["balance"] == 45 * CNY:
            break
        await asyncio.sleep(0.05)
    assert (await bob.summary())["balance"] == 45 * CNY
    assert (await alice.summary())["balance"] == 455 * CNY
    after = await central_positions(two_banks, "BANKB")
    assert after["ecny"] - before["ecny"] == 45 * CNY
    final = await bank.call("POST", "/v1/payments", raw=order)
    assert (final.status, final.body) == (201, payment)


async def test_fifty_identical_issuances_and_batches_at_the_central_bank(
        network: Network) -> None:
    """At the central bank: one issuance and one batch, each signed 50 times afresh with
    one idempotency key: one effect, identical answers; the key with another body is a
    409 and moves nothing."""
    central_bank = network.central_bank
    operator = await central_bank.add_operator("BANKQ", reserves=1_000_000)
    await central_bank.add_operator("BANKR")

    async def race(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        key = new_id()
        answers = await asyncio.gather(*(
            signed_call(central_bank, operator, "POST", path, body, idempotency_key=key)
            for _ in range(COPIES)))
        assert len({repr(a) for a in answers}) == 1, {repr(a) for a in answers}
        other = {**body, "id": new_id()}
        status, problem = await signed_call(central_bank, operator, "POST", path, other,
                                            idempotency_key=key)
        assert status == 409, problem
        return answers[0]

    status, result = await race("/v1/issuance", {"id": new_id(), "amount": 600_000})
    assert (status, result["status"]) == (201, "settled")
    transfers = [{"id": new_id(), "payee_bank": "BANKR", "amount": 1_000 + i,
                  "payer_ref": f"w{i}", "payee_ref": "r"} for i in range(5)]
    status, result = await race("/v1/transfers/batch", {"transfers": transfers})
    assert (status, result["settled"]) == (200, 5)
    positions = await central_positions(network, "BANKQ")
    assert (positions["reserves"], positions["ecny"]) == (
        400_000, 600_000 - sum(t["amount"] for t in transfers))
    assert (await central_positions(network, "BANKR"))["ecny"] == sum(
        t["amount"] for t in transfers)
    supply = await central_bank.supply()
    assert supply["balanced"], supply
