"""What the load tools read of the servers' `/metrics` (Prometheus text exposition).

Both `cbdc bench retail` and `cbdc loadtest` take a scrape before and after a phase and
report what the servers did in between; this module parses the samples and turns the
difference of the payer banks' interbank stage histograms into a mean per stage.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import aiohttp

from commercial_bank.interbank import STAGES

# name, labels (a route may hold braces: /v1/wallets/{address}), value, optional timestamp
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+-?\d+)?$")
STAGE_FAMILY = "cbdc_interbank_stage_seconds"


def parse_samples(text: str) -> dict[str, float]:
    """Prometheus text exposition: 'name{labels}' (or 'name') -> value."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        with contextlib.suppress(ValueError):
            samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


async def read_samples(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The samples of the service at `url` now (aiohttp.ClientError or TimeoutError when
    it does not answer within 10 s)."""
    async with session.get(url + "/metrics",
                           timeout=aiohttp.ClientTimeout(total=10)) as response:
        return parse_samples(await response.text())


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
