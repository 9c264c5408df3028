"""Commercial banks for tests: the real wallet service of each bank, with its own database
and the shared Redis, settling with a real central bank; wallets whose keys tests hold.

Every answer a test gets through `BankUnderTest.call` is checked against the bank's own
OpenAPI document (fetched once from its `/openapi.json`), as the central bank's are.

    network / two_banks   fixtures: `running_network` with bank A, or banks A and B; after
                          the test, once nothing is in flight, every bank's e-CNY equals
                          its position at the central bank and `cbdc reconcile` is clean

Import the fixtures into a test module (or conftest) by name; pytest finds them there."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cbdc.payment_orders import PaymentOrder
from cbdc.processes import unused_port
from cbdc.signing import SigningKey
from commercial_bank import accounts as chart
from commercial_bank.app import BankConfig, create_app
from commercial_bank.keys import BANK
from commercial_bank.service import FloatPolicy
from commercial_bank.sessions import login_message
from commercial_bank.wallet_classes import PRESET_2020
from loadtest.reconcile import reconcile
from tests.integration.central_bank_harness import CentralBankUnderTest, running_central_bank
from tests.openapi_check import OpenApiChecker
from tests.redis_support import private_prefix

TELLER_TOKEN = "test-teller-token-0123456789abcdef"
RESERVES = 1_000_000_000  # 10,000,000 CNY of reserves per bank
EVENT_STREAM = "text/event-stream"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Reply:
    status: int
    body: Any


@dataclass
class BankUnderTest:
    code: str
    url: str
    database_url: str
    session: aiohttp.ClientSession
    runner: web.AppRunner
    checker: OpenApiChecker | None = None

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                   raw: bytes | None = None) -> Reply:
        """One request; the answer must be what the bank's OpenAPI document says (an event
        stream is not read: its body is None)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"json": body} if raw is None else {"data": raw}
        async with self.session.request(method, self.url + path, headers=headers,
                                        **kwargs) as response:
            if response.content_type == EVENT_STREAM:
                return Reply(response.status, None)
            if response.content_type.startswith("text/"):
                data: Any = await response.text()
            else:
                data = await response.json(content_type=None)
            if self.checker is not None:
                self.checker.check(method, path.split("?", maxsplit=1)[0], response.status,
                                   response.content_type, data)
            return Reply(response.status, data)

    async def load_document(self) -> None:
        """Fetch the bank's OpenAPI document; `call` checks every answer against it."""
        async with self.session.get(self.url + "/openapi.json") as response:
            assert response.status == 200, await response.text()
            self.checker = OpenApiChecker(await response.json())

    async def teller(self, method: str, path: str, body: Any = None) -> Reply:
        return await self.call(method, path, body, token=TELLER_TOKEN)


