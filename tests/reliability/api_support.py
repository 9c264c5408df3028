"""Helpers the reliability tests of the HTTP APIs share (a module, not a conftest).

    seeded(name)          a seed from CBDC_SEED or fresh, printed so a failure replays
    long_profile()        True under CBDC_RELIABILITY=long
    NetworkInThread       the same services in a thread of their own, for blocking callers
    services              fixture (module): a NetworkInThread of banks A and B; after the
                          module the books agree (bank_harness.assert_books_agree)

Import the fixture into a test module by name (`from tests.reliability.api_support
import services`); pytest finds it there. The `network` and `two_banks` fixtures are
tests.integration.bank_harness's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from tests.conftest import drop_database, with_database
from tests.integration.bank_harness import (
    Network,
    assert_books_agree,
    running_network,
    settle_in_flight,
)

SEED_VARIABLE = "CBDC_SEED"
CI_SEED = 20261124
T = TypeVar("T")


def long_profile() -> bool:
    """The long profile runs more cases: CBDC_RELIABILITY=long."""
    return os.environ.get("CBDC_RELIABILITY", "").lower() == "long"


def seeded(name: str) -> int:
    """The seed of one randomised test, printed so a failing run's output says how to
    replay it: CBDC_SEED if set (to replay); under CI (`CI` set) one fixed seed, so CI's
    verdict is about the change and not about the draw; else a fresh one, so every
    developer's run explores new cases (as the long profile does)."""
    text = os.environ.get(SEED_VARIABLE, "").strip()
    if text:
        try:
            seed = int(text)
        except ValueError:
            raise pytest.UsageError(
                f"{SEED_VARIABLE} must be a whole number, not {text!r}") from None
    elif os.environ.get("CI"):
        seed = CI_SEED
    else:
        seed = random.SystemRandom().randrange(1 << 32)
    print(f"{name}: seed {seed} (replay with {SEED_VARIABLE}={seed})")
    return seed


class NetworkInThread:
    """A `running_network` served from a thread of its own with its own event loop, for
    callers that block (schemathesis sends its requests with `requests`).

        with NetworkInThread(pg_server_url, template, redis_url, folder) as services:
            services.run(services.network.wallet("BANKA"))  # a coroutine, run there
    """

    def __init__(self, pg_server_url: str, template: str, redis_url: str, data_dir: Path,
                 codes: tuple[str, ...] = ("BANKA", "BANKB")) -> None:
        self.pg_server_url = pg_server_url
        self.template = template
        self.redis_url = redis_url
        self.data_dir = data_dir
        self.codes = codes
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="services",
                                       daemon=True)
        self.databases: list[str] = []
        self.stack = contextlib.AsyncExitStack()
        self._network: Network | None = None

    @property
    def network(self) -> Network:
        assert self._network is not None, "the services are not running"
        return self._network

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _make_database(self) -> str:
        name = f"cbdc_fuzz_{os.getpid()}_{len(self.databases) + 1}"
        admin = await asyncpg.connect(self.pg_server_url)
        try:
            await drop_database(admin, name)
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        finally:
            await admin.close()
        self.databases.append(name)
        return with_database(self.pg_server_url, name)

    async def _start(self) -> None:
        self._network = await self.stack.enter_async_context(running_network(
            self._make_database, self.redis_url, self.data_dir, codes=self.codes))

    async def _stop(self) -> None:
        try:
            await self.stack.aclose()
        finally:
            admin = await asyncpg.connect(self.pg_server_url)
            try:
                for name in self.databases:
                    await drop_database(admin, name)
            finally:
                await admin.close()

    def __enter__(self) -> NetworkInThread:
        self.thread.start()
        try:
            self.run(self._start())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def services(pg_server_url: str, template_database: str, redis_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkInThread]:
    """The central bank and banks A and B in a thread, for one module of blocking tests;
    afterwards the books agree (`assert_books_agree`)."""
    folder: Path = tmp_path_factory.mktemp("services")
    with NetworkInThread(pg_server_url, template_database, redis_url, folder) as running:
        yield running
        running.run(settle_in_flight(running.network))
        running.run(assert_books_agree(running.network))
