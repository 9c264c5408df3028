"""A Hypothesis state machine drives the HTTP APIs of banks A and B (and through them
the central bank) against a model of wallets: open a wallet, top up, pay at the same
bank, pay at the other bank, redeem, retry the last request, replay an old signed
order. The model knows the class 4 limits (cap, single, daily, yearly) and predicts
each answer: a success moves exactly the amount, a refusal names one of the rules the
model says are broken and moves nothing. After every step every wallet's balance and
daily usage are the model's, and each bank's e-CNY equals its central bank position;
at the end `cbdc reconcile` is clean.

Seed: printed; CBDC_SEED replays it. CBDC_RELIABILITY=long runs more and longer runs.
"""

from __future__ import annotations

import collections
import uuid
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from commercial_bank.wallet_classes import PRESET_2020, WalletClass, limits
from tests.integration.bank_harness import Reply, WalletUnderTest, bank_ecny, settle_in_flight
from tests.reliability.api_support import NetworkInThread, long_profile, seeded, services

pytestmark = pytest.mark.reliability
__all__ = ["services"]  # fixture

CLASS_4 = limits(PRESET_2020, WalletClass(4))
BANKS = ("BANKA", "BANKB")
MODEL_SETTINGS = settings(
    max_examples=50 if long_profile() else 6, stateful_step_count=50 if long_profile() else 25,
    deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)
# Amounts around the class 4 limits (fen): 1,000 CNY cap and daily, 500 CNY single.
AMOUNTS = st.one_of(st.integers(1, 2_000), st.integers(1, 5_000), st.integers(5_000, 60_000),
                    st.sampled_from([CLASS_4.single, CLASS_4.single + 1, CLASS_4.balance_cap]))


@dataclass
class ModelWallet:
    wallet: WalletUnderTest
    bank: str
    balance: int = 0
    deposit: int = 0
    spent_today: int = 0


@dataclass
class LastRequest:
    """The last request that succeeded, to send again: a top-up or a signed order."""

    wallet: ModelWallet
    path: str
    body: Any
    raw: bytes | None
    reply: Reply


@dataclass
class Replayable:
    order: bytes
    bank: str
    reply: Reply


def refusals(payer: ModelWallet, payee: ModelWallet | None, amount: int) -> set[str]:
    """The codes with which the bank may refuse `payer` paying or redeeming `amount` (to
    `payee`, None for a redemption); empty: it must succeed."""
    codes = set()
    if amount > payer.balance:
        codes.add("insufficient_funds")
    if payee is not None and payee.balance + amount > CLASS_4.balance_cap:
        codes |= {"exceeds_balance_cap", "payee_cannot_receive"}
    if amount > CLASS_4.single:
        codes.add("exceeds_single_limit")
    if payer.spent_today + amount > CLASS_4.daily:
        codes.add("exceeds_daily_limit")
    return codes


STEPS: collections.Counter[str] = collections.Counter()  # what the runs did, for the report