@dataclass
class WalletUnderTest:
    bank: BankUnderTest
    key: SigningKey
    address: str = ""
    token: str = ""
    sequence: int = 0
    deposit_number: int | None = None

    async def open(self, phone: str = "13800138000") -> Reply:
        reply = await self.bank.call("POST", "/v1/wallets", {
            "public_key_pem": self.key.public.to_pem().decode(), "phone": phone})
        if reply.status == 201:
            self.address = reply.body["address"]
        return reply

    async def login(self) -> None:
        reply = await self.bank.call("POST", "/v1/sessions/challenge", {"address": self.address})
        assert reply.status == 200, reply.body
        challenge = reply.body["challenge"]
        signature = self.key.sign(login_message(self.bank.code, self.address, challenge))
        reply = await self.bank.call("POST", "/v1/sessions", {
            "address": self.address, "challenge": challenge,
            "signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode()})
        assert reply.status == 200, reply.body
        self.token = reply.body["token"]

    async def get(self, path: str = "") -> Reply:
        return await self.bank.call("GET", f"/v1/wallets/{self.address}{path}", token=self.token)

    async def post(self, path: str, body: Any = None) -> Reply:
        return await self.bank.call("POST", f"/v1/wallets/{self.address}{path}", body,
                                    token=self.token)

    async def summary(self) -> dict[str, Any]:
        reply = await self.get()
        assert reply.status == 200, reply.body
        return dict(reply.body)

    async def fund(self, amount: int) -> None:
        """Link a deposit account, have a teller pay cash into it, and top up."""
        reply = await self.post("/deposit-account")
        assert reply.status == 200, reply.body
        self.deposit_number = reply.body["deposit_account"]["number"]
        reply = await self.bank.teller("POST",
                                       f"/v1/teller/deposits/{self.deposit_number}/cash-in",
                                       {"id": new_id(), "amount": amount})
        assert reply.status == 201, reply.body
        reply = await self.post("/top-up", {"id": new_id(), "amount": amount})
        assert reply.status == 200, reply.body

    def order(self, payee: str, amount: int, *, memo: str = "", sequence: int | None = None,
              expires_in: int = 300, now: int | None = None) -> bytes:
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        order = PaymentOrder(payer=self.address, payee=payee, amount=amount, sequence=sequence,
                             expires=(now or int(time.time())) + expires_in, memo=memo)
        return order.sign(self.key).to_json().encode()

    async def pay(self, payee: str, amount: int, **kwargs: Any) -> Reply:
        return await self.bank.call("POST", "/v1/payments", raw=self.order(payee, amount,
                                                                           **kwargs))


@dataclass
class Network:
    central_bank: CentralBankUnderTest
    banks: dict[str, BankUnderTest] = field(default_factory=dict)

    async def wallet(self, code: str, *, balance: int = 0, phone: str = "13800138000"
                     ) -> WalletUnderTest:
        wallet = WalletUnderTest(self.banks[code], SigningKey.generate())
        reply = await wallet.open(phone)
        assert reply.status == 201, reply.body
        await wallet.login()
        if balance:
            await wallet.fund(balance)
        return wallet


@asynccontextmanager
async def running_network(make_database: Callable[[], Awaitable[str]], redis_url: str,
                          data_dir: Path, codes: tuple[str, ...] = ("BANKA",),
                          float_target: int = 1_000_000,
                          clock: Callable[[], int] = time.time_ns) -> AsyncIterator[Network]:
    # Keys and channels of this network's own: another suite on the same Redis (or an
    # earlier network) opens wallets with the same addresses, and reporting one of its
    # wallets lost would otherwise end this network's sessions.
    async with private_prefix(redis_url, "cbdc:test:") as redis_prefix, \
            running_central_bank(await make_database(), data_dir / "central-bank") as cb:
        network = Network(cb)
        runners = []
        ports = {code: unused_port() for code in codes}
        peers = {code: f"http://127.0.0.1:{port}" for code, port in ports.items()}
        try:
            for code in codes:
                operator = await cb.add_operator(code, reserves=RESERVES)
                database_url = await make_database()
                config = BankConfig(
                    code=code, database_url=database_url, redis_url=redis_url,
                    central_bank_url=cb.url, operator_key_id=operator.key_id,
                    operator_key=operator.key, ledger_key=SigningKey.generate(),
                    admin_token=TELLER_TOKEN, preset=PRESET_2020,
                    float_policy=FloatPolicy(target=float_target), peers=peers, clock=clock,
                    redis_prefix=redis_prefix)
                runner = web.AppRunner(create_app(config))
                await runner.setup()
                runners.append(runner)
                port = ports[code]
                await web.TCPSite(runner, "127.0.0.1", port).start()
                bank = BankUnderTest(code, f"http://127.0.0.1:{port}", database_url,
                                     cb.session, runner)
                await bank.load_document()
                network.banks[code] = bank
            yield network
        finally:
            for runner in runners:
                await runner.cleanup()


async def bank_ecny(network: Network, code: str) -> tuple[int, int]:
    """(e-CNY the bank's ledger holds in wallets, float and in flight; the bank's e-CNY
    position as the central bank reports it)."""
    writer = network.banks[code].runner.app[BANK].ledger
    rows = await writer.store.pool.fetch(
        "SELECT id FROM accounts WHERE code = ANY($1::int[])",
        [chart.WALLET, chart.FLOAT, chart.IN_FLIGHT])
    balances = await writer.lookup_accounts([int.from_bytes(r["id"], "big") for r in rows])
    held = sum(b.credit_balance for b in balances if b)
    position = (await network.central_bank.operators[code].client.positions())["ecny"]
    return held, position


async def assert_reconciled(network: Network) -> None:
    """`cbdc reconcile`'s checks: supply, each bank against its position, every settled
    interbank transfer booked at both ends, every chain verified."""
    report = await reconcile(network.central_bank.database_url,
                             {code: bank.database_url for code, bank in network.banks.items()})
    assert report.clean, "\n".join(report.lines)


async def assert_books_agree(network: Network) -> None:
    """Each bank's e-CNY equals its central bank position, and `cbdc reconcile` (supply,
    both ends of every interbank transfer, every chain) is clean."""
    for code in network.banks:
        held, position = await bank_ecny(network, code)
        assert held == position, f"{code}: ledger holds {held}, central bank says {position}"
    await assert_reconciled(network)


async def settle_in_flight(network: Network, seconds: float = 5.0) -> None:
    """Wait until the banks' books have caught up with the central bank: nothing in
    flight to another bank, and every credit the central bank settled booked by the
    payee's bank from its feed (each bank's e-CNY equals its position). The payer's
    answer can come before the payee's booking, so money leaving in flight is not
    enough."""
    for _ in range(int(seconds / 0.05)):
        caught_up = True
        for code in network.banks:
            held, position = await bank_ecny(network, code)
            caught_up = caught_up and held == position
        if caught_up:
            return
        await asyncio.sleep(0.05)


@asynccontextmanager
async def checked_network(make_database: Callable[[], Awaitable[str]], redis_url: str,
                          data_dir: Path, codes: tuple[str, ...],
                          clock: Callable[[], int] = time.time_ns) -> AsyncIterator[Network]:
    """`running_network`; on leaving, once nothing is in flight, the books agree."""
    async with running_network(make_database, redis_url, data_dir, codes=codes,
                               clock=clock) as network:
        yield network
        await settle_in_flight(network)
        await assert_books_agree(network)


@pytest.fixture
async def network(make_database: Callable[[], Awaitable[str]], redis_url: str,
                  tmp_path: Path) -> AsyncIterator[Network]:
    async with checked_network(make_database, redis_url, tmp_path, ("BANKA",)) as network:
        yield network


@pytest.fixture
async def two_banks(make_database: Callable[[], Awaitable[str]], redis_url: str,
                    tmp_path: Path) -> AsyncIterator[Network]:
    async with checked_network(make_database, redis_url, tmp_path,
                               ("BANKA", "BANKB")) as network:
        yield network
