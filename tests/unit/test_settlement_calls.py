"""commercial_bank.interbank.SettlementCalls: transfers to the central bank, several in
one call when they queue up, each answered as a call of its own would be."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from cbdc.bank_client import CentralBankError, CentralBankUnreachable
from cbdc.wire import InterbankTransfer, id_to_text
from commercial_bank.interbank import SettlementCalls


def item(number: int, amount: int = 100, payee_bank: str = "BANKB") -> InterbankTransfer:
    return InterbankTransfer(id=id_to_text(number), payee_bank=payee_bank, amount=amount,
                             payer_ref=f"BANKA-{number}", payee_ref="BANKB-1")


class FakeCentralBank:
    """Answers like the central bank: amounts over `limit` are refused (exceeds_credits),
    payee bank "NOPE" is unknown; `batch_error` makes every batch call fail as a whole."""

    def __init__(self, limit: int = 1_000) -> None:
        self.limit = limit
        self.singles: list[str] = []
        self.batches: list[list[str]] = []
        self.batch_error: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    def _refusal(self, payee_bank: str, amount: int) -> tuple[str, str] | None:
        if payee_bank == "NOPE":
            return "payee_bank_unknown", "no operator bank with code NOPE"
        if amount > self.limit:
            return "exceeds_credits", "BANKA's e-CNY position does not hold enough"
        return None

    async def transfer(self, id: str, payee_bank: str, amount: int, payer_ref: str,
                       payee_ref: str, memo_ref: str | None = None) -> Any:
        self.singles.append(id)
        await self.gate.wait()
        refusal = self._refusal(payee_bank, amount)
        if refusal is not None:
            raise CentralBankError(422, {"title": "Rejected by the ledger", "status": 422,
                                         "code": refusal[0], "detail": refusal[1]})
        return {"id": id, "status": "settled"}

    async def transfer_batch(self, items: Sequence[InterbankTransfer]) -> Any:
        self.batches.append([i.id for i in items])
        await self.gate.wait()
        if self.batch_error is not None:
            raise self.batch_error
        results = []
        for i in items:
            refusal = self._refusal(i.payee_bank, i.amount)
            results.append({"id": i.id, "status": "settled"} if refusal is None else
                           {"id": i.id, "status": "rejected", "code": refusal[0],
                            "detail": refusal[1]})
        return {"results": results}


async def outcome(calls: SettlementCalls, transfer: InterbankTransfer) -> str:
    try:
        await calls.transfer(transfer)
    except CentralBankError as exc:
        return f"{exc.status} {exc.problem.get('code')}"
    except CentralBankUnreachable:
        return "unreachable"
    return "settled"


async def burst(central: FakeCentralBank, calls: SettlementCalls,
                transfers: list[InterbankTransfer]) -> list[str]:
    """The first transfer takes the only slot while the central bank holds its answer;
    the rest queue behind it and go together."""
    central.gate.clear()
    tasks = [asyncio.create_task(outcome(calls, t)) for t in transfers]
    await asyncio.sleep(0.01)
    central.gate.set()
    return list(await asyncio.gather(*tasks))


async def test_a_lone_transfer_goes_alone_at_once() -> None:
    central = FakeCentralBank()
    calls = SettlementCalls(central, max_in_flight=1)  # type: ignore[arg-type]
    assert await outcome(calls, item(1)) == "settled"
    assert await outcome(calls, item(2, amount=5_000)) == "422 exceeds_credits"
    assert central.singles == [id_to_text(1), id_to_text(2)]
    assert central.batches == []


async def test_transfers_that_queue_go_in_one_batch_each_answered_as_alone() -> None:
    central = FakeCentralBank()
    calls = SettlementCalls(central, max_in_flight=1)  # type: ignore[arg-type]
    transfers = [item(1), item(2), item(3, amount=5_000), item(4, payee_bank="NOPE"),
                 item(5)]
    answers = await burst(central, calls, transfers)
    assert answers == ["settled", "settled", "422 exceeds_credits",
                       "422 payee_bank_unknown", "settled"]
    assert central.singles == [id_to_text(1)]
    assert central.batches == [[id_to_text(n) for n in (2, 3, 4, 5)]]
    # The same answers as when each goes alone:
    alone = [await outcome(calls, t) for t in transfers]
    assert alone == answers


async def test_batches_are_bounded() -> None:
    central = FakeCentralBank()
    calls = SettlementCalls(central, max_in_flight=1, max_items=3)  # type: ignore[arg-type]
    answers = await burst(central, calls, [item(n) for n in range(1, 9)])
    assert answers == ["settled"] * 8
    # The first went alone; the rest three at a time; a last one left alone goes alone.
    assert central.singles == [id_to_text(1), id_to_text(8)]
    assert central.batches == [[id_to_text(n) for n in (2, 3, 4)],
                               [id_to_text(n) for n in (5, 6, 7)]]


async def test_a_batch_refused_as_a_whole_is_sent_again_one_by_one() -> None:
    central = FakeCentralBank()
    central.batch_error = CentralBankError(422, {"title": "Unprocessable", "status": 422,
                                                 "detail": "$.transfers[1].memo_ref"})
    calls = SettlementCalls(central, max_in_flight=1)  # type: ignore[arg-type]
    answers = await burst(central, calls, [item(1), item(2), item(3, amount=5_000)])
    assert answers == ["settled", "settled", "422 exceeds_credits"]
    assert central.singles == [id_to_text(n) for n in (1, 2, 3)]


@pytest.mark.parametrize("error", [
    CentralBankError(503, {"title": "Service Unavailable"}),
    CentralBankError(429, {"title": "Too Many Requests"}),
    CentralBankUnreachable("no answer", url="http://cb"),
])
async def test_a_batch_that_gets_no_answer_leaves_each_transfer_unanswered(
        error: Exception) -> None:
    central = FakeCentralBank()
    central.batch_error = error
    calls = SettlementCalls(central, max_in_flight=1)  # type: ignore[arg-type]
    answers = await burst(central, calls, [item(1), item(2), item(3)])
    expected = "unreachable" if isinstance(error, CentralBankUnreachable) \
        else f"{error.status} None"  # type: ignore[attr-defined]
    assert answers == ["settled", expected, expected]
    assert central.singles == [id_to_text(1)]  # nothing sent again alone


async def test_a_missing_result_is_no_answer_for_that_transfer() -> None:
    central = FakeCentralBank()
    original = central.transfer_batch

    async def drops_the_last(items: Sequence[InterbankTransfer]) -> Any:
        answer = await original(items)
        return {"results": answer["results"][:-1]}

    central.transfer_batch = drops_the_last  # type: ignore[method-assign]
    calls = SettlementCalls(central, max_in_flight=1)  # type: ignore[arg-type]
    answers = await burst(central, calls, [item(1), item(2), item(3)])
    assert answers == ["settled", "settled", "502 None"]
