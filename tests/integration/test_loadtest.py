"""`cbdc loadtest`: short real runs (seconds, a few users) of the runner, Locust in its own
processes, its thresholds, distributed mode, and the reconciliation after the load."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from cbdc.settings import Settings
from cbdc.storage import database_url_for
from loadtest.runner import Acks, check_acks, main, read_acks
from tests.integration.central_bank_harness import ADMIN_TOKEN, running_central_bank
from tests.integration.run_checks import databases_like, running_children

SUMMARY_KEYS = {"requests_per_s", "transfers_per_s", "p50_ms", "p95_ms", "p99_ms",
                "failures", "reconciled", "acknowledged", "server_mean_batch",
                "server_mean_commit_ms", "crossed", "run_dir"}


@pytest.fixture
def prefix() -> str:
    return f"cbdc_lt{os.getpid()}_{uuid.uuid4().hex[:6]}_"


def args(prefix: str, run_dir: Path, scenario: str, **changes: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"scenario": scenario, "users": 4, "duration": 3.0,
                              "workers": 1, "database_prefix": prefix,
                              "run_dir": str(run_dir), "json": True, **changes})


async def run_main(namespace: SimpleNamespace, pg_server_url: str, redis_url: str,
                   capsys: pytest.CaptureFixture[str], settings: Settings | None = None
                   ) -> tuple[int, dict[str, Any]]:
    endpoints = SimpleNamespace(database_url=pg_server_url, redis_url=redis_url)
    code = await main(namespace, endpoints, settings)
    summary = json.loads(capsys.readouterr().out)  # one JSON object, nothing else
    assert summary.keys() >= SUMMARY_KEYS
    assert not running_children("locust")
    assert not running_children("cbdc.cli")
    if getattr(namespace, "host", None) is None:  # an embedded network's books are dropped
        assert await databases_like(pg_server_url, namespace.database_prefix) == []
    return code, summary


async def test_settlement_run_reports_reconciles_and_exits_0(
        pg_server_url: str, redis_url: str, prefix: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    code, summary = await run_main(
        args(prefix, run_dir, "settlement", max_fail_ratio=0.0, max_p99_ms=60_000.0),
        pg_server_url, redis_url, capsys)

    assert code == 0, summary
    assert summary["reconciled"] is True, (summary["ack_problems"],
                                           summary["reconcile_breaks"])
    assert summary["requests"] > 0
    assert summary["failures"] == 0
    assert summary["crossed"] == []
    # Every single transfer the central bank settled was acknowledged and found.
    assert summary["acknowledged"] > 0
    assert summary["acks_missing"] == summary["acks_wrong_amount"] == 0
    assert summary["transfers_per_s"] > 0
    assert summary["p50_ms"] <= summary["p99_ms"]
    assert summary["server_mean_batch"] >= 1
    assert summary["server_mean_commit_ms"] > 0
    for report in ("report.html", "locust_stats.csv", "locust_stats_history.csv",
                   "summary.json"):
        assert (run_dir / report).stat().st_size > 0
    assert (run_dir / "seed.json").stat().st_mode & 0o077 == 0  # private keys inside
    assert read_acks(run_dir).count == summary["acknowledged"]


async def test_distributed_retail_run_crossing_a_threshold_exits_1(
        pg_server_url: str, redis_url: str, prefix: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    code, summary = await run_main(
        args(prefix, run_dir, "retail", workers=2, wallets=3, shape="step",
             min_tps=10.0**9),
        pg_server_url, redis_url, capsys)

    assert code == 1
    assert len(summary["crossed"]) == 1
    assert summary["crossed"][0].startswith("settled transfers/s")
    # The load itself went well, and the books still reconcile.
    assert summary["workers"] == 2
    assert summary["failures"] == 0
    assert summary["reconciled"] is True, (summary["ack_problems"],
                                           summary["reconcile_breaks"])
    names = {row["name"] for row in summary["by_name"]}
    assert names == {"/v1/payments (same bank)", "/v1/payments (cross bank)"}
    # Where the payments between banks spent their time, stage by stage.
    stages = summary["server_interbank_stages_mean_ms"]
    assert list(stages) == ["payee_check", "hold", "settlement", "post"]
    assert all(ms > 0 for ms in stages.values())
    # Each worker recorded what it was told: two processes, two acknowledgement logs.
    assert len(list(run_dir.glob("acks-*.txt"))) == 2
    assert len(list(run_dir.glob("locust-worker-*.log"))) == 2
    assert summary["acknowledged"] == summary["requests"]


async def test_a_running_central_bank_is_loaded_with_singles_and_batches_and_reconciled(
        pg_server_url: str, redis_url: str, template_database: str, prefix: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The network's own database, where `--host` looks for it (the configured prefix).
    name = f"{prefix}central_bank"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    settings = Settings(admin_token=ADMIN_TOKEN, database_prefix=prefix,
                        data_dir=tmp_path / "data")
    try:
        async with running_central_bank(database_url_for(pg_server_url, name),
                                        tmp_path / "data", operator_rate=100_000) as bank:
            code, summary = await run_main(
                args(prefix, tmp_path / "run", "settlement-mix", host=bank.url,
                     batch_size=50, banks=3, max_fail_ratio=0.0),
                pg_server_url, redis_url, capsys, settings)
            supply = await bank.supply()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    assert code == 0, summary
    assert summary["reconciled"] is True, summary["reconcile_breaks"]
    assert {row["name"] for row in summary["by_name"]} == {"/v1/transfers",
                                                           "/v1/transfers/batch"}
    # Batches of 50: far more transfers settled than requests sent.
    assert summary["acknowledged"] > summary["requests"]
    assert supply["balanced"] is True


@pytest.mark.tampers
async def test_an_acknowledged_transfer_missing_or_changed_in_the_ledger_is_reported(
        database_url: str) -> None:
    kept, changed, lost = (str(uuid.uuid4()) for _ in range(3))
    conn = await asyncpg.connect(database_url)
    try:
        # Two transfers in ledger 1, written the way the engine writes them: the
        # second after the first on both accounts' chains.
        for n, (transfer_id, amount) in enumerate(((kept, 25), (changed, 40)), start=1):
            await conn.execute(
                "INSERT INTO transfers (ledger, id, debit_account_id, credit_account_id, "
                "amount, user_data, timeout, code, flags, timestamp, block_height, "
                "debit_prev, debit_seq, credit_prev, credit_seq) "
                "VALUES (1, $1, $2, $3, $4, $5, 0, 1, 0, $6, 1, $7, $6, $7, $6)",
                uuid.UUID(transfer_id).bytes, b"\x01" * 16, b"\x02" * 16, amount,
                b"\x00" * 16, n, n - 1)
    finally:
        await conn.close()
    acks = Acks({"central_bank": {kept: 25, changed: 41, lost: 7}})

    found = await check_acks(acks, {"central_bank": database_url})

    assert found["acks_missing"] == 1
    assert found["acks_wrong_amount"] == 1
    assert any(lost in text for text in found["ack_problems"])
    assert any(changed in text and "40" in text for text in found["ack_problems"])


async def test_a_host_that_does_not_answer_is_a_clear_error(
        pg_server_url: str, redis_url: str, prefix: str, tmp_path: Path) -> None:
    from cbdc.errors import CbdcError
    from cbdc.processes import unused_port

    host = f"http://127.0.0.1:{unused_port()}"
    endpoints = SimpleNamespace(database_url=pg_server_url, redis_url=redis_url)
    with pytest.raises(CbdcError, match=f"central bank at {host} does not answer"):
        await main(args(prefix, tmp_path / "run", "settlement", host=host), endpoints,
                   Settings(data_dir=tmp_path / "data"))
    assert not running_children("locust")
