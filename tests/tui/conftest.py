"""Terminal wallet tests: a real central bank and two banks (BANKA, BANKB).

`network` (bank_harness's `two_banks`) runs on the real clock; `fixed_network` on a
clock that starts at a fixed time and steps one microsecond per reading, so what the
snapshots show (times, limits' reset dates) is the same on every run. After each test
the books of both agree (`checked_network`). The time zone is fixed for every test here.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.bank_harness import Network, checked_network, two_banks

__all__ = ["two_banks"]  # fixture

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
def network(two_banks: Network) -> Network:
    return two_banks


@pytest.fixture
async def fixed_network(make_database: Callable[[], Awaitable[str]], redis_url: str,
                        tmp_path: Path) -> AsyncIterator[Network]:
    ticks = itertools.count()

    def clock() -> int:
        return FIXED_START_NS + next(ticks) * 1_000

    async with checked_network(make_database, redis_url, tmp_path, ("BANKA", "BANKB"),
                               clock=clock) as net:
        yield net
