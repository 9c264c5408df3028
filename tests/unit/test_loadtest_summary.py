"""The load runner's pure parts: Locust's CSV, the summary, thresholds and shape curves
(no Locust imported: it patches the standard library for gevent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cbdc.errors import ConfigError
from loadtest.curves import ramp_users, soak_users, spike_users, step_users
from loadtest.runner import (
    SCENARIOS,
    SHAPES,
    Acks,
    LoadTestOptions,
    build_summary,
    format_summary,
    locust_argv,
    read_stats,
    server_figures,
)

STATS = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,\
80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,/v1/transfers,1000,10,23,26.7,9.8,71.8,64.0,200.0,2.0,23,30,34,35,43,48,54,63,72,72,72
,Aggregated,1000,10,23,26.7,9.8,71.8,64.0,200.0,2.0,23,30,34,35,43,48,54,63,72,72,72
"""
CLEAN = {"reconciled": True, "breaks": [], "in_flight": 0, "report": []}
NO_PROBLEMS = {"acks_missing": 0, "acks_wrong_amount": 0, "acks_repeated": 0,
               "ack_problems": []}


def summary(tmp_path: Path, options: LoadTestOptions, *, acked: int = 990,
            ack_check: dict[str, Any] | None = None, recon: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    (tmp_path / "locust_stats.csv").write_text(STATS)
    acks = Acks({"central_bank": {f"id-{i}": 1 for i in range(acked)}}, first=1000.0,
                last=1004.0)
    servers = server_figures(
        {"cbdc_ledger_batch_entries_sum": 100.0, "cbdc_ledger_batch_entries_count": 10.0},
        {"cbdc_ledger_batch_entries_sum": 1100.0, "cbdc_ledger_batch_entries_count": 20.0,
         "cbdc_ledger_commit_seconds_sum": 0.05, "cbdc_ledger_commit_seconds_count": 10.0})
    return build_summary(options, tmp_path, read_stats(tmp_path / "locust_stats.csv"), acks,
                         ack_check or NO_PROBLEMS, recon or CLEAN, servers, 0)


def test_summary_reads_locusts_figures_and_counts_settled_transfers(tmp_path: Path) -> None:
    s = summary(tmp_path, LoadTestOptions())

    assert (s["requests"], s["failures"], s["fail_ratio"]) == (1000, 10, 0.01)
    assert (s["p50_ms"], s["p95_ms"], s["p99_ms"]) == (23.0, 48.0, 63.0)
    assert s["requests_per_s"] == 200.0
    # 990 acknowledged over Locust's 5 s of measuring (1000 requests at 200/s), which is
    # longer than the 4 s from the first acknowledgement to the last.
    assert s["transfers_per_s"] == pytest.approx(198.0)
    assert s["server_mean_batch"] == 100.0  # (1100 - 100) / (20 - 10), during the run
    assert s["server_mean_commit_ms"] == pytest.approx(5.0)
    assert s["reconciled"] is True
    assert s["crossed"] == []
    assert s["passed"] is True
    assert "reconciled: yes" in format_summary(s)
    assert s["server_interbank_stages_mean_ms"] == {}  # no payment between banks
    assert "per stage" not in format_summary(s)


def test_server_figures_give_each_interbank_stage_its_mean_over_the_run() -> None:
    def stage(name: str, part: str) -> str:
        return f'cbdc_interbank_stage_seconds_{part}{{stage="{name}"}}'

    before = {stage("payee_check", "sum"): 1.0, stage("payee_check", "count"): 100.0}
    after = {stage("payee_check", "sum"): 1.05, stage("payee_check", "count"): 110.0,
             stage("hold", "sum"): 0.08, stage("hold", "count"): 10.0,
             stage("settlement", "sum"): 0.0, stage("settlement", "count"): 0.0}

    figures = server_figures(before, after)

    # 50 ms over 10 checks during the run; 80 ms over 10 holds; no settlement reached.
    assert figures["server_interbank_stages_mean_ms"] == {"payee_check": 5.0, "hold": 8.0}


@pytest.mark.parametrize(("threshold", "crossed"), [
    ({"max_p99_ms": 62.0}, "p99 63.0 ms > 62 ms"),
    ({"max_fail_ratio": 0.005}, "failure ratio 0.0100 > 0.005"),
    ({"min_tps": 199.0}, "settled transfers/s 198 < 199"),
])
def test_a_crossed_threshold_fails_the_run(tmp_path: Path, threshold: dict[str, float],
                                          crossed: str) -> None:
    s = summary(tmp_path, LoadTestOptions(**threshold))

    assert s["crossed"] == [crossed]
    assert s["passed"] is False
    assert "thresholds crossed: " + crossed in format_summary(s)


@pytest.mark.parametrize("threshold", [
    {"max_p99_ms": 63.0}, {"max_fail_ratio": 0.01}, {"min_tps": 198.0}])
def test_a_threshold_met_exactly_passes(tmp_path: Path, threshold: dict[str, float]) -> None:
    assert summary(tmp_path, LoadTestOptions(**threshold))["passed"] is True


def test_a_missing_acknowledged_transfer_or_a_break_means_not_reconciled(
        tmp_path: Path) -> None:
    missing = summary(tmp_path, LoadTestOptions(),
                      ack_check={**NO_PROBLEMS, "acks_missing": 1,
                                 "ack_problems": ["central_bank: x is not in the ledger"]})
    broken = summary(tmp_path, LoadTestOptions(),
                     recon={**CLEAN, "reconciled": False, "breaks": ["central bank: ..."]})

    for s in (missing, broken):
        assert s["reconciled"] is False
        assert s["passed"] is False
        assert "reconciled: NO" in format_summary(s)
    assert "x is not in the ledger" in format_summary(missing)


def test_no_statistics_file_is_a_clear_error(tmp_path: Path) -> None:
    from cbdc.errors import CbdcError

    with pytest.raises(CbdcError, match="locust wrote no statistics"):
        read_stats(tmp_path / "locust_stats.csv")


def test_workers_run_under_a_master_on_loopback(tmp_path: Path) -> None:
    master, workers, env = locust_argv(
        LoadTestOptions(scenario="settlement-batch", workers=3, shape="spike"),
        tmp_path / "seed.json", tmp_path, "http://127.0.0.1:8100")

    assert workers is not None
    assert master[-1] == workers[-1] == "BatchTransferUser"
    assert master[master.index("--expect-workers") + 1] == "3"
    assert master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    port = master[master.index("--master-bind-port") + 1]
    assert workers[workers.index("--master-port") + 1] == port
    assert "--headless" in master
    assert "--headless" not in workers
    assert env["LOADTEST_SHAPE"] == "spike"
    single, none, _ = locust_argv(LoadTestOptions(workers=1), tmp_path / "seed.json",
                                  tmp_path, "http://127.0.0.1:8100")
    assert none is None
    assert "--master" not in single


def test_options_refuse_what_cannot_run() -> None:
    for bad in ({"scenario": "nosuch"}, {"duration": 0.5}, {"batch_size": 8001},
                {"banks": 1}, {"hot_share": 1.5}, {"shape": "sawtooth"},
                {"bank": ("BANKA",)}, {"max_fail_ratio": 2.0},
                {"database_prefix": "Bad-Prefix"}):
        with pytest.raises(ConfigError, match="loadtest: "):
            LoadTestOptions(**bad).validate()


@pytest.mark.parametrize("curve", [ramp_users, step_users, spike_users, soak_users])
def test_every_shape_reaches_its_peak_and_never_exceeds_it(curve: Any) -> None:
    users = [curve(second / 10, 50, 60.0) for second in range(600)]
    assert max(users) == 50
    assert min(users) >= 1


def test_the_shapes_curves() -> None:
    assert [ramp_users(t, 100, 100.0) for t in (0, 40, 80, 99)] == [1, 50, 100, 100]
    assert [step_users(t, 100, 100.0) for t in (0, 20, 40, 60, 80, 99)] == [
        20, 40, 60, 80, 100, 100]
    assert [spike_users(t, 100, 100.0) for t in (0, 39, 40, 59, 60)] == [
        20, 20, 100, 100, 20]
    assert [soak_users(t, 100, 3600.0) for t in (0, 15, 30, 3599)] == [1, 50, 100, 100]


def test_acknowledgements_after_locust_stopped_counting_do_not_inflate_the_rate(
        tmp_path: Path) -> None:
    (tmp_path / "locust_stats.csv").write_text(STATS)
    acks = Acks({"central_bank": {f"id-{i}": 1 for i in range(1100)}}, first=1000.0,
                last=1011.0)
    s = build_summary(LoadTestOptions(), tmp_path, read_stats(tmp_path / "locust_stats.csv"),
                      acks, NO_PROBLEMS, CLEAN, server_figures({}, {}), 0)

    assert s["transfers_per_s"] == pytest.approx(100.0)  # 1100 over 11 s, not over 5 s


def test_locust_failing_by_itself_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "locust_stats.csv").write_text(STATS)
    s = build_summary(LoadTestOptions(), tmp_path, read_stats(tmp_path / "locust_stats.csv"),
                      Acks(), NO_PROBLEMS, CLEAN, server_figures({}, {}), 2)

    assert s["passed"] is False
    assert "locust exited with 2" in format_summary(s)


def test_the_command_line_offers_exactly_the_runners_scenarios_and_shapes() -> None:
    from cbdc.cli import LOADTEST_SCENARIOS, build_parser

    assert set(LOADTEST_SCENARIOS) == set(SCENARIOS)
    args = build_parser().parse_args(["loadtest", "retail", "--shape", "soak", "-u", "3"])
    options = LoadTestOptions.from_args(args)
    options.validate()
    assert (options.scenario, options.shape, options.users) == ("retail", "soak", 3)
    for shape in SHAPES:
        assert build_parser().parse_args(["loadtest", "settlement", "--shape", shape]).shape
