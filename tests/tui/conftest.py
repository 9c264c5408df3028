"""Terminal wallet tests: a real central bank and two banks (BANKA, BANKB).

`network` runs on the real clock; `fixed_network` on a clock that starts at a fixed time
and steps one microsecond per reading, so what the snapshots show (times, limits'
reset dates) is the same on every run. The time zone is fixed for every test here.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.bank_harness import Network, running_network

FIXED_START_NS = 1_767_233_400 * 1_000_000_000  # 2026-01-01 10:10 in Shanghai


@pytest.fixture(autouse=True)
def shanghai_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The wallet shows local times: make local time the same on every machine."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
async def network(make_database: Callable[[], Awaitable[str]], redis_url: str,
                  tmp_path: Path) -> AsyncIterator[Network]:
    async with running_network(make_database, redis_url, tmp_path,
                               codes=("BANKA", "BANKB")) as net:
        yield net


@pytest.fixture
async def fixed_network(make_database: Callable[[], Awaitable[str]], redis_url: str,
                        tmp_path: Path) -> AsyncIterator[Network]:
    ticks = itertools.count()

    def clock() -> int:
        return FIXED_START_NS + next(ticks) * 1_000

    async with running_network(make_database, redis_url, tmp_path,
                               codes=("BANKA", "BANKB"), clock=clock) as net:
        yield net
