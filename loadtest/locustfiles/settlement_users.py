"""Locust users of the settlement hot path: operator banks sending signed interbank
transfers to the central bank (`POST /v1/transfers` and `/v1/transfers/batch`).

Run by `cbdc loadtest settlement` / `settlement-batch` / `settlement-mix`, or by hand:

    locust -f loadtest/locustfiles/settlement_users.py --seed-file RUN/seed.json \\
        --ack-dir RUN --headless -u 40 -r 40 -t 30s SingleTransferUser

Each user signs for one operator bank of the seed file (round robin over the banks), pays
random amounts (1..100 fen) between pseudonymous wallet references, and sends a share
(`--hot-share`) of its transfers to the first `--hot-banks` banks: a few hot banks take
most of the credits, as the big banks do. Every transfer the central bank answered
"settled" is written to the acknowledgement log for the runner's reconciliation.
"""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any, cast

import msgspec
from locust import FastHttpUser, task

from cbdc import wire
from cbdc.ids import id_sequence
from loadtest.locustfiles import common

MAX_AMOUNT = 100  # fen per transfer, at most
SINGLE_PATH = "/v1/transfers"
BATCH_PATH = "/v1/transfers/batch"
_next_bank = itertools.count()


class OperatorUser(FastHttpUser):
    """One operator bank's sending system."""

    abstract = True
    wait_time = common.paced

    def on_start(self) -> None:
        seeded = common.seed(self.environment)
        banks = seeded["banks"]
        self.bank: dict[str, Any] = banks[next(_next_bank) % len(banks)]
        self.base = seeded["central_bank_url"].rstrip("/")
        codes = [b["code"] for b in banks]
        parsed = common.options(self.environment)
        self.hot = [c for c in codes[:max(0, parsed.hot_banks)] if c != self.bank["code"]]
        self.others = [c for c in codes if c != self.bank["code"]]
        self.hot_share = float(parsed.hot_share)
        self.rng = random.Random()
        self.refs = [f"w{self.rng.getrandbits(40):010x}" for _ in range(64)]
        # Time-ordered ids, as the integration guide asks of a bank: random ones would
        # scatter each insert over the central bank's indexes.
        self.ids = id_sequence()

    def transfer(self) -> wire.InterbankTransfer:
        rng = self.rng
        payees = self.hot if self.hot and rng.random() < self.hot_share else self.others
        return wire.InterbankTransfer(
            id=wire.id_to_text(next(self.ids)), payee_bank=rng.choice(payees),
            amount=rng.randint(1, MAX_AMOUNT), payer_ref=rng.choice(self.refs),
            payee_ref=rng.choice(self.refs))

    def post(self, path: str, body: bytes, idempotency_key: str) -> Any:
        """POST a signed body; the decoded answer, or None when the request failed (it
        is marked failed in Locust's statistics)."""
        url = self.base + path
        headers = common.signed(url, body, self.bank["key_id"], self.bank["pem"],
                                idempotency_key)
        with self.client.post(url, data=cast(Any, body), headers=headers, name=path,
                              catch_response=True) as response:
            if response.status_code not in (200, 201):
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return None
            try:
                return msgspec.json.decode(response.content or b"")
            except msgspec.DecodeError:
                response.failure("the answer is not JSON")
                return None


class SingleTransferUser(OperatorUser):
    """One interbank transfer per request, awaited end to end."""

    @task
    def single_transfer(self) -> None:
        item = self.transfer()
        data = self.post(SINGLE_PATH, msgspec.json.encode(item), item.id)
        if isinstance(data, dict) and data.get("status") == "settled":
            common.ACKS.record(self.environment, common.CENTRAL_BANK_LEDGER, item.id,
                               item.amount)


class BatchTransferUser(OperatorUser):
    """`--batch-size` transfers per request; a result per transfer."""

    @task
    def transfer_batch(self) -> None:
        size = max(1, min(wire.MAX_BATCH, int(common.options(self.environment).batch_size)))
        items = [self.transfer() for _ in range(size)]
        data = self.post(BATCH_PATH, msgspec.json.encode(wire.TransferBatch(items)),
                         str(uuid.uuid4()))
        if not isinstance(data, dict):
            return
        amounts = {item.id: item.amount for item in items}
        common.ACKS.record_many(self.environment, common.CENTRAL_BANK_LEDGER, (
            (result["id"], amounts[result["id"]]) for result in data.get("results", [])
            if result.get("status") == "settled" and result.get("id") in amounts))


_shape = common.selected_shape()
if _shape is not None:
    class Shape(_shape):  # type: ignore[valid-type,misc]
        """The shape LOADTEST_SHAPE names."""
