"""Load for the reliability suite, and the checks after it.

`Payments` sends signed orders from concurrent clients, some wallets hot, some payments
to other banks (and, with money clients, top-ups and redemptions), and retries every
request whose answer is lost (same bytes, so the same id) until it gets a definite one.
It remembers what each acknowledged one must have done; `check_books` then proves, from
the databases, that each was applied exactly once, that nothing else moved, and that
`cbdc reconcile` agrees.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from commercial_bank import accounts as chart
from loadtest.network import CENTRAL_BANK_SERVICE
from loadtest.retail_bench import Orders
from loadtest.seeding import WALLET_FUNDING, BenchWallet
from tests.reliability import ledgers
from tests.reliability.cluster import Answer, Cluster, pick

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_MOVE = 1_000  # fen per top-up or redemption


@dataclass(frozen=True)
class Shape:
    clients: int
    money_clients: int = 0  # clients topping wallets up and redeeming (cold wallets only)
    hot: int = 4  # hot wallets per bank
    hot_share: float = 0.5  # share of payers and payees drawn from the hot ones
    cross_share: float = 0.3  # share of payments to another bank


@dataclass
class Payment:
    payer: tuple[str, int]  # bank, wallet number
    payee: tuple[str, int]
    amount: int
    status: str  # the first answer's: settled or pending


@dataclass
class Payments:
    cluster: Cluster
    session: aiohttp.ClientSession
    wallets: dict[str, list[BenchWallet]]
    seed: int
    shape: Shape
    acknowledged: dict[int, Payment] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    moved: Counter[int] = field(default_factory=Counter)  # wallet account -> top-ups - redeems
    moves: int = 0
    sent: int = 0
    answered_after_retry: int = 0  # orders whose first attempts got no answer

    async def client(self, number: int, stop: asyncio.Event) -> None:
        rng = random.Random(f"{self.seed}:{number}")
        orders = Orders(rng)
        codes = list(self.wallets)
        while not stop.is_set():
            code = rng.choice(codes)
            to = code
            if len(codes) > 1 and rng.random() < self.shape.cross_share:
                to = rng.choice([c for c in codes if c != code])
            await self.pay(rng, orders, code, to)

    async def money_client(self, number: int, stop: asyncio.Event) -> None:
        """Top-ups and redemptions of small amounts: the bank swaps float with the
        central bank as it runs short or long (`FloatSwaps`)."""
        rng = random.Random(f"{self.seed}:money:{number}")
        codes = list(self.wallets)
        while not stop.is_set():
            code = rng.choice(codes)
            wallet = rng.choice(self.wallets[code][self.shape.hot:])
            kind = rng.choice(("top-up", "redeem"))
            amount = rng.randint(1, MAX_MOVE)
            body = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "amount": amount}
            answer = await self.cluster.move(self.session, wallet, kind, body)
            self.answered_after_retry += answer.attempts > 1
            if answer.status != 200:
                self.refused[f"{kind} {answer.status} {answer.body.get('code', '')}"] += 1
                continue
            assert wallet.address is not None
            self.moves += 1
            self.moved[chart.wallet_id(code, wallet.address.number)] += (
                amount if kind == "top-up" else -amount)

    async def pay(self, rng: random.Random, orders: Orders, code: str, to: str) -> Answer | None:
        """One order from a wallet of `code` to one of `to`, sent until answered and
        remembered; None when the draw picked the same wallet twice."""
        shape = self.shape
        payer = pick(rng, self.wallets[code], shape.hot, shape.hot_share)
        payee = pick(rng, self.wallets[to], shape.hot, shape.hot_share)
        if payee is payer:
            return None
        self.sent += 1
        answer = await self.cluster.pay(self.session, code, orders.order(payer, payee))
        self.answered_after_retry += answer.attempts > 1
        if not answer.acknowledged:
            self.refused[f"{answer.status} {answer.body.get('code', '')}"] += 1
            return answer
        assert payer.address is not None
        assert payee.address is not None
        self.acknowledged[answer.payment_id] = Payment(
            (code, payer.address.number), (to, payee.address.number),
            int(answer.body["amount"]), answer.body["status"])
        return answer

    @asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Event]:
        """Clients pay while the block runs; they finish their current order after."""
        stop = asyncio.Event()
        tasks = [asyncio.create_task(self.client(i, stop)) for i in range(self.shape.clients)]
        tasks += [asyncio.create_task(self.money_client(i, stop))
                  for i in range(self.shape.money_clients)]
        try:
            yield stop
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    def expected_balances(self) -> dict[int, int]:
        """Wallet account id -> the posted balance every acknowledged payment implies."""
        expected = {chart.wallet_id(code, w.address.number): WALLET_FUNDING
                    for code, made in self.wallets.items() for w in made
                    if w.address is not None}
        for account, amount in self.moved.items():
            expected[account] += amount
        for payment in self.acknowledged.values():
            expected[chart.wallet_id(*payment.payer)] -= payment.amount
            expected[chart.wallet_id(*payment.payee)] += payment.amount
        return expected


@asynccontextmanager
async def bank_pools(cluster: Cluster) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    names = (CENTRAL_BANK_SERVICE, *cluster.codes)
    pools = {name: await asyncpg.create_pool(cluster.database_url(name), min_size=1,
                                             max_size=2) for name in names}
    try:
        yield pools
    finally:
        for pool in pools.values():
            await pool.close()


async def settled(pools: Mapping[str, asyncpg.Pool], codes: Sequence[str],
                  seconds: float = 60.0) -> list[ledgers.BankBooks]:
    """Wait until no payment or float swap is pending anywhere and every credit is
    booked; the books. What is pending comes from each bank's snapshot of its books:
    read apart, a swap posted between the two reads would leave books that still hold
    it open, short of what the central bank issued."""
    deadline = time.monotonic() + seconds
    while True:
        books = await ledgers.read_all({code: pools[code] for code in codes})
        out = {i for b in books for i in b.settled_out}
        booked = {i for b in books for i in b.booked_in}
        pending = [b.pending for b in books]
        if not any(pending) and out <= booked:
            return books
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled after {seconds:g} s: fen pending per bank "
                                 f"{dict(zip(codes, pending, strict=True))}, "
                                 f"{len(out - booked)} credits not booked")
        await asyncio.sleep(0.25)


async def check_books(cluster: Cluster, payments: Payments,
                      pools: Mapping[str, asyncpg.Pool]) -> dict[str, int]:
    """After the load: every acknowledged payment applied exactly once, every wallet
    where the acknowledged payments put it, the e-CNY outstanding all accounted for,
    `cbdc reconcile` clean. Returns figures for the report."""
    codes = cluster.codes
    books = await settled(pools, codes)
    assert ledgers.problems(books) == []
    outstanding = await ledgers.outstanding(pools[CENTRAL_BANK_SERVICE])
    assert ledgers.conserved_total(books) == outstanding

    balances = {account: value for bank in books for account, value in bank.balances.items()}
    expected = payments.expected_balances()
    wrong = {f"{account:032x}": (balances.get(account), value)
             for account, value in expected.items()
             if balances.get(account) != (value, 0)}
    assert wrong == {}, f"wallets off what the acknowledged payments imply: {wrong}"

    by_bank: dict[str, list[int]] = {code: [] for code in codes}
    cross: list[int] = []
    for payment_id, payment in payments.acknowledged.items():
        by_bank[payment.payer[0]].append(payment_id)
        if payment.payee[0] != payment.payer[0]:
            cross.append(payment_id)
    for code, ids in by_bank.items():
        missing = set(ids) - await ledgers.existing(pools[code], ids)
        assert not missing, f"{code}: {len(missing)} acknowledged payments not in its journal"
    at_central = await ledgers.existing(pools[CENTRAL_BANK_SERVICE], cross)
    assert at_central == set(cross), "acknowledged cross-bank payments missing at the central bank"
    booked = {i for bank in books for i in bank.booked_in}
    assert set(cross) <= booked, "cross-bank payments settled but never credited"

    await reconcile_clean(cluster)
    swaps = sum([await ledgers.float_swaps(pools[code]) for code in codes])
    return {"acknowledged": len(payments.acknowledged), "cross_bank": len(cross),
            "outstanding": outstanding, "float_swaps": swaps}


async def reconcile_clean(cluster: Cluster) -> None:
    """`cbdc reconcile` over the cluster's databases finds no break."""
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cbdc.cli", "reconcile"], cwd=REPO_ROOT,
        env=cluster.env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconciled: clean" in result.stdout
