"""The two tiers as real processes: `cbdc central-bank` and two `cbdc commercial-bank`s on
real PostgreSQL and Redis, driven over HTTP the way testers' wallets drive them."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from cbdc.addresses import parse_address
from cbdc.login import login_message
from cbdc.payment_orders import PaymentOrder
from cbdc.processes import unused_port
from cbdc.settings import Settings
from cbdc.signing import SigningKey
from commercial_bank.run import operator_key, register_operator, teller_token

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
CNY = 100


@dataclass
class System:
    env: dict[str, str]
    settings: Settings
    central_bank: str
    banks: dict[str, str]
    processes: list[subprocess.Popen[str]]


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cbdc.cli", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"{url} exited: {output}")
            try:
                async with session.get(url + "/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


@pytest.fixture
def prefix() -> str:
    return f"e2e{os.getpid()}_{uuid.uuid4().hex[:6]}_"


@pytest.fixture
async def system(pg_server_url: str, redis_url: str, tmp_path: Path, prefix: str
                 ) -> AsyncIterator[System]:
    ports = {"central": unused_port(), "BANKA": unused_port(), "BANKB": unused_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env |= {"CBDC_DATABASE_URL": pg_server_url, "CBDC_REDIS_URL": redis_url,
            "CBDC_DATA_DIR": str(tmp_path / "data"), "CBDC_DATABASE_PREFIX": prefix,
            "CBDC_ADMIN_TOKEN": ADMIN_TOKEN, "CBDC_CENTRAL_BANK_PORT": str(ports["central"]),
            "CBDC_BANKS": f"BANKA:{ports['BANKA']},BANKB:{ports['BANKB']}"}
    settings = Settings(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN)
    central = f"http://127.0.0.1:{ports['central']}"
    banks = {code: f"http://127.0.0.1:{ports[code]}" for code in ("BANKA", "BANKB")}
    processes = [start(env, "central-bank")]
    try:
        await wait_healthy(central, processes[0])
        for code in banks:
            await register_operator(central, ADMIN_TOKEN, code, operator_key(settings, code),
                                    reserves=100_000_000)
        for code, url in banks.items():
            other = next(c for c in banks if c != code)
            processes.append(start(env, "commercial-bank", "--code", code, "--port",
                                   str(ports[code]), "--central-bank", central,
                                   "--peer", f"{other}={banks[other]}"))
            await wait_healthy(url, processes[-1])
        yield System(env, settings, central, banks, processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        admin = await asyncpg.connect(pg_server_url)
        try:
            for row in await admin.fetch(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1", prefix + "%"):
                await admin.execute(f'DROP DATABASE "{row["datname"]}" WITH (FORCE)')
        finally:
            await admin.close()


class Wallet:
    def __init__(self, session: aiohttp.ClientSession, url: str, code: str) -> None:
        self.session, self.url, self.code = session, url, code
        self.key = SigningKey.generate()
        self.address = self.token = ""

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        kwargs: dict[str, Any] = {"json": body} if raw is None else {"data": raw}
        async with self.session.request(method, self.url + path, headers=headers,
                                        **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def open(self) -> None:
        status, body = await self.call("POST", "/v1/wallets", {
            "public_key_pem": self.key.public.to_pem().decode(), "phone": "13900139000"})
        assert status == 201, body
        self.address = body["address"]
        status, body = await self.call("POST", "/v1/sessions/challenge",
                                       {"address": self.address})
        signature = self.key.sign(login_message(self.code, self.address, body["challenge"]))
        status, body = await self.call("POST", "/v1/sessions", {
            "address": self.address, "challenge": body["challenge"],
            "signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode()})
        assert status == 200, body
        self.token = body["token"]

    async def balance(self) -> int:
        status, body = await self.call("GET", f"/v1/wallets/{self.address}")
        assert status == 200, body
        return int(body["balance"])

    async def pay(self, payee: str, amount: int, sequence: int) -> tuple[int, Any]:
        order = PaymentOrder(payer=parse_address(self.address), payee=parse_address(payee),
                             amount=amount, sequence=sequence,
                             expires=int(time.time()) + 120)
        return await self.call("POST", "/v1/payments",
                               raw=order.sign(self.key).to_json().encode())


async def test_wallets_at_two_bank_processes_pay_each_other(system: System) -> None:
    """Alice (bank A) and Bob (bank B) pay each other through the central bank, each bank a
    process of its own; both see the new balances and `cbdc reconcile` is clean."""
    async with aiohttp.ClientSession() as session:
        alice = Wallet(session, system.banks["BANKA"], "BANKA")
        bob = Wallet(session, system.banks["BANKB"], "BANKB")
        await alice.open()
        await bob.open()
        status, body = await alice.call("POST", f"/v1/wallets/{alice.address}/deposit-account")
        deposit = body["deposit_account"]["number"]
        status, body = await alice.call(
            "POST", f"/v1/teller/deposits/{deposit}/cash-in",
            {"id": str(uuid.uuid4()), "amount": 600 * CNY},
            token=teller_token(system.settings, "BANKA"))
        assert status == 201, body
        status, body = await alice.call("POST", f"/v1/wallets/{alice.address}/top-up",
                                        {"id": str(uuid.uuid4()), "amount": 600 * CNY})
        assert status == 200, body

        status, body = await alice.pay(bob.address, 250 * CNY, sequence=1)
        assert (status, body["status"]) == (201, "settled"), body
        for _ in range(100):
            if await bob.balance() == 250 * CNY:
                break
            await asyncio.sleep(0.05)
        assert await bob.balance() == 250 * CNY
        status, body = await bob.pay(alice.address, 50 * CNY, sequence=1)
        assert (status, body["status"]) == (201, "settled"), body
        for _ in range(100):
            if await alice.balance() == 400 * CNY:
                break
            await asyncio.sleep(0.05)
        assert (await alice.balance(), await bob.balance()) == (400 * CNY, 200 * CNY)

    reconciled = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cbdc.cli", "reconcile"], cwd=REPO_ROOT,
        env=system.env, capture_output=True, text=True, timeout=120, check=False)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "reconciled: clean" in reconciled.stdout
