"""`cbdc audit` as an operator runs it: against the database and against an export."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from cbdc.signing import SigningKey
from settlement import Account, Engine, Transfer

CBDC = [sys.executable, "-m", "cbdc.cli"]


async def run_cbdc(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *CBDC, *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.fixture
def cbdc_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env |= {"CBDC_DATABASE_URL": database_url, "CBDC_REDIS_URL": redis_url,
            "CBDC_DATA_DIR": str(tmp_path / "data")}
    return env


async def seed_chain(database_url: str, key: SigningKey) -> None:
    engine = await Engine.open(database_url, key=key)
    try:
        ledger = await engine.ledger(1)
        await ledger.create_accounts([Account(id=1, ledger=1, code=1),
                                      Account(id=2, ledger=1, code=1)])
        for n in range(1, 6):
            await ledger.create_transfers([Transfer(id=100 + n, debit_account_id=1,
                                                    credit_account_id=2, amount=n * 100,
                                                    ledger=1, code=1)])
    finally:
        await engine.close()


@pytest.mark.tampers
async def test_audit_verify_names_the_block_of_a_changed_transfer(
    database_url: str, cbdc_env: dict[str, str], tmp_path: Path
) -> None:
    """A clean chain verifies (exit 0); after one stored transfer is changed, `cbdc audit
    verify` exits 1 and names that transfer's block; an export taken before the change
    still verifies offline with the ledger's public key."""
    key = SigningKey.generate()
    await seed_chain(database_url, key)
    code, output = await run_cbdc("audit", "verify", "--ledger", "1", env=cbdc_env)
    assert code == 0, output
    assert "OK, 6 blocks" in output

    export = tmp_path / "chain.jsonl"
    code, output = await run_cbdc("audit", "export", "--ledger", "1", "--out", str(export),
                                  env=cbdc_env)
    assert code == 0, output
    public_key = tmp_path / "ledger.pub.pem"
    public_key.write_bytes(key.public.to_pem())

    conn = await asyncpg.connect(database_url)
    try:
        height = await conn.fetchval(
            "UPDATE transfers SET amount = 299 WHERE amount = 300 RETURNING block_height")
    finally:
        await conn.close()
    code, output = await run_cbdc("audit", "verify", "--ledger", "1", env=cbdc_env)
    assert code == 1
    assert f"FAILED at block {height}" in output
    assert "Merkle root" in output

    code, output = await run_cbdc("audit", "verify", "--file", str(export), "--public-key",
                                  str(public_key), env=cbdc_env)
    assert code == 0, output
    wrong_key = tmp_path / "other.pub.pem"
    wrong_key.write_bytes(SigningKey.generate().public.to_pem())
    code, output = await run_cbdc("audit", "verify", "--file", str(export), "--public-key",
                                  str(wrong_key), env=cbdc_env)
    assert code == 1
    assert "FAILED at block 1" in output
    assert "signature" in output
