"""After every test that used a database: each ledger in it still verifies.

The chain of blocks must verify with the ledger's key, and the checkpointed balances
must equal what the journal of transfers adds up to (so debits equal credits). A test
that damages a ledger on purpose says so with `@pytest.mark.tampers`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cbdc.signing import VerifyingKey
from settlement.audit import verify_store
from settlement.store import LedgerStore


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Set up first, so it is torn down last: after the test's engines are closed and
    # before its database is dropped. The hook sees the whole session's items; only this
    # folder's can use the fixture.
    here = Path(__file__).parent
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is not None and "database_url" in names and item.path.is_relative_to(here) \
                and not item.get_closest_marker("tampers"):
            names.insert(0, "ledgers_still_verify")


@pytest.fixture
async def ledgers_still_verify(database_url: str) -> AsyncIterator[None]:
    yield
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        for row in await pool.fetch("SELECT ledger, public_key FROM ledgers"):
            store = LedgerStore(pool, row["ledger"], database_url)
            report = await verify_store(store, VerifyingKey.from_der(bytes(row["public_key"])))
            assert report.ok, report.summary() + "; " + "; ".join(report.balance_breaks)
    finally:
        await pool.close()
