"""The writer's commit histogram, as the ledger bench reads it between two snapshots."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from settlement.bench import LATENCY_TARGET_MS, WriterSnapshot
from settlement.metrics import WriterMetrics


def snapshot(metrics: WriterMetrics) -> WriterSnapshot:
    return WriterSnapshot.of(SimpleNamespace(metrics=metrics))  # type: ignore[arg-type]


def test_a_phase_counts_the_commits_slower_than_the_latency_target() -> None:
    """Only the commits of the phase, and only those over the target (10 ms): one held
    by a stalled fsync puts every call of its time over it."""
    metrics = WriterMetrics()
    metrics.observe_commit(0.050, 100)  # before the phase
    before = snapshot(metrics)
    for seconds in (0.001, 0.004, LATENCY_TARGET_MS / 1000, 0.0101, 0.040, 0.300):
        metrics.observe_commit(seconds, 200)
    phase = snapshot(metrics).since(before)
    assert phase["commits"] == 6
    assert phase["slow_commits"] == 3  # exactly at the target is not over it
    assert phase["mean_batch"] == 200


def test_counting_above_a_value_that_is_not_a_bucket_bound_is_refused() -> None:
    with pytest.raises(ValueError):
        WriterMetrics().commit_seconds.count_above(0.003)
