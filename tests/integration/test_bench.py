"""`cbdc bench ledger` against a real PostgreSQL, with tiny numbers.

Asserts what a user checks after a run: the report has its figures, both sides moved
money, the ledger balances, and the run left no database behind. Never timing values.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from cbdc.errors import ConfigError
from settlement import bench
from settlement.bench import BenchOptions, run

TINY = BenchOptions(duration=1.0, half_load_duration=1.0, accounts=2_000, submitters=2,
                    batch=64, naive_connections=2, hot_share=0.2, pgbench_scale=1,
                    pgbench_clients=2, seed=7)
REPORT_KEYS = {
    "engine_tps", "naive_tps", "pgbench_tps", "engine_p50_ms", "engine_p99_ms",
    "ratio_engine_naive", "engine_half_load_p50_ms", "engine_half_load_p99_ms", "accounts",
    "accounts_load_s", "peak_rss_mb", "balanced", "duration_s", "submitters", "batch",
}


@pytest.fixture
def reachable(pg_server_url: str) -> str:
    """The suite's PostgreSQL: the shared server, or an embedded one (never skipped)."""
    return pg_server_url


async def bench_databases(dsn: str) -> list[str]:
    """Databases of this process's bench runs still on the server."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                                f"{bench.bench_database_names()[0]}%")
    finally:
        await conn.close()
    return [r["datname"] for r in rows]


def is_positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


async def test_run_reports_both_sides_balances_and_cleans_up(reachable: str) -> None:
    report = await run(reachable, TINY)

    assert report.keys() >= REPORT_KEYS
    json.dumps(report, allow_nan=False)  # the report is plain JSON
    assert is_positive_number(report["engine_tps"])
    assert is_positive_number(report["naive_tps"])
    assert is_positive_number(report["ratio_engine_naive"])
    assert report["pgbench_tps"] is None or is_positive_number(report["pgbench_tps"])
    assert report["balanced"] is True
    assert report["acknowledged_matches"] is True
    assert report["naive_balanced"] is True
    assert report["engine_rejected"] == 0
    assert report["accounts"] == 2_000
    assert report["submitters"] == 2
    assert report["batch"] == 64
    assert report["latency_curve"] == []  # no --latency-rates: no paced phases
    assert report["paced_batch"] == 64
    assert report["max_rate_p99_within_target"] is None
    assert report["history_linked"] is True  # the audit's check of every link
    assert "history links: verified" in bench.format_report(report)
    assert f"{report['half_writer_commits_over_target']} commits over 10 ms" in (
        bench.format_report(report))
    assert report["databases"]
    assert await bench_databases(reachable) == []


async def test_cli_entry_prints_exactly_one_json_object(
    reachable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = SimpleNamespace(duration=1.0, accounts=500, hot_share=0.0, hot_accounts=10,
                           submitters=2, batch=64, naive_connections=0, json=True,
                           half_load_duration=0.5, pgbench=False)
    settings = SimpleNamespace(batch_max_events=8190, batch_max_wait_ms=1.0,
                               timezone="Asia/Shanghai")

    code = await bench.main(args, SimpleNamespace(database_url=reachable), settings)

    out = capsys.readouterr().out
    report = json.loads(out)  # one object, nothing else on stdout
    assert code == 0
    assert is_positive_number(report["engine_tps"])
    assert report["naive_tps"] is None  # 0 connections skips the baseline
    assert report["ratio_engine_naive"] is None
    assert report["pgbench_tps"] is None
    assert report["balanced"] is True
    assert await bench_databases(reachable) == []


async def test_an_interrupted_run_drops_its_databases(reachable: str) -> None:
    long_run = BenchOptions(duration=60, accounts=1_000, submitters=2, batch=64,
                            naive_connections=1, pgbench=False)
    task = asyncio.create_task(run(reachable, long_run))
    for _ in range(200):  # wait until the run has created its database
        await asyncio.sleep(0.05)
        if await bench_databases(reachable):
            break
    await asyncio.sleep(0.5)

    task.cancel()  # what Ctrl-C does to the CLI's asyncio.run
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await bench_databases(reachable) == []


async def test_paced_phases_give_a_latency_curve_and_keep_the_books(reachable: str) -> None:
    """`--latency-rates`: one paced phase per offered rate, each with its figures, and
    the ledger still holds exactly what every phase was told."""
    options = BenchOptions(duration=1.0, half_load_duration=1.0, accounts=1_000,
                           submitters=2, batch=64, naive_connections=0, pgbench=False,
                           half_load_batch=16, latency_rates=(400.0, 800.0), seed=11)

    report = await run(reachable, options)

    curve = report["latency_curve"]
    assert [point["offered_tps"] for point in curve] == [400.0, 800.0]
    for point in curve:
        assert is_positive_number(point["tps"])
        assert point["p50_ms"] <= point["p99_ms"]
        assert is_positive_number(point["mean_batch"])
        assert type(point["commits_over_target"]) is int
        assert point["commits_over_target"] >= 0
    within = [p["offered_tps"] for p in curve if p["p99_ms"] < bench.LATENCY_TARGET_MS]
    assert report["rates_p99_within_target"] == within
    assert report["max_rate_p99_within_target"] == max(within, default=None)
    assert report["balanced"] is True
    assert report["acknowledged_matches"] is True
    table = bench.format_report(report)
    assert "engine at 400/s" in table
    assert "engine at 800/s" in table
    assert "p99 under 10 ms at: " in table
    assert await bench_databases(reachable) == []


def test_options_that_cannot_run_are_refused() -> None:
    with pytest.raises(ConfigError, match="batch"):
        BenchOptions(batch=10_000).validate()
    with pytest.raises(ConfigError, match="hot_share"):
        BenchOptions(hot_share=1.5).validate()
    with pytest.raises(ConfigError, match="latency_rates"):
        BenchOptions(latency_rates=(1000.0, 0.0)).validate()
    with pytest.raises(ConfigError, match="latency_rates"):
        BenchOptions(latency_rates=(float("nan"),)).validate()
