"""What the load tools read of the servers' `/metrics` (Prometheus text exposition).

Both `cbdc bench retail` and `cbdc loadtest` take a scrape before and after a phase and
report what the servers did in between (`cbdc.http_metrics.read_samples`); this module
turns the difference of the payer banks' interbank stage histograms into a mean per
stage.
"""

from __future__ import annotations

from collections.abc import Callable

from commercial_bank.interbank import STAGES

STAGE_FAMILY = "cbdc_interbank_stage_seconds"


def _stage_sample(part: str, stage: str) -> str:
    return f'{STAGE_FAMILY}_{part}{{stage="{stage}"}}'


def stage_keys() -> list[str]:
    """The samples `stage_means_ms` reads: each stage's sum and count."""
    return [_stage_sample(part, stage) for stage in STAGES for part in ("sum", "count")]


def stage_means_ms(delta: Callable[[str], float]) -> dict[str, float]:
    """Mean milliseconds of each stage of the payments to other banks made in an interval,
    in the stages' order, from `delta(sample)` (its change over the interval); stages no
    payment reached are left out."""
    means = {}
    for stage in STAGES:
        count = delta(_stage_sample("count", stage))
        if count > 0:
            means[stage] = round(delta(_stage_sample("sum", stage)) / count * 1e3, 3)
    return means
