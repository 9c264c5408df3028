"""The whole system as real processes, for tests that kill, restart and disturb it.

The central bank and each commercial bank run as `python -m cbdc.cli ...` processes
(started, watched and stopped with `loadtest.retail_bench`'s helpers), on one PostgreSQL
server and one Redis, under a database prefix of the test's own. A bank may be pointed
at the central bank through a `FaultProxy`. Wallets are opened, upgraded to class 1 and
funded exactly as `cbdc bench retail` seeds them.

    cluster = Cluster(server_url, redis_url, tmp_path, codes=("BANKA", "BANKB"))
    await cluster.start(session)
    await cluster.kill("BANKA"); seconds = await cluster.restart(session, "BANKA")
    await cluster.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cbdc.processes import Service, unused_port, wait_healthy
from cbdc.settings import Settings
from cbdc.storage import database_url_for
from central_bank.bench import drop_database
from commercial_bank.run import database_name, operator_key, register_operator, teller_token
from loadtest.network import CENTRAL_BANK_SERVICE, child_env, start_service, stop_all
from loadtest.retail_bench import RetailBenchOptions
from loadtest.seeding import BenchWallet, seed_wallet

READY_WITHIN_S = 30.0  # a restarted service answers again within this (the bound)
REQUEST_TIMEOUT_S = 10.0
RESERVES = 10**12


@dataclass
class Answer:
    """The first definite answer to a payment order, however many attempts it took."""

    status: int
    body: Any
    attempts: int

    @property
    def acknowledged(self) -> bool:
        return self.status == 201

    @property
    def payment_id(self) -> int:
        return uuid.UUID(self.body["id"]).int


@dataclass
class Cluster:
    server_url: str  # maintenance DSN of the PostgreSQL server
    redis_url: str
    folder: Path
    codes: tuple[str, ...] = ("BANKA", "BANKB")
    float_target: int = 10_000_000
    prefix: str = field(default_factory=lambda: f"rel{os.getpid()}_{uuid.uuid4().hex[:6]}_")
    services: dict[str, Service] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    starts: int = 0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.token = "reliability-admin-" + uuid.uuid4().hex
        self.settings = Settings(data_dir=self.folder, admin_token=self.token,
                                 database_prefix=self.prefix)
        cb_port = unused_port()
        ports = {code: unused_port() for code in self.codes}
        self.urls = {CENTRAL_BANK_SERVICE: f"http://127.0.0.1:{cb_port}"}
        self.urls |= {code: f"http://127.0.0.1:{port}" for code, port in ports.items()}
        self.env = child_env(self.server_url, self.redis_url, self.folder, self.token, cb_port,
                             ports, self.float_target,
                             RetailBenchOptions(database_prefix=self.prefix))
        self.argv[CENTRAL_BANK_SERVICE] = ["central-bank", "--host", "127.0.0.1", "--port",
                                           str(cb_port)]
        self.tellers = {code: teller_token(self.settings, code) for code in self.codes}

    # ------------------------------------------------------------ processes
    def database_url(self, name: str) -> str:
        database = (self.settings.service_database(CENTRAL_BANK_SERVICE)
                    if name == CENTRAL_BANK_SERVICE else database_name(self.settings, name))
        return database_url_for(self.server_url, database)

    async def _launch(self, session: aiohttp.ClientSession, name: str) -> float:
        self.starts += 1
        started = time.monotonic()
        service = await start_service(name, self.urls[name], self.argv[name], self.env,
                                      self.folder / f"{name.lower()}-{self.starts}.log")
        self.services[name] = service
        await wait_healthy(session, service)
        return time.monotonic() - started

    async def start(self, session: aiohttp.ClientSession, *,
                    central_bank_for_banks: str | None = None) -> None:
        """Start the central bank, register the banks, start them (each bank reaches
        the central bank at `central_bank_for_banks`: a proxy, or directly)."""
        central = self.urls[CENTRAL_BANK_SERVICE]
        await self._launch(session, CENTRAL_BANK_SERVICE)
        for code in self.codes:
            await register_operator(central, self.token, code,
                                    operator_key(self.settings, code), reserves=RESERVES)
        for code in self.codes:
            port = self.urls[code].rsplit(":", 1)[1]
            peers = [arg for other in self.codes if other != code
                     for arg in ("--peer", f"{other}={self.urls[other]}")]
            self.argv[code] = ["commercial-bank", "--code", code, "--port", port,
                               "--central-bank", central_bank_for_banks or central, *peers]
        await asyncio.gather(*(self._launch(session, code) for code in self.codes))

    @asynccontextmanager
    async def running(self, session: aiohttp.ClientSession, *,
                      central_bank_for_banks: str | None = None) -> AsyncIterator[Cluster]:
        """Started for the block; then stopped and its databases dropped. When the block
        fails, the tail of every service's log is printed with it."""
        try:
            await self.start(session, central_bank_for_banks=central_bank_for_banks)
            yield self
        except BaseException:
            print(self.logs())
            raise
        finally:
            await self.stop()
            await self.drop_databases()

    async def kill(self, name: str) -> None:
        """kill -9: no shutdown code runs."""
        service = self.services[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(service.pid, signal.SIGKILL)
        await service.proc.wait()

    async def restart(self, session: aiohttp.ClientSession, name: str) -> float:
        """Start `name` again; seconds until it answered /health."""
        return await self._launch(session, name)

    async def stop(self) -> None:
        await stop_all(list(self.services.values()))

    async def drop_databases(self) -> None:
        for name in (CENTRAL_BANK_SERVICE, *self.codes):
            database = self.database_url(name).rsplit("/", 1)[1]
            await drop_database(self.server_url, database)

    def logs(self) -> str:
        """The tail of every service log, for a failure message."""
        tails = []
        for path in sorted(self.folder.glob("*.log")):
            lines = path.read_text(errors="replace").strip().splitlines()[-8:]
            tails.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(tails)

    # -------------------------------------------------------------- wallets
    async def seed_wallets(self, session: aiohttp.ClientSession, per_bank: int
                           ) -> dict[str, list[BenchWallet]]:
        """`per_bank` funded class-1 wallets at each bank (a few at a time)."""
        limit = asyncio.Semaphore(8)

        async def one(code: str, index: int) -> BenchWallet:
            async with limit:
                return await seed_wallet(session, self.urls[code], code, self.tellers[code],
                                         index)

        made = await asyncio.gather(*(one(code, b * per_bank + i)
                                      for b, code in enumerate(self.codes)
                                      for i in range(per_bank)))
        return {code: [w for w in made if w.code == code] for code in self.codes}

    async def pay(self, session: aiohttp.ClientSession, code: str, order: bytes, *,
                  patience: float = 90.0) -> Answer:
        """POST a signed order to its bank until a definite answer."""
        return await self.until_answered(session, self.urls[code] + "/v1/payments",
                                         patience=patience, data=order,
                                         headers={"Content-Type": "application/json"})

    async def move(self, session: aiohttp.ClientSession, wallet: BenchWallet, kind: str,
                   body: dict[str, Any], *, patience: float = 90.0) -> Answer:
        """A wallet's top-up or redemption (`kind`), sent until a definite answer."""
        return await self.until_answered(
            session, f"{self.urls[wallet.code]}/v1/wallets/{wallet.text}/{kind}",
            patience=patience, json=body, headers={"Authorization": f"Bearer {wallet.token}"})

    async def until_answered(self, session: aiohttp.ClientSession, url: str, *,
                             patience: float, **request: Any) -> Answer:
        """POST until a definite answer (2xx, or 4xx other than 429): a lost answer, a
        service that is down or a 5xx is retried with the same body (so the same id)."""
        deadline = time.monotonic() + patience
        attempts = 0
        while True:
            attempts += 1
            try:
                async with session.post(url, timeout=aiohttp.ClientTimeout(
                        total=REQUEST_TIMEOUT_S), **request) as response:
                    body = await response.json(content_type=None)
                    if response.status < 500 and response.status != 429:
                        return Answer(response.status, body, attempts)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"POST {url} got no definite answer within "
                                     f"{patience:g} s ({attempts} attempts)")
            await asyncio.sleep(0.2)

    async def cash_in(self, session: aiohttp.ClientSession, wallet: BenchWallet,
                      amount: int) -> None:
        """A teller pays `amount` into the wallet's (already linked) deposit account."""
        url = self.urls[wallet.code]
        async with session.post(f"{url}/v1/wallets/{wallet.text}/deposit-account",
                                headers={"Authorization": f"Bearer {wallet.token}"}
                                ) as response:
            assert response.status == 200, await response.text()
            number = (await response.json())["deposit_account"]["number"]
        async with session.post(f"{url}/v1/teller/deposits/{number}/cash-in",
                                json={"id": str(uuid.uuid4()), "amount": amount},
                                headers={"Authorization": f"Bearer {self.tellers[wallet.code]}"}
                                ) as response:
            assert response.status == 201, await response.text()

def pick(rng: random.Random, wallets: Sequence[BenchWallet], hot: int, hot_share: float
         ) -> BenchWallet:
    """A wallet: one of the first `hot` with probability `hot_share`, else any."""
    if hot and rng.random() < hot_share:
        return wallets[rng.randrange(hot)]
    return wallets[rng.randrange(len(wallets))]
