"""The command line: bad usage is one line and exit code 2; expected errors are one line
and exit code 1, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cbdc.cli import build_parser, main

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["launch"],
        ["up", "--bogus"],
        ["audit"],
        ["audit", "export", "--ledger", "1"],
        ["audit", "export", "--ledger", "0", "--out", "x"],
        ["audit", "verify", "--ledger", "1", "--file", "chain.jsonl"],
        ["bench"],
        ["bench", "ledger", "--hot-share", "1.5"],
        ["bench", "ledger", "--duration", "-1"],
        ["bench", "ledger", "--accounts", "ten"],
        ["bench", "ledger", "--latency-rates", "5000,0"],
        ["bench", "ledger", "--latency-rates", "fast"],
        ["bench", "ledger", "--latency-rates", "5000,,10000"],
        ["bench", "ledger", "--paced-batch", "0"],
        ["bench", "central-bank", "--single-processes", "0"],
        ["loadtest"],
        ["loadtest", "payroll"],
        ["loadtest", "settlement", "--hot-share", "2"],
        ["loadtest", "settlement", "--workers", "0"],
        ["loadtest", "retail", "--shape", "sawtooth"],
        ["loadtest", "settlement", "--max-p99-ms", "-5"],
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("cbdc: error: ")
    assert "--help" in err


def test_latency_rates_are_read_as_offered_transfers_per_second() -> None:
    args = build_parser().parse_args(["bench", "ledger", "--latency-rates", "5000,12500.5"])
    assert args.latency_rates == (5000.0, 12500.5)
    assert build_parser().parse_args(["bench", "ledger"]).latency_rates is None
    paced = build_parser().parse_args(["bench", "ledger", "--paced-batch", "1"])
    assert paced.half_load_batch == 1


def test_the_central_bank_bench_spreads_single_transfers_over_processes() -> None:
    from central_bank.bench import CentralBankBenchOptions

    args = build_parser().parse_args(
        ["bench", "central-bank", "--single-clients", "96", "--single-processes", "2"])
    options = CentralBankBenchOptions.from_args(args)
    assert (options.single_clients, options.single_processes) == (96, 2)
    default = build_parser().parse_args(["bench", "central-bank"])
    assert CentralBankBenchOptions.from_args(default).single_processes == 1


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("up", "migrate", "audit", "bench"):
        assert command in out


def test_a_config_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CBDC_BATCH_MAX_EVENTS", "0")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cbdc: error: CBDC_BATCH_MAX_EVENTS: ")
    assert err.count("\n") == 1


def test_the_installed_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env["CBDC_TIMEZONE"] = "Nowhere/Special"
    for argv, code in ((["frobnicate"], 2), (["migrate"], 1)):
        result = subprocess.run(
            [sys.executable, "-m", "cbdc.cli", *argv], cwd=REPO_ROOT, env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == code, result.stderr
        assert result.stdout == ""
        assert result.stderr.startswith("cbdc: error: ")
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr


def test_audit_verify_of_a_missing_file_starts_no_storage_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CBDC_DATA_DIR", str(tmp_path / "data"))
    assert main(["audit", "verify", "--file", str(tmp_path / "missing.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cbdc: error: ")
    assert "missing.jsonl" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "data").exists()  # no embedded store was started
