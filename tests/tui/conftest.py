"""Terminal wallet tests: a real central bank and two banks (BANKA, BANKB)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.integration.bank_harness import Network, running_network


@pytest.fixture
async def network(make_database: Callable[[], Awaitable[str]], redis_url: str,
                  tmp_path: Path) -> AsyncIterator[Network]:
    async with running_network(make_database, redis_url, tmp_path,
                               codes=("BANKA", "BANKB")) as net:
        yield net
