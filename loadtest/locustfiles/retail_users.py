"""Locust users of retail payments: wallets paying through their banks with signed
payment orders (`POST /v1/payments`), within one bank and to the other bank.

Run by `cbdc loadtest retail`, or by hand:

    locust -f loadtest/locustfiles/retail_users.py --seed-file RUN/seed.json \\
        --ack-dir RUN --headless -u 32 -r 32 -t 30s

Each user is a customer of one bank (round robin over the seeded banks): every task it
picks a payer among that bank's seeded wallets and pays 1..100 fen to another wallet,
at the other bank for a share `--cross-share` of the payments. Orders are signed on the
spot with the payer's key (RFC 8785 canonical JSON, deterministic ECDSA). An order's
sequence number is random (52 bits): it only has to be new for its payer, and users
share wallets. A payment the bank answered 201 (settled, or pending at the central bank
for a cross-bank one) is written to the acknowledgement log under the payer's bank.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any, cast

from locust import FastHttpUser, task

from cbdc.addresses import WalletAddress, parse_address
from cbdc.payment_orders import PaymentOrder
from loadtest.locustfiles import common

MAX_AMOUNT = 100  # fen per payment, at most
ORDER_LIFETIME_S = 300
PAY_PATH = "/v1/payments"
_next_bank = itertools.count()


class WalletUser(FastHttpUser):
    """A customer paying from the wallets of one bank."""

    wait_time = common.paced

    def on_start(self) -> None:
        seeded = common.seed(self.environment)
        self.urls: dict[str, str] = {code: url.rstrip("/")
                                     for code, url in seeded["bank_urls"].items()}
        codes = sorted(self.urls)
        self.code = codes[next(_next_bank) % len(codes)]
        wallets: dict[str, list[tuple[WalletAddress, str]]] = {code: [] for code in codes}
        for wallet in seeded["wallets"]:
            wallets[wallet["bank"]].append((parse_address(wallet["address"]), wallet["pem"]))
        self.payers = wallets[self.code]
        self.same = [address for address, _ in self.payers]
        self.other = [address for code in codes if code != self.code
                      for address, _ in wallets[code]]
        self.cross_share = float(common.options(self.environment).cross_share)
        self.rng = random.Random()

    @task
    def pay(self) -> None:
        rng = self.rng
        payer, pem = rng.choice(self.payers)
        cross = bool(self.other) and rng.random() < self.cross_share
        payee = rng.choice(self.other if cross else self.same)
        while payee == payer:
            payee = rng.choice(self.same)
        order = PaymentOrder(payer=payer, payee=payee, amount=rng.randint(1, MAX_AMOUNT),
                             sequence=rng.getrandbits(52) + 1,
                             expires=int(time.time()) + ORDER_LIFETIME_S)
        body = order.sign(common.signing_key(pem)).to_json().encode()
        name = f"{PAY_PATH} ({'cross bank' if cross else 'same bank'})"
        with self.client.post(self.urls[self.code] + PAY_PATH, data=cast(Any, body), name=name,
                              headers={"Content-Type": "application/json"},
                              catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            data: Any = response.json()
            if not isinstance(data, dict) or data.get("status") not in ("settled", "pending"):
                response.failure(f"unexpected answer: {str(data)[:200]}")
                return
            common.ACKS.record(self.environment, self.code, data["id"], order.amount)


_shape = common.selected_shape()
if _shape is not None:
    class Shape(_shape):  # type: ignore[valid-type,misc]
        """The shape LOADTEST_SHAPE names."""
