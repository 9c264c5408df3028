"""Counters and histograms a ledger writer keeps about itself (exported by services)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

COMMIT_SECONDS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
BATCH_SIZE_BUCKETS = (1, 10, 100, 500, 1000, 2000, 4000, 8190, 16384, 65536)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def count_above(self, bound: float) -> int:
        """Observations over `bound`, which must be one of the buckets' bounds."""
        return sum(self.counts[self.buckets.index(bound) + 1:])


@dataclass
class WriterMetrics:
    commits: int = 0
    entries: int = 0
    failed_commits: int = 0
    reloads: int = 0
    checkpoints: int = 0
    queue_depth: int = 0
    commit_seconds: Histogram = field(
        default_factory=lambda: Histogram(COMMIT_SECONDS_BUCKETS))
    batch_entries: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))

    def observe_commit(self, seconds: float, entries: int) -> None:
        self.commits += 1
        self.entries += entries
        self.commit_seconds.observe(seconds)
        self.batch_entries.observe(entries)
