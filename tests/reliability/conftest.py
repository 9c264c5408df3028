"""Fixtures of the reliability suite.

    profile           "quick" (the default suite's) or "long" (CBDC_RELIABILITY=long)
    seed              the test's random seed: CBDC_SEED when set, else a fresh one; printed,
                      and shown in the report of a failing test, so a run can be replayed
    private_postgres  session: a PostgreSQL of the suite's own (pgserver's binaries in a
                      temporary folder) that tests may crash, restart and reconfigure
    private_redis     function: a redis-server of the test's own, started
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.reliability.stores import PrivatePostgres, PrivateRedis

PROFILES = ("quick", "long")


@pytest.fixture(scope="session")
def profile() -> str:
    value = os.environ.get("CBDC_RELIABILITY", "quick").strip().lower() or "quick"
    if value not in PROFILES:
        raise pytest.UsageError(f"CBDC_RELIABILITY must be one of {', '.join(PROFILES)}, "
                                f"not {value!r}")
    return value


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    text = os.environ.get("CBDC_SEED", "").strip()
    try:
        value = int(text) if text else random.SystemRandom().randrange(1 << 32)
    except ValueError:
        raise pytest.UsageError(f"CBDC_SEED must be a whole number, not {text!r}") from None
    replay = f"seed {value}: replay with CBDC_SEED={value} pytest '{request.node.nodeid}'"
    print(replay)
    request.node.add_report_section("setup", "seed", replay)
    return value


@pytest.fixture(scope="session")
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(tmp_path_factory.mktemp("private-pg") / "pg")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