class WalletModel(RuleBasedStateMachine):
    services: NetworkInThread  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.wallets: list[ModelWallet] = []
        self.last: LastRequest | None = None
        self.orders: list[Replayable] = []

    def run(self, coroutine: Any) -> Any:
        return self.services.run(coroutine)

    # ---------------------------------------------------------------- rules
    @initialize(first=st.sampled_from(BANKS), second=st.sampled_from(BANKS))
    def open_two_wallets(self, first: str, second: str) -> None:
        for code in (first, second):
            self.open_wallet(code)

    @precondition(lambda self: len(self.wallets) < 4)
    @rule(code=st.sampled_from(BANKS))
    def open_wallet(self, code: str) -> None:
        wallet = self.run(self.services.network.wallet(code))
        summary = self.run(wallet.summary())
        assert (summary["balance"], summary["class"], summary["status"]) == (0, 4, "active")
        holder = ModelWallet(wallet, code)
        self.wallets.append(holder)
        STEPS["opened a wallet"] += 1
        self._top_up(holder, 30_000)  # something to spend from the start

    @rule(data=st.data(), amount=AMOUNTS)
    def top_up(self, data: st.DataObject, amount: int) -> None:
        self._top_up(data.draw(st.sampled_from(self.wallets)), amount)

    def _top_up(self, holder: ModelWallet, amount: int) -> None:
        self._cash_in(holder, amount)
        body = {"id": str(uuid.uuid4()), "amount": amount}
        reply = self.run(holder.wallet.post("/top-up", body))
        STEPS["topped up"] += 1
        if holder.balance + amount > CLASS_4.balance_cap:
            assert (reply.status, reply.body["code"]) == (422, "exceeds_balance_cap"), reply
            return
        assert reply.status == 200, reply
        holder.balance += amount
        holder.deposit -= amount
        self.last = LastRequest(holder, "/top-up", body, None, reply)

    @rule(data=st.data(), amount=AMOUNTS)
    def redeem(self, data: st.DataObject, amount: int) -> None:
        holder = data.draw(st.sampled_from(self.wallets))
        if holder.wallet.deposit_number is None:
            self._cash_in(holder, 1)
        body = {"id": str(uuid.uuid4()), "amount": amount}
        reply = self.run(holder.wallet.post("/redeem", body))
        self._expect(reply, refusals(holder, None, amount), 200)
        if reply.status == 200:
            holder.balance -= amount
            holder.deposit += amount
            holder.spent_today += amount
            self.last = LastRequest(holder, "/redeem", body, None, reply)

    @precondition(lambda self: len(self.wallets) >= 2)
    @rule(data=st.data(), amount=AMOUNTS, memo=st.text(max_size=12).filter(str.isprintable))
    def pay(self, data: st.DataObject, amount: int, memo: str) -> None:
        """Same bank or the other bank, as the two wallets drawn happen to be."""
        payer, payee = data.draw(st.permutations(self.wallets).map(lambda w: w[:2]))
        order = payer.wallet.order(payee.wallet.address, amount, memo=memo)
        bank = self.services.network.banks[payer.bank]
        reply = self.run(bank.call("POST", "/v1/payments", raw=order))
        self._expect(reply, refusals(payer, payee, amount), 201)
        if reply.status != 201:
            return
        assert (reply.body["amount"], reply.body["payee"]) == (amount, payee.wallet.address)
        payer.balance -= amount
        payer.spent_today += amount
        payee.balance += amount
        STEPS["paid at the same bank" if payer.bank == payee.bank else "paid across banks"] += 1
        if payer.bank != payee.bank:
            self.run(settle_in_flight(self.services.network))
        self.last = LastRequest(payer, "/v1/payments", None, order, reply)
        self.orders.append(Replayable(order, payer.bank, reply))

    @precondition(lambda self: self.last is not None)
    @rule()
    def retry(self) -> None:
        """The last successful request again, as a client that lost the answer would:
        the same outcome, nothing moves."""
        assert self.last is not None
        last = self.last
        STEPS["retried"] += 1
        if last.raw is not None:
            bank = self.services.network.banks[last.wallet.bank]
            reply = self.run(bank.call("POST", last.path, raw=last.raw))
            assert reply.status == last.reply.status, reply
            assert reply.body["id"] == last.reply.body["id"]
        else:
            reply = self.run(last.wallet.wallet.post(last.path, last.body))
            assert reply.status == last.reply.status, reply

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """Any signed order that paid, sent again later: the same payment, nothing more."""
        old = data.draw(st.sampled_from(self.orders))
        STEPS["replayed"] += 1
        reply = self.run(self.services.network.banks[old.bank].call(
            "POST", "/v1/payments", raw=old.order))
        assert reply.status == 201, reply
        first = {k: v for k, v in old.reply.body.items() if k != "status"}
        assert {k: v for k, v in reply.body.items() if k != "status"} == first
        assert reply.body["status"] == "settled"

    # ----------------------------------------------------------- invariants
    @invariant()
    def ledgers_agree_with_the_model(self) -> None:
        STEPS["checked against the model"] += 1
        for holder in self.wallets:
            summary = self.run(holder.wallet.summary())
            assert summary["balance"] == holder.balance, (holder.wallet.address, summary)
            assert summary["limits"]["daily"]["used"] == holder.spent_today, summary
            if holder.wallet.deposit_number is not None:
                assert summary["deposit_account"]["balance"] == holder.deposit, summary
        network = self.services.network
        for code in BANKS:
            held, position = self.run(bank_ecny(network, code))
            assert held == position, f"{code}: ledger holds {held}, central bank {position}"

    # -------------------------------------------------------------- helpers
    def _cash_in(self, holder: ModelWallet, amount: int) -> None:
        wallet = holder.wallet
        if wallet.deposit_number is None:
            reply = self.run(wallet.post("/deposit-account"))
            assert reply.status == 200, reply
            wallet.deposit_number = reply.body["deposit_account"]["number"]
        reply = self.run(wallet.bank.teller(
            "POST", f"/v1/teller/deposits/{wallet.deposit_number}/cash-in",
            {"id": str(uuid.uuid4()), "amount": amount}))
        assert reply.status == 201, reply
        holder.deposit += amount

    @staticmethod
    def _expect(reply: Reply, broken: set[str], success: int) -> None:
        STEPS["refused" if broken else "moved money"] += 1
        if not broken:
            assert reply.status == success, reply
        else:
            assert reply.status == 422, (broken, reply)
            assert reply.body["code"] in broken, (broken, reply)


def test_the_apis_agree_with_the_model_after_every_step(services: NetworkInThread) -> None:
    seed = seeded("wallet model")
    WalletModel.services = services
    hypothesis.seed(seed)(WalletModel)  # a state machine takes its seed from its class
    run_state_machine_as_test(WalletModel, settings=MODEL_SETTINGS)
    print("wallet model steps:", dict(sorted(STEPS.items())))
