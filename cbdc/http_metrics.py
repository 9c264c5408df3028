"""Prometheus metrics of a service: its HTTP requests and its ledger writer.

Both tiers use it: `Metrics(writer)` owns a registry, `metrics_middleware` records each
request by route and status, and the writer's own counters are read at scrape time. The
benches and load tools read a service's samples back with `read_samples`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector


class WriterHistogram(Protocol):
    buckets: Sequence[float]
    counts: list[int]
    total: float


class LedgerWriter(Protocol):
    """What is read of a settlement writer (settlement.writer.LedgerWriter)."""

    metrics: Any
    tip: Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _histogram(name: str, documentation: str, source: WriterHistogram
               ) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    cumulative, buckets = 0, []
    for bound, count in zip((*source.buckets, float("inf")), source.counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
    family.add_metric([], buckets, source.total)
    return family


class WriterCollector(Collector):
    """Reads the ledger writer's own counters at scrape time."""

    def __init__(self, writer: LedgerWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily |
                                  HistogramMetricFamily]:
        m = self.writer.metrics
        yield CounterMetricFamily("cbdc_ledger_commits", "Batches committed", m.commits)
        yield CounterMetricFamily("cbdc_ledger_entries", "Entries committed", m.entries)
        yield CounterMetricFamily("cbdc_ledger_failed_commits", "Batches that failed to commit",
                                  m.failed_commits)
        yield GaugeMetricFamily("cbdc_ledger_queue_depth", "Requests waiting for the writer",
                                m.queue_depth)
        yield GaugeMetricFamily("cbdc_ledger_height", "Height of the ledger's chain",
                                self.writer.tip.height)
        yield _histogram("cbdc_ledger_commit_seconds", "Time to commit one batch",
                         m.commit_seconds)
        yield _histogram("cbdc_ledger_batch_entries", "Entries per committed batch",
                         m.batch_entries)


class Metrics:
    def __init__(self, writer: LedgerWriter) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cbdc_http_requests", "HTTP requests answered",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "cbdc_http_request_seconds", "Time to answer an HTTP request", ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0),
            registry=self.registry)
        self.registry.register(WriterCollector(writer))
        # The labelled children by (route, status): labels() validates and locks on
        # every call, and a service has a few dozen of these pairs at most.
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        children = self._children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._children[(route, status)] = children
        requests, latency = children
        requests.inc()
        latency.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


@web.middleware
async def metrics_middleware(request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
    """Count each request by route and status, and time it."""
    started = now()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception as exc:
        status = getattr(exc, "status", 500)
        raise
    finally:
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.observe(route_name(request), status, now() - started)


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.app[METRICS].exposition(),
                        headers={"Content-Type": CONTENT_TYPE})


def route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


def now() -> float:
    return time.perf_counter()


# name, labels (a route may hold braces: /v1/wallets/{address}), value, optional timestamp
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+-?\d+)?$")


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
