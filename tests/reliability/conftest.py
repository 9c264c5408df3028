"""Fixtures of the reliability suite.

    profile           "quick" (the default suite's) or "long" (CBDC_RELIABILITY=long)
    seed              the test's random seed: CBDC_SEED when set, else a fresh one; printed,
                      and shown in the report of a failing test. A replay makes the same
                      draws (what is killed and when, payers, payees, amounts, which
                      answers a proxy loses); how concurrent clients interleave still
                      follows the machine's timing
    private_postgres  session: a PostgreSQL of the suite's own (pgserver's binaries in a
                      temporary folder) that tests may crash, restart and reconfigure
    private_redis     function: a redis-server of the test's own, started
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.reliability.api_support import seeded
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
    value = seeded(request.node.nodeid)
    request.node.add_report_section(
        "setup", "seed", f"seed {value}: replay with CBDC_SEED={value} pytest "
        f"'{request.node.nodeid}'")
    return value


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under pytest's temporary folder: every pytest run (of any worktree) resets
    # that folder to owner-only, and as root PostgreSQL runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="cbdc-reliability-pg-"))
    try:
        server = PrivatePostgres(folder / "pg")
        try:
            yield server
        finally:
            server.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
