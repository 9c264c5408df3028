"""`cbdc bench retail` against the real servers (PostgreSQL, Redis, the central bank and two
commercial banks as processes), with tiny numbers.

Asserts what a user checks after a run: the report has its figures, both phases settled
payments, the books reconcile, and the run left neither its server processes nor its
databases behind, also when interrupted; and that it never touches databases it did not
create. Never timing values.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from types import SimpleNamespace
from typing import Any

import asyncpg
import psutil
import pytest

from cbdc.errors import CbdcError, ConfigError
from cbdc.http_metrics import parse_samples
from cbdc.kyc import validate_resident_id
from loadtest.retail_bench import (
    RetailBenchOptions,
    database_names,
    main,
    run,
)
from loadtest.seeding import resident_id
from tests.integration.run_checks import databases_like, running_children

REPORT_KEYS = {
    "same_bank_tps", "same_bank_p50_ms", "same_bank_p99_ms", "same_bank_by_bank",
    "cross_bank_tps", "cross_bank_p50_ms", "cross_bank_p99_ms", "cross_bank_booked_p99_ms",
    "cross_bank_latency_source", "reconciled", "duration_s", "wallets", "clients",
    "server_pids", "databases", "databases_dropped", "cpu_same_bank", "servers_cross_bank",
}


def tiny(prefix: str, **changes: Any) -> dict[str, Any]:
    return {"duration": 1.0, "wallets": 4, "clients": 2, "cross_rate": 20.0, "seed": 7,
            "warmup": 0.2, "drain": 10.0, "database_prefix": prefix, **changes}


@pytest.fixture
def prefix() -> str:
    return f"cbdc_rbt{os.getpid()}_{uuid.uuid4().hex[:6]}_"


def is_positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def assert_report(report: dict[str, Any]) -> None:
    json.dumps(report, allow_nan=False)  # plain JSON
    assert report.keys() >= REPORT_KEYS
    assert is_positive_number(report["same_bank_tps"])
    assert is_positive_number(report["cross_bank_tps"])
    assert is_positive_number(report["cross_bank_p99_ms"])
    assert report["reconciled"] is True, report["reconcile_breaks"]
    assert report["same_bank_rejected"] == report["same_bank_errors"] == 0
    assert report["cross_bank_rejected"] == report["cross_bank_errors"] == 0
    assert report["cross_bank_settled"] == report["cross_bank_sent"] > 0
    assert report["cross_bank_not_booked"] == 0
    assert set(report["same_bank_by_bank"]) == {"BANKA", "BANKB"}
    for figures in report["same_bank_by_bank"].values():
        assert figures["payments"] > 0
    assert report["databases_dropped"] is True
    # Where the payer bank's time went, stage by stage, in the phase between banks.
    stages = report["servers_cross_bank"]["BANKA"]["interbank_stages_mean_ms"]
    assert list(stages) == ["payee_check", "hold", "settlement", "post"]
    assert all(is_positive_number(ms) for ms in stages.values())
    assert report["servers_same_bank"]["BANKA"]["interbank_stages_mean_ms"] == {}


async def test_run_pays_in_both_phases_reconciles_and_cleans_up(
        pg_server_url: str, redis_url: str, prefix: str) -> None:
    report = await run(pg_server_url, redis_url, RetailBenchOptions(**tiny(prefix)))

    assert_report(report)
    assert report["cross_bank_latency_source"] == "stream"  # the banks serve live events
    # The baseline paid between the same wallets and kept its books.
    assert report["baseline"] is True
    assert report["baseline_balanced"] is True
    assert is_positive_number(report["baseline_same_bank_tps"])
    assert report["baseline_same_bank_rejected"] == 0
    assert report["ratio_same_bank"] == pytest.approx(  # of the figures before rounding
        report["same_bank_tps"] / report["baseline_same_bank_tps"], rel=1e-3)
    assert report["cross_bank_shown"] == report["cross_bank_settled"]
    assert set(report["server_pids"]) == {"central_bank", "BANKA", "BANKB"}
    for pid in report["server_pids"].values():
        assert not psutil.pid_exists(pid)
    assert not running_children()
    assert sorted(report["databases"]) == sorted(database_names(prefix).values())
    assert await databases_like(pg_server_url, prefix) == []


async def test_main_prints_one_json_object(pg_server_url: str, redis_url: str, prefix: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = SimpleNamespace(**tiny(prefix), json=True, force=None, baseline=False,
                           unknown_option=None)
    endpoints = SimpleNamespace(database_url=pg_server_url, redis_url=redis_url)

    code = await main(args, endpoints, None)

    out = capsys.readouterr().out
    report = json.loads(out)  # exactly one JSON document, nothing else on stdout
    assert code == 0
    assert_report(report)
    assert report["baseline"] is False  # --no-baseline
    assert not running_children()
    assert await databases_like(pg_server_url, prefix) == []


async def test_refuses_to_touch_existing_databases_unless_forced(
        pg_server_url: str, redis_url: str, prefix: str) -> None:
    taken = database_names(prefix)["BANKB"]
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{taken}"')
        with pytest.raises(CbdcError, match="--force"):
            await run(pg_server_url, redis_url, RetailBenchOptions(**tiny(prefix)))
        # Refused before anything started, and the database is left as it was.
        assert not running_children()
        assert await databases_like(pg_server_url, prefix) == [taken]

        report = await run(pg_server_url, redis_url,
                           RetailBenchOptions(**tiny(prefix, force=True)))
        assert report["reconciled"] is True
        assert await databases_like(pg_server_url, prefix) == []
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{taken}" WITH (FORCE)')
        await admin.close()


async def test_an_interrupted_run_stops_its_servers_and_drops_its_databases(
        pg_server_url: str, redis_url: str, prefix: str) -> None:
    options = RetailBenchOptions(**tiny(prefix, duration=60.0))
    task = asyncio.create_task(run(pg_server_url, redis_url, options))
    async with asyncio.timeout(120):
        while len(running_children()) < 3:  # wait until all three run, then Ctrl-C
            assert not task.done()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.sleep(0.2)
        task.cancel()  # a second Ctrl-C while it stops the servers
        with pytest.raises(asyncio.CancelledError):
            await task

    assert not running_children()
    assert await databases_like(pg_server_url, prefix) == []


def test_options_keep_defaults_for_missing_arguments_and_refuse_bad_ones() -> None:
    options = RetailBenchOptions.from_args(
        SimpleNamespace(duration=None, wallets=50, json=True, cross_rate=None),
        SimpleNamespace(batch_max_events=100, timezone="UTC", limit_preset="later"))
    assert (options.duration, options.wallets, options.clients, options.cross_rate) == (
        10.0, 50, 32, 500.0)
    assert options.json is True
    assert options.force is False
    assert (options.max_events, options.timezone, options.limit_preset) == (100, "UTC",
                                                                            "later")
    for bad in ({"wallets": 1}, {"clients": 1}, {"cross_rate": 0.0}, {"duration": -1.0},
                {"database_prefix": "Bad-Prefix"}):
        with pytest.raises(ConfigError):
            RetailBenchOptions(**bad).validate()


def test_testers_resident_ids_are_valid_and_distinct() -> None:
    ids = [resident_id(i) for i in (0, 1, 999, 1000, 123_456)]
    assert len(set(ids)) == len(ids)
    for number in ids:
        assert validate_resident_id(number) == number


def test_metrics_samples_keep_routes_with_braces() -> None:
    text = ("# HELP cbdc_http_requests_total HTTP requests answered\n"
            'cbdc_http_request_seconds_count{route="/v1/receivable/{address}"} 12.0\n'
            "cbdc_ledger_commits_total 5.0\n")
    assert parse_samples(text) == {
        'cbdc_http_request_seconds_count{route="/v1/receivable/{address}"}': 12.0,
        "cbdc_ledger_commits_total": 5.0}
