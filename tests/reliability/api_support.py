"""Helpers the reliability tests of the HTTP APIs share (a module, not a conftest).

    network / two_banks   fixtures: `running_network` with one bank or banks A and B;
                          after the test every bank's e-CNY equals its position at the
                          central bank and `cbdc reconcile` is clean
    seeded(name)          a seed from CBDC_SEED or fresh, printed so a failure replays
    long_profile()        True under CBDC_RELIABILITY=long

Import the fixtures into a test module by name (`from tests.reliability.api_support
import network`); pytest finds them there.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from commercial_bank import accounts as chart
from commercial_bank.keys import BANK
from loadtest.reconcile import reconcile
from tests.integration.bank_harness import Network, running_network

SEED_VARIABLE = "CBDC_SEED"


def long_profile() -> bool:
    """The long profile runs more cases: CBDC_RELIABILITY=long."""
    return os.environ.get("CBDC_RELIABILITY", "").lower() == "long"


def seeded(name: str) -> int:
    """The seed of one randomised test: CBDC_SEED if set (to replay), else a fresh one;
    printed either way, so a failing run's output says how to replay it."""
    text = os.environ.get(SEED_VARIABLE)
    seed = int(text) if text else random.SystemRandom().randrange(1 << 32)
    print(f"{name}: seed {seed} (replay with {SEED_VARIABLE}={seed})")
    return seed


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


async def assert_books_agree(network: Network) -> None:
    """Each bank's e-CNY equals its central bank position, and `cbdc reconcile` (supply,
    both ends of every interbank transfer, every chain) is clean."""
    for code in network.banks:
        held, position = await bank_ecny(network, code)
        assert held == position, f"{code}: ledger holds {held}, central bank says {position}"
    report = await reconcile(network.central_bank.database_url,
                             {code: bank.database_url for code, bank in network.banks.items()})
    assert report.clean, "\n".join(report.lines)


async def settle_in_flight(network: Network, seconds: float = 5.0) -> None:
    """Wait until no bank has money in flight to another bank (the payee bank has booked
    every credit from the central bank's feed)."""
    for _ in range(int(seconds / 0.05)):
        in_flight = 0
        for bank in network.banks.values():
            writer = bank.runner.app[BANK].ledger
            [account] = await writer.lookup_accounts([chart.system_id(bank.code,
                                                                      "in_flight")])
            in_flight += account.credit_balance if account else 0
        if not in_flight:
            return
        await asyncio.sleep(0.05)


@pytest.fixture
async def network(make_database: Callable[[], Awaitable[str]], redis_url: str,
                  tmp_path: Path) -> AsyncIterator[Network]:
    async with running_network(make_database, redis_url, tmp_path) as network:
        yield network
        await assert_books_agree(network)


@pytest.fixture
async def two_banks(make_database: Callable[[], Awaitable[str]], redis_url: str,
                    tmp_path: Path) -> AsyncIterator[Network]:
    async with running_network(make_database, redis_url, tmp_path,
                               codes=("BANKA", "BANKB")) as network:
        yield network
        await settle_in_flight(network)
        await assert_books_agree(network)
