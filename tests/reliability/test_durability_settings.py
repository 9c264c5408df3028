"""Services refuse to start on a PostgreSQL that could lose an acknowledged commit in a
crash: fsync, synchronous_commit or full_page_writes off (on a private server, which this
test reconfigures and then restores)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.reliability.stores import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.reliability

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "central bank": ["central-bank", "--port", "1"],
    "commercial bank": ["commercial-bank", "--code", "BANKA", "--port", "1",
                        "--central-bank", "http://127.0.0.1:1"],
}


@pytest.mark.parametrize("setting", ["fsync", "synchronous_commit", "full_page_writes"])
async def test_services_refuse_a_server_that_is_not_durable(
        private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path,
        setting: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env |= {"CBDC_DATABASE_URL": private_postgres.url, "CBDC_REDIS_URL": private_redis.url,
            "CBDC_DATA_DIR": str(tmp_path / "data"), "CBDC_DATABASE_PREFIX": "durable_"}
    await private_postgres.set_durability(setting, "off")
    try:
        for service, argv in SERVICES.items():
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cbdc.cli", *argv, cwd=REPO_ROOT, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(process.communicate(), 60)
            lines = err.decode().strip().splitlines()
            assert process.returncode == 1, f"the {service} started: {out.decode()}"
            assert len(lines) == 1, lines
            assert lines[0].startswith("cbdc: error: PostgreSQL runs with "
                                       f"{setting}=off"), lines
    finally:
        await private_postgres.set_durability(setting, None)
