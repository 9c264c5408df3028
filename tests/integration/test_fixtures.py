"""The test fixtures isolate tests: a fresh database each, a Redis key prefix each."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio

_seen: dict[str, str] = {}


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_gets_a_fresh_database(database_url: str, run: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('scratch')") is None
        await conn.execute("CREATE TABLE scratch (run int)")
        assert await conn.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE namespace = 'settlement'"
        ) == len(list(_settlement_migrations()))
    finally:
        await conn.close()
    assert _seen.setdefault(f"database-{run}", database_url) == database_url
    if run == 2:
        assert _seen["database-1"] != database_url


def _settlement_migrations() -> list[str]:
    from cbdc.migrations import migration_sources

    return sorted(path.name for path in migration_sources()[0][1].glob("*.sql"))


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_gets_its_own_redis_keys(
    redis_client: redis.asyncio.Redis, redis_prefix: str, run: int
) -> None:
    if run == 2:  # the first run's keys were deleted when it ended
        assert await redis_client.exists(_seen["prefix-1"] + "wallet") == 0
        assert redis_prefix != _seen["prefix-1"]
    await redis_client.set(redis_prefix + "wallet", "seen")
    _seen[f"prefix-{run}"] = redis_prefix
