"""`cbdc bench central-bank` against a real PostgreSQL, with tiny numbers.

Asserts what a user checks after a run: the report has its figures, both endpoints
settled transfers, the books balance, and the run left neither its server process nor
its database behind, also when interrupted. Never timing values.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import asyncpg
import psutil
import pytest

from cbdc.errors import ConfigError
from central_bank.bench import CentralBankBenchOptions, database_name, main, run

TINY = {"duration": 1.0, "banks": 2, "batch_size": 200, "clients": 2, "single_clients": 4,
        "seed": 7}
REPORT_KEYS = {
    "batch_tps", "batch_p50_ms", "batch_p99_ms", "single_tps", "single_p50_ms",
    "single_p99_ms", "balanced", "supply_balanced", "positions_match", "server_mean_batch",
    "server_mean_commit_ms", "duration_s", "clients", "single_clients", "single_processes",
    "database", "server_pid",
}


def is_positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def bench_servers() -> list[psutil.Process]:
    """Central bank processes this test process started and that still run."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "central_bank.bench" in " ".join(child.cmdline()) and child.is_running() \
                    and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


async def database_exists(server_dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(server_dsn)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


def assert_report(report: dict[str, Any]) -> None:
    assert report.keys() >= REPORT_KEYS
    assert is_positive_number(report["batch_tps"])
    assert is_positive_number(report["single_tps"])
    assert is_positive_number(report["single_p99_ms"])
    assert is_positive_number(report["server_mean_batch"])
    assert report["balanced"] is True
    assert report["supply_balanced"] is True
    assert report["positions_match"] is True
    assert report["batch_rejected"] == 0
    assert report["single_rejected"] == 0
    assert report["unresolved"] == 0
    assert report["settled_fen"] > 0
    assert sum(report["position_changes"].values()) == 0  # interbank moves only


async def test_run_settles_on_both_endpoints_balances_and_cleans_up(pg_server_url: str
                                                                     ) -> None:
    report = await run(pg_server_url, CentralBankBenchOptions(**TINY))

    json.dumps(report, allow_nan=False)  # plain JSON
    assert_report(report)
    assert report["clients"] == 2
    assert report["single_processes"] == 1
    # The baseline ran on the same banks and kept its books too.
    assert report["baseline"] is True
    assert report["baseline_balanced"] is True
    for key in ("baseline_batch_tps", "baseline_single_tps", "baseline_single_p99_ms",
                "ratio_batch", "ratio_single"):
        assert is_positive_number(report[key]), key
    assert report["ratio_single"] == report["single_tps"] / report["baseline_single_tps"]
    assert report["baseline_batch_rejected"] == report["baseline_single_rejected"] == 0
    assert not psutil.pid_exists(report["server_pid"])
    assert not bench_servers()
    assert report["database_dropped"] is True
    assert not await database_exists(pg_server_url, report["database"])


async def test_main_prints_one_json_object_with_two_load_processes(
        pg_server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = SimpleNamespace(**TINY, single_processes=2, json=True, baseline=False,
                           unknown_option=None)
    endpoints = SimpleNamespace(database_url=pg_server_url)

    code = await main(args, endpoints, None)

    out = capsys.readouterr().out
    report = json.loads(out)  # exactly one JSON document, nothing else on stdout
    assert code == 0
    assert_report(report)
    assert report["single_processes"] == 2
    assert report["baseline"] is False  # --no-baseline
    assert report["ratio_single"] is None
    assert not bench_servers()
    assert not await database_exists(pg_server_url, report["database"])


async def test_an_interrupted_run_stops_its_server_and_drops_its_database(
        pg_server_url: str) -> None:
    options = CentralBankBenchOptions(**{**TINY, "duration": 60.0})
    task = asyncio.create_task(run(pg_server_url, options))
    async with asyncio.timeout(120):
        while not bench_servers():  # wait until the server runs, then Ctrl-C
            assert not task.done()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert not bench_servers()
    assert not await database_exists(pg_server_url, database_name())


def test_options_keep_defaults_for_missing_arguments_and_refuse_bad_ones() -> None:
    options = CentralBankBenchOptions.from_args(
        SimpleNamespace(duration=None, banks=3, json=True),
        SimpleNamespace(batch_max_events=4000, batch_max_wait_ms=None,
                        timezone="Asia/Shanghai", operator_rate=None))
    assert options.banks == 3
    assert options.json is True
    assert options.duration == 10.0
    assert options.batch_size == 8000
    assert options.clients == 4
    assert options.single_clients == 40
    assert options.max_events == 4000
    for bad in ({"banks": 1}, {"batch_size": 8001}, {"duration": 0.0},
                {"single_processes": 0}):
        with pytest.raises(ConfigError):
            CentralBankBenchOptions(**bad).validate()  # type: ignore[arg-type]
