"""`cbdc bench retail`: wallets paying each other through two commercial banks, end to end.

One run, on one PostgreSQL server and one Redis:

* the central bank and two commercial banks, BANKA and BANKB, each a process of its own
  (`python -m cbdc.cli central-bank ...`, `... commercial-bank --code ... --central-bank
  URL --peer CODE=URL`) on unused loopback ports, sharing a temporary `CBDC_DATA_DIR` (so
  the operator keys, the admin token and the teller tokens match) and a database prefix
  of their own (`CBDC_DATABASE_PREFIX`, default `cbdc_rbench_`: the databases are
  `cbdc_rbench_central_bank`, `cbdc_rbench_bank_banka` and `cbdc_rbench_bank_bankb`, so a
  developer's `cbdc_central_bank` is never touched). If any of the three already exists
  (a run that was killed), the benchmark refuses to start unless `--force`, which drops
  them first. The banks are registered with the central bank (operator key, reserves)
  before they start. Everything is stopped and dropped when the run ends, also on error
  or Ctrl-C; the servers also get SIGTERM if this process dies (Linux).
* `wallets` wallets at each bank: opened (phone only), logged in, upgraded to class 1 by a
  teller (`POST /v1/teller/wallets/{address}/class`: in person, name, resident ID, bank
  card) so the limits never cut the run short, a deposit account linked, cash paid in by
  a teller and topped up into the wallet (`WALLET_FUNDING` fen each);
* phase 1, same bank: `clients` closed-loop tasks, split between the two banks, POST
  `/v1/payments` with signed payment orders between random wallets of the same bank
  (1..100 fen) for `duration` seconds; a payment counts once the bank answered settled.
  Orders are signed before the clock starts (a warm-up sizes the pool; a pool that runs
  dry is topped up on the clock, and the report says so);
* then PostgreSQL takes a CHECKPOINT (`settlement.bench.settle_server`), so phase 2
  does not pay for phase 1's work;
* phase 2, cross bank: orders from BANKA wallets to BANKB wallets sent open-loop at
  `cross_rate` per second for `duration` seconds. A payment's latency runs from sending
  the order to BANKA until the payee's wallet at BANKB shows it: the benchmark follows
  each payee wallet's live event stream (`GET /v1/wallets/{address}/events`, Server-Sent
  Events) and matches each `payment_in` by its memo. Afterwards each payee's history
  gives the time BANKB booked each credit (its ledger timestamp): the "booked" latency,
  and the figure used if the streams cannot be opened;
* then the servers are stopped and `loadtest.reconcile.reconcile` checks the central bank
  against both banks (`reconciled`);
* then the same-bank phase again, against the baseline (`commercial_bank.baseline`: the
  same server and signed orders, a row per wallet and one statement per payment), one
  process per bank (`python -m loadtest.retail_bench --serve-baseline`, given the same
  wallets, keys and class limits on stdin) in its bank's database; each wallet's balance
  must be its opening balance moved by exactly the payments its table records, which
  must be at least those it answered settled (`baseline_balanced`). The report gives
  `ratio_same_bank`.

Per phase the report also has each process's CPU (share of one core: the load generator,
the three servers, PostgreSQL and Redis when they run on this machine) and, from each
server's `/metrics`, the server-side mean time of the busy routes, its ledger writer's
batches and, for the payer bank, the mean time of each stage of its payments to the other
bank (`commercial_bank.interbank.StageTimes`, read by `loadtest.server_metrics`).
Progress goes to stderr, the report to stdout.

Options (argparse fields; a missing or None one keeps its default):

    --duration S           seconds of each timed phase (10)
    --wallets N            wallets per bank (200)
    --clients N            closed-loop clients of the same-bank phase, split between the
                           two banks (32)
    --cross-rate R         cross-bank payments sent per second in phase 2 (500)
    --force                drop the benchmark's databases if a killed run left them
    --json                 print exactly one JSON object instead of the table
    --seed N               seed of the random payments
    --drain S              seconds to wait after phase 2 for the last credits to show (10)
    --database-prefix P    the services' database prefix (cbdc_rbench_)
    --no-baseline          skip the baseline's same-bank phase

The servers' time zone, writer batch settings, limit preset and operator rate are taken
from the `cbdc` settings (`CBDC_TIMEZONE`, `CBDC_BATCH_MAX_EVENTS`, ...).

Targets reported against: same bank >= 2,000 payments/s; cross bank p99 < 100 ms at
500 payments/s. The exit code of `main` is 0 when the books reconcile and no payment
went missing, else 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from cbdc.bench_options import WRITER_SETTINGS, options_from_args
from cbdc.errors import CbdcError, ConfigError
from cbdc.heap import freeze_long_lived
from cbdc.http_metrics import read_samples
from cbdc.payment_orders import PaymentOrder
from cbdc.processes import Service, die_with_parent, unused_port, wait_healthy
from cbdc.signing import VerifyingKey
from cbdc.sse import read_events
from cbdc.storage import database_url_for
from central_bank.bench import progress
from commercial_bank.baseline import books as baseline_books
from commercial_bank.wallet_classes import ClassLimits
from commercial_bank.wallet_classes import limits as class_limits
from loadtest.network import (
    CENTRAL_BANK_SERVICE,
    CODES,
    claim_databases,
    clean_up,
    database_names,
    start_system,
    stop_all,
    stop_service,
    uninterrupted,
)
from loadtest.seeding import WALLET_CLASS, WALLET_FUNDING, BenchWallet, call, seed_wallets
from loadtest.server_metrics import stage_means_ms
from settlement.bench import number, percent, percentile_ms, settle_server

DEFAULT_PREFIX = "cbdc_rbench_"
MAX_AMOUNT = 100  # fen per payment, at most
ORDER_LIFETIME_S = 3600  # orders are signed before the clock starts; this keeps them valid
MAX_STREAMS = 256  # payee wallets followed live (and paid) in the cross-bank phase
MAX_IN_FLIGHT = 5_000  # cross-bank orders waiting for an answer before sending pauses
POOL_HEADROOM = 1.6  # the warm-up signs on the clock, so it runs slower than the phase
MAX_POOL = 200_000  # signed orders per bank, at most (about 0.2 ms each to sign)
STREAM_OPEN_S = 15.0
TARGET_SAME_BANK_TPS = 2_000
TARGET_CROSS_RATE = 500
TARGET_CROSS_P99_MS = 100.0
PAY_PATH = "/v1/payments"
JSON_HEADERS = {"Content-Type": "application/json"}
_PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,30}")
# Server-side routes whose mean time the report shows, per service.
ROUTES = {
    CENTRAL_BANK_SERVICE: ("/v1/transfers", "/v1/issuance"),
    "BANKA": (PAY_PATH, "/v1/receivable/{address}"),
    "BANKB": (PAY_PATH, "/v1/receivable/{address}", "/v1/wallets/{address}/history"),
}


# --------------------------------------------------------------------- options
@dataclass(frozen=True)
class RetailBenchOptions:
    duration: float = 10.0
    wallets: int = 200  # per bank
    clients: int = 32  # same-bank phase, over both banks
    cross_rate: float = 500.0  # cross-bank payments per second
    json: bool = False
    force: bool = False  # drop the benchmark's databases left by a killed run
    seed: int | None = None
    warmup: float | None = None  # seconds of same-bank warm-up; None: 20% of duration
    drain: float = 10.0  # seconds to wait for the last cross-bank credits to show
    database_prefix: str = DEFAULT_PREFIX
    request_timeout: float = 30.0
    # The servers' settings (from the `cbdc` settings when `from_args` is given them).
    timezone: str = "Asia/Shanghai"
    max_events: int = 8190
    max_wait_ms: float = 1.0
    limit_preset: str = "2020"
    operator_rate: float = 20_000.0
    baseline: bool = True  # also measure same-bank payments on commercial_bank.baseline

    @property
    def warmup_seconds(self) -> float:
        if self.warmup is not None:
            return self.warmup
        return min(2.0, max(0.5, self.duration * 0.2))

    def validate(self) -> None:
        """Refuse options that cannot run, with a sentence saying why."""
        problems = []
        if not (math.isfinite(self.duration) and self.duration > 0):
            problems.append("duration must be a positive number of seconds")
        if self.wallets < 2:
            problems.append("wallets must be at least 2 per bank (a payment needs two)")
        if self.clients < 2:
            problems.append("clients must be at least 2 (one per bank)")
        if not (math.isfinite(self.cross_rate) and self.cross_rate > 0):
            problems.append("cross_rate must be a positive number of payments per second")
        if not (math.isfinite(self.drain) and self.drain >= 0):
            problems.append("drain must not be negative")
        if not self.warmup_seconds >= 0:
            problems.append("warmup must not be negative")
        if not self.request_timeout > 0:
            problems.append("request_timeout must be positive")
        if not _PREFIX_PATTERN.fullmatch(self.database_prefix):
            problems.append("database_prefix must be a lower-case letter and then up to 30 "
                            "lower-case letters, digits or underscores")
        if problems:
            raise ConfigError("bench retail: " + "; ".join(problems))

    @classmethod
    def from_args(cls, args: Any, settings: Any = None) -> RetailBenchOptions:
        """Options from an argparse namespace and, where it leaves them out, from the
        settings."""
        return options_from_args(cls, args, settings,
                                 (*WRITER_SETTINGS, ("limit_preset", "limit_preset"),
                                  ("operator_rate", "operator_rate")))



# --------------------------------------------------------------------- orders
class Orders:
    """Signed payment orders with fresh per-wallet sequence numbers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def order(self, payer: BenchWallet, payee: BenchWallet, memo: str = "") -> bytes:
        payer.sequence += 1
        assert payer.address is not None
        assert payee.address is not None
        order = PaymentOrder(payer=payer.address, payee=payee.address,
                             amount=self.rng.randint(1, MAX_AMOUNT), sequence=payer.sequence,
                             expires=int(time.time()) + ORDER_LIFETIME_S, memo=memo)
        return order.sign(payer.key).to_json().encode()

    def same_bank(self, wallets: Sequence[BenchWallet]) -> bytes:
        payer, payee = self.rng.sample(wallets, 2)
        return self.order(payer, payee)


# ---------------------------------------------------------------- measurement
@dataclass
class PhaseResult:
    requests: int = 0
    ok: int = 0  # answered settled
    pending: int = 0  # answered pending (cross bank: the central bank did not answer yet)
    rejected: int = 0  # 4xx
    errors: int = 0  # no answer or 5xx
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    ran_dry: bool = False
    problems: Counter[str] = field(default_factory=Counter)

    @property
    def tps(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def merge(self, other: PhaseResult) -> None:
        self.requests += other.requests
        self.ok += other.ok
        self.pending += other.pending
        self.rejected += other.rejected
        self.errors += other.errors
        self.elapsed = max(self.elapsed, other.elapsed)
        self.latencies.extend(other.latencies)
        self.ran_dry = self.ran_dry or other.ran_dry
        self.problems.update(other.problems)


async def pay(session: aiohttp.ClientSession, url: str, body: bytes, result: PhaseResult,
              seconds: float) -> str | None:
    """POST one signed order; count it; its answered status ('settled', 'pending') or
    None when refused or unanswered."""
    result.requests += 1
    started = time.perf_counter()
    try:
        async with session.post(url + PAY_PATH, data=body, headers=JSON_HEADERS,
                                timeout=aiohttp.ClientTimeout(total=seconds)) as response:
            data = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        result.errors += 1
        result.problems[f"no answer: {type(exc).__name__}"] += 1
        return None
    result.latencies.append(time.perf_counter() - started)
    if status == 201 and isinstance(data, dict):
        if data.get("status") == "settled":
            result.ok += 1
            return "settled"
        result.pending += 1
        return "pending"
    if status >= 500:
        result.errors += 1
    else:
        result.rejected += 1
    code = data.get("code") or data.get("title") if isinstance(data, dict) else None
    result.problems[f"HTTP {status} {code or ''}".strip()] += 1
    return None


class CpuMeter:
    """CPU seconds of the load generator, each server, and (when they run here)
    PostgreSQL's and Redis's processes."""

    def __init__(self, services: Sequence[Service]) -> None:
        self.services = {s.name: s.pid for s in services}

    def snapshot(self) -> dict[str, dict[int, float]]:
        shot: dict[str, dict[int, float]] = {"load": {0: time.process_time()}}
        for name, pid in self.services.items():
            shot[name] = {pid: _cpu_of(pid)}
        shot["postgres"], shot["redis"] = {}, {}
        for proc in psutil.process_iter(["name"]):
            group = _store_group(proc.info.get("name") or "")
            if group is not None:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    shot[group][proc.pid] = float(times.user + times.system)
        return shot

    @staticmethod
    def shares(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]],
               elapsed: float) -> dict[str, float | None]:
        """CPU per group over the interval, as a share of one core."""
        shares: dict[str, float | None] = {}
        for group, now in after.items():
            then = before.get(group, {})
            used = sum(max(0.0, value - then.get(pid, 0.0)) for pid, value in now.items())
            shares[group] = round(used / elapsed, 3) if elapsed > 0 and now else None
        return shares


def _store_group(name: str) -> str | None:
    if name in ("postgres", "postmaster"):
        return "postgres"
    if name.startswith("redis-server"):
        return "redis"
    return None


def _cpu_of(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


async def scrape(session: aiohttp.ClientSession, services: Sequence[Service]
                 ) -> dict[str, dict[str, float]]:
    out = {}
    for service in services:
        try:
            out[service.name] = await read_samples(session, service.url)
        except (aiohttp.ClientError, TimeoutError):
            out[service.name] = {}
    return out


def server_stats(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
                 elapsed: float) -> dict[str, dict[str, Any]]:
    """Per service, over the interval: the ledger writer's commits/s, mean batch and
    mean commit time, the server-side mean time (and count) of its busy routes, and for a
    bank that paid other banks the mean time of each stage of those payments."""
    stats = {}
    for name, now in after.items():
        then = before.get(name, {})

        def delta(key: str, now: dict[str, float] = now, then: dict[str, float] = then
                  ) -> float:
            return now.get(key, 0.0) - then.get(key, 0.0)

        commits = delta("cbdc_ledger_commits_total")
        entries = delta("cbdc_ledger_batch_entries_sum")
        commit_s = delta("cbdc_ledger_commit_seconds_sum")
        routes = {}
        for route in ROUTES.get(name, ()):
            count = delta(f'cbdc_http_request_seconds_count{{route="{route}"}}')
            total = delta(f'cbdc_http_request_seconds_sum{{route="{route}"}}')
            if count > 0:
                routes[route] = {"count": int(count), "mean_ms": round(total / count * 1e3, 3)}
        stats[name] = {
            "commits_per_s": round(commits / elapsed, 1) if elapsed > 0 else None,
            "mean_batch": round(entries / commits, 2) if commits else None,
            "mean_commit_ms": round(commit_s / commits * 1e3, 3) if commits else None,
            "routes": routes,
            "interbank_stages_mean_ms": stage_means_ms(delta),
        }
    return stats


@dataclass
class Probe:
    """What one phase cost: CPU per process group and the servers' own figures."""

    cpu: dict[str, float | None] = field(default_factory=dict)
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)


class Measure:
    def __init__(self, session: aiohttp.ClientSession, services: Sequence[Service]) -> None:
        self.session, self.services = session, services
        self.meter = CpuMeter(services)

    async def start(self) -> tuple[float, dict[str, Any], dict[str, Any]]:
        metrics = await scrape(self.session, self.services)
        return time.perf_counter(), self.meter.snapshot(), metrics

    async def stop(self, started: tuple[float, dict[str, Any], dict[str, Any]]) -> Probe:
        elapsed = time.perf_counter() - started[0]
        cpu = self.meter.snapshot()
        metrics = await scrape(self.session, self.services)
        return Probe(CpuMeter.shares(started[1], cpu, elapsed),
                     server_stats(started[2], metrics, elapsed))


# ------------------------------------------------------------ same-bank phase
async def closed_loop(session: aiohttp.ClientSession, url: str, pool: deque[bytes],
                      make: Callable[[], bytes], tasks: int, duration: float,
                      seconds: float, *, count_dry: bool = True) -> PhaseResult:
    result = PhaseResult()
    started = time.perf_counter()
    deadline = started + duration

    async def client() -> None:
        while time.perf_counter() < deadline:
            if pool:
                body = pool.popleft()
            else:
                result.ran_dry = result.ran_dry or count_dry
                body = make()
            await pay(session, url, body, result, seconds)

    await asyncio.gather(*(client() for _ in range(tasks)))
    result.elapsed = time.perf_counter() - started
    return result


def client_shares(clients: int, codes: Sequence[str]) -> dict[str, int]:
    return {code: clients // len(codes) + (i < clients % len(codes))
            for i, code in enumerate(codes)}


async def same_bank_phase(session: aiohttp.ClientSession, urls: dict[str, str],
                          wallets: dict[str, list[BenchWallet]], orders: Orders,
                          options: RetailBenchOptions, measure: Measure,
                          label: str = "same bank") -> tuple[dict[str, PhaseResult], Probe]:
    shares = client_shares(options.clients, list(urls))
    makers = {code: (lambda w=wallets[code]: orders.same_bank(w)) for code in urls}
    warm: dict[str, PhaseResult] = {}
    if options.warmup_seconds > 0:
        progress(f"{label}: warm-up for {options.warmup_seconds:g} s")
        results = await asyncio.gather(*(
            closed_loop(session, urls[code], deque(), makers[code], shares[code],
                        options.warmup_seconds, options.request_timeout, count_dry=False)
            for code in urls))
        warm = dict(zip(urls, results, strict=True))
    pools = {}
    for code in urls:
        rate = warm[code].requests / warm[code].elapsed if code in warm else 1000.0
        size = min(MAX_POOL, int(rate * options.duration * POOL_HEADROOM) + 2 * shares[code])
        pools[code] = deque(makers[code]() for _ in range(size))
    progress(f"{label}: signed {sum(map(len, pools.values())):,} orders (warm-up: "
             + ", ".join(f"{code} {warm[code].tps:,.0f}/s" for code in warm)
             + f"); {options.clients} clients for {options.duration:g} s")
    freeze_long_lived()  # the pools live through the phase: no full walks of them in it
    mark = await measure.start()
    results = await asyncio.gather(*(
        closed_loop(session, urls[code], pools[code], makers[code], shares[code],
                    options.duration, options.request_timeout) for code in urls))
    probe = await measure.stop(mark)
    return dict(zip(urls, results, strict=True)), probe


# ----------------------------------------------------------- cross-bank phase
class Arrivals:
    """When each cross-bank payment was sent, and when the payee's stream showed it."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}  # memo -> perf_counter at send
        self.sent_wall: dict[str, int] = {}  # memo -> time_ns at send
        self.shown: dict[str, float] = {}  # memo -> perf_counter when the stream showed it
        self.settled: set[str] = set()
        self.gaps = 0  # times a stream said it was not live (events may be missed)
        self.drops = 0  # streams that ended and were opened again
        self._changed = asyncio.Event()

    def send(self, memo: str) -> None:
        self.sent[memo] = time.perf_counter()
        self.sent_wall[memo] = time.time_ns()

    def show(self, memo: str) -> None:
        if memo in self.sent and memo not in self.shown:
            self.shown[memo] = time.perf_counter()
            self._changed.set()

    def latencies(self) -> list[float]:
        return [self.shown[m] - self.sent[m] for m in self.settled if m in self.shown]

    def missing(self) -> set[str]:
        return self.settled - self.shown.keys()

    async def wait_all_shown(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.missing():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))


class Streams:
    """The live event streams of the payee wallets (`GET .../events`, SSE)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, arrivals: Arrivals) -> None:
        self.session, self.url, self.arrivals = session, url, arrivals
        self.tasks: list[asyncio.Task[None]] = []
        self.live: dict[str, asyncio.Event] = {}
        self.unavailable = asyncio.Event()  # the bank has no live events at all
        self.failure: str | None = None

    async def open(self, wallets: Sequence[BenchWallet]) -> bool:
        """Follow each wallet; True once every stream says it is live."""
        for wallet in wallets:
            self.live[wallet.text] = asyncio.Event()
            self.tasks.append(asyncio.create_task(self._follow(wallet)))
        all_live = asyncio.ensure_future(
            asyncio.gather(*(e.wait() for e in self.live.values())))
        none = asyncio.ensure_future(self.unavailable.wait())
        try:
            await asyncio.wait((all_live, none), timeout=STREAM_OPEN_S,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (all_live, none):
                future.cancel()
        waiting = sum(not e.is_set() for e in self.live.values())
        if waiting and self.failure is None:
            self.failure = f"{waiting} streams not live after {STREAM_OPEN_S:g} s"
        return not waiting and not self.unavailable.is_set()

    async def _follow(self, wallet: BenchWallet) -> None:
        url = f"{self.url}/v1/wallets/{wallet.text}/events"
        headers = {"Authorization": f"Bearer {wallet.token}", "Accept": "text/event-stream"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        opened = 0
        while True:
            try:
                async with self.session.get(url, headers=headers, timeout=timeout) as response:
                    if response.status != 200:
                        self.failure = f"GET {url} answered {response.status}"
                        if response.status in (404, 405):
                            self.unavailable.set()  # no live events at this bank
                            return
                        await asyncio.sleep(0.2)
                        continue
                    opened += 1
                    if opened > 1:
                        self.arrivals.drops += 1
                    await self._read(wallet.text, response)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.failure = f"stream of {wallet.text}: {type(exc).__name__}"
                await asyncio.sleep(0.2)

    async def _read(self, address: str, response: aiohttp.ClientResponse) -> None:
        async for name, data in read_events(response.content):
            self._dispatch(address, name, data)

    def _dispatch(self, address: str, name: str, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if name == "status":
            if event.get("live"):
                self.live[address].set()
            else:
                self.arrivals.gaps += 1
        elif name == "payment" and event.get("type") == "payment_in":
            self.arrivals.show(str(event.get("memo") or ""))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks = []


async def paced(session: aiohttp.ClientSession, url: str, orders: Sequence[tuple[str, bytes]],
                rate: float, arrivals: Arrivals, seconds: float) -> tuple[PhaseResult, float]:
    """Send `orders` open-loop at `rate` per second; the result and the largest lag
    behind the schedule, in seconds."""
    result = PhaseResult()
    in_flight: set[asyncio.Task[None]] = set()
    lag = 0.0

    async def send(memo: str, body: bytes) -> None:
        arrivals.send(memo)
        if await pay(session, url, body, result, seconds) == "settled":
            arrivals.settled.add(memo)

    started = time.perf_counter()
    sent = 0
    while sent < len(orders):
        now = time.perf_counter()
        due = min(len(orders), int((now - started) * rate) + 1)
        if sent < due:
            lag = max(lag, now - (started + sent / rate))
        while sent < due and len(in_flight) < MAX_IN_FLIGHT:
            task = asyncio.create_task(send(*orders[sent]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
        await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
    result.elapsed = time.perf_counter() - started
    if in_flight:
        await asyncio.gather(*in_flight)
    return result, lag


async def booked_times(session: aiohttp.ClientSession, url: str,
                       wallets: Sequence[BenchWallet], since_ns: int, memos: set[str]
                       ) -> dict[str, int]:
    """memo -> the payee bank's ledger timestamp (ns) of each credit, from the payees'
    histories."""
    booked: dict[str, int] = {}
    since = max(0, since_ns // 1_000_000_000 - 1)
    for wallet in wallets:
        after = ""
        while True:
            query = f"direction=in&limit=500&since={since}" + (f"&after={after}" if after else "")
            page = await call(session, "GET", f"{url}/v1/wallets/{wallet.text}/history?{query}",
                              token=wallet.token)
            for entry in page["entries"]:
                memo = entry.get("memo")
                if memo in memos:
                    booked[memo] = int(entry["timestamp"])
            after = page.get("next_after") or ""
            if not after:
                break
    return booked


@dataclass
class CrossResult:
    pay: PhaseResult
    lag_s: float
    arrivals: Arrivals
    streams_live: bool
    stream_failure: str | None
    booked: dict[str, int]
    window_s: float  # from the first send to the last credit shown (or answered)

    @property
    def shown_settled(self) -> int:
        return len(self.arrivals.settled & self.arrivals.shown.keys())

    def booked_latencies(self) -> list[float]:
        sent = self.arrivals.sent_wall
        return [(ns - sent[m]) / 1e9 for m, ns in self.booked.items()
                if m in self.arrivals.settled]


async def cross_bank_phase(session: aiohttp.ClientSession, payer_url: str, payee_url: str,
                           payers: Sequence[BenchWallet], payees: Sequence[BenchWallet],
                           orders: Orders, options: RetailBenchOptions,
                           rng: random.Random, measure: Measure) -> tuple[CrossResult, Probe]:
    arrivals = Arrivals()
    streams = Streams(session, payee_url, arrivals)
    try:
        progress(f"cross bank: following {len(payees)} payee wallets' event streams")
        live = await streams.open(payees)
        if not live:
            progress(f"cross bank: live events unavailable ({streams.failure}); latency "
                     "from the payee bank's booking times instead")
            await streams.close()
        count = max(1, math.ceil(options.cross_rate * options.duration))
        tag = f"rb{rng.getrandbits(24):06x}"
        batch = [(f"{tag}:{i}", orders.order(rng.choice(payers), rng.choice(payees),
                                             f"{tag}:{i}")) for i in range(count)]
        progress(f"cross bank: {count:,} orders BANKA -> BANKB at {options.cross_rate:g}/s "
                 f"for {options.duration:g} s")
        freeze_long_lived()  # the orders live through the phase: no full walks of them
        mark = await measure.start()
        since_ns = time.time_ns()
        first = time.perf_counter()
        result, lag = await paced(session, payer_url, batch, options.cross_rate, arrivals,
                                  options.request_timeout)
        if live:
            await arrivals.wait_all_shown(options.drain)
            missing = len(arrivals.missing())
            if missing:
                progress(f"cross bank: {missing} settled payments not shown after "
                         f"{options.drain:g} s")
        last = max(arrivals.shown.values(), default=first + result.elapsed)
        probe = await measure.stop(mark)
    finally:
        await streams.close()
    booked = await booked_times(session, payee_url, payees, since_ns, set(arrivals.sent))
    return CrossResult(result, lag, arrivals, live, streams.failure, booked,
                       max(last, first + result.elapsed) - first), probe


# ---------------------------------------------------------------------- run


async def run(database_url: str, redis_url: str, options: RetailBenchOptions | None = None
              ) -> dict[str, Any]:
    """Run the whole benchmark against the PostgreSQL server of `database_url` and the
    Redis of `redis_url`; return the report (JSON-ready)."""
    from loadtest.reconcile import reconcile

    options = options or RetailBenchOptions()
    options.validate()
    rng = random.Random(options.seed)
    names = database_names(options.database_prefix)
    await claim_databases(database_url, list(names.values()), force=options.force)
    data_dir = Path(tempfile.mkdtemp(prefix="cbdc-rbench-"))
    services: list[Service] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            network = await start_system(session, database_url, redis_url, data_dir,
                                         options, services,
                                         float_target=options.wallets * WALLET_FUNDING)
            urls, tellers = network.bank_urls, network.tellers
            progress(f"opening and funding {options.wallets} class-{WALLET_CLASS} wallets "
                     "at each bank")
            wallets = await seed_wallets(session, urls, tellers, options.wallets)
            orders = Orders(rng)
            measure = Measure(session, services)

            same, same_probe = await same_bank_phase(session, urls, wallets, orders,
                                                     options, measure)
            await settle_server(database_url)
            payer, payee = CODES
            cross, cross_probe = await cross_bank_phase(
                session, urls[payer], urls[payee], wallets[payer],
                wallets[payee][:MAX_STREAMS], orders, options, rng, measure)
        progress("stopping the servers; reconciling")
        await stop_all(services)
        recon = await reconcile(database_url_for(database_url, names[CENTRAL_BANK_SERVICE]),
                                {code: database_url_for(database_url, names[code])
                                 for code in CODES})
        baseline = await baseline_run(
            {code: database_url_for(database_url, names[code]) for code in CODES},
            data_dir, wallets, orders, options) if options.baseline else None
    finally:
        dropped = await uninterrupted(clean_up(services, database_url, names, data_dir))
    for phase, result in [*((f"same bank {c}", r) for c, r in same.items()),
                          ("cross bank", cross.pay)]:
        if result.problems:
            progress(f"{phase}: " + ", ".join(f"{kind} x{count}" for kind, count
                                              in result.problems.most_common(5)))
    for line in recon.lines:
        if line.startswith("BREAK"):
            progress(f"reconcile: {line}")
    return build_report(options, same, same_probe, cross, cross_probe, recon.to_json(),
                        services, dropped, baseline)


# ------------------------------------------------------------------ baseline
@dataclass
class BaselineResult:
    same: dict[str, PhaseResult]
    balanced: bool  # every balance moved by exactly the payments recorded


def baseline_spec(code: str, port: int, timezone: str, wallets: Sequence[BenchWallet],
                  limits: ClassLimits) -> dict[str, Any]:
    return {"code": code, "port": port, "timezone": timezone,
            "limits": [limits.balance_cap, limits.single, limits.daily, limits.yearly],
            "wallets": [{"number": w.address.number if w.address else 0,
                         "public_key_pem": w.key.public.to_pem().decode(),
                         "balance": WALLET_FUNDING} for w in wallets]}


async def start_baseline(name: str, database_url: str, spec: dict[str, Any], log_path: Path
                         ) -> Service:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env["CBDC_DATABASE_URL"] = database_url
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.retail_bench", "--serve-baseline", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=log, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode() + b"\n")  # it keeps stdin: EOF = we died
    await proc.stdin.drain()
    return Service(name, f"http://127.0.0.1:{spec['port']}", proc, log_path)


async def baseline_run(bank_urls: dict[str, str], data_dir: Path,
                       wallets: dict[str, list[BenchWallet]], orders: Orders,
                       options: RetailBenchOptions) -> BaselineResult:
    """The same-bank phase against one baseline process per bank, in its bank's
    database (its own tables), with the same wallets."""
    limits = class_limits(options.limit_preset, WALLET_CLASS)
    services: dict[str, Service] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for code in CODES:
                spec = baseline_spec(code, unused_port(), options.timezone, wallets[code],
                                     limits)
                services[code] = await start_baseline(f"baseline {code}", bank_urls[code],
                                                      spec, data_dir / f"baseline-{code}.log")
                await wait_healthy(session, services[code])
            progress("baseline: one process per bank, a row per wallet and one statement "
                     "per payment")
            same, _ = await same_bank_phase(session, {c: s.url for c, s in services.items()},
                                            wallets, orders, options, Measure(session, []),
                                            "baseline same bank")
    finally:
        await asyncio.gather(*(stop_service(s) for s in services.values()))
    balanced = True
    for code, result in same.items():
        conn = await asyncpg.connect(bank_urls[code])
        try:
            broken, payments = await baseline_books(conn, WALLET_FUNDING)
        finally:
            await conn.close()
        # The warm-up's payments are in the table too, not in `result`.
        balanced = balanced and broken == 0 and payments >= result.ok and result.errors == 0
    return BaselineResult(same, balanced)



async def serve_baseline_main() -> int:
    """`python -m loadtest.retail_bench --serve-baseline`: one bank's baseline, from the
    spec on the first line of stdin, on `CBDC_DATABASE_URL`; until SIGTERM, SIGINT or
    the parent closing stdin."""
    from central_bank.bench import serve_until_stopped, start_app
    from commercial_bank.baseline import BaselineWallet, create_app

    spec = json.loads(sys.stdin.readline())
    limits = ClassLimits(*spec["limits"])
    wallets = [BaselineWallet(w["number"], VerifyingKey.from_pem(w["public_key_pem"].encode()),
                              w["balance"], limits) for w in spec["wallets"]]
    app = create_app(os.environ["CBDC_DATABASE_URL"], spec["code"], wallets, spec["timezone"])
    return await serve_until_stopped(start_app(app, spec["port"]),
                                     f"baseline {spec['code']} on {spec['port']}")


def _ms(latencies: Sequence[float], q: float) -> float | None:
    value = percentile_ms(latencies, q)
    return None if value is None else round(value, 3)


def build_report(options: RetailBenchOptions, same: dict[str, PhaseResult], same_probe: Probe,
                 cross: CrossResult, cross_probe: Probe, recon: dict[str, Any],
                 services: Sequence[Service], dropped: dict[str, bool],
                 baseline: BaselineResult | None = None) -> dict[str, Any]:
    total = PhaseResult()
    for result in same.values():
        total.merge(result)
    total.elapsed = max((r.elapsed for r in same.values()), default=0.0)
    same_tps = sum(r.tps for r in same.values())
    stream_latencies = cross.arrivals.latencies()
    booked_latencies = cross.booked_latencies()
    latencies = stream_latencies if cross.streams_live else booked_latencies
    delivered = cross.shown_settled if cross.streams_live else len(booked_latencies)
    cross_tps = delivered / cross.window_s if cross.window_s > 0 else 0.0
    cross_p99 = _ms(latencies, 0.99)
    settled = cross.pay.ok
    return {
        **_baseline_report(same_tps, baseline),
        "same_bank_tps": round(same_tps, 1),
        "same_bank_p50_ms": _ms(total.latencies, 0.5),
        "same_bank_p99_ms": _ms(total.latencies, 0.99),
        "same_bank_payments": total.ok,
        "same_bank_rejected": total.rejected,
        "same_bank_errors": total.errors,
        "same_bank_ran_dry": total.ran_dry,
        "same_bank_by_bank": {code: {"tps": round(r.tps, 1), "p50_ms": _ms(r.latencies, 0.5),
                                     "p99_ms": _ms(r.latencies, 0.99), "payments": r.ok,
                                     "rejected": r.rejected, "errors": r.errors}
                              for code, r in same.items()},
        "cross_bank_tps": round(cross_tps, 1),
        "cross_bank_p50_ms": _ms(latencies, 0.5),
        "cross_bank_p99_ms": cross_p99,
        "cross_bank_latency_source": "stream" if cross.streams_live else "booked",
        "cross_bank_rate": options.cross_rate,
        "cross_bank_sent_per_s": round(cross.pay.requests / cross.pay.elapsed, 1)
        if cross.pay.elapsed > 0 else 0.0,
        "cross_bank_max_send_lag_ms": round(cross.lag_s * 1e3, 3),
        "cross_bank_sent": cross.pay.requests,
        "cross_bank_settled": settled,
        "cross_bank_pending": cross.pay.pending,
        "cross_bank_rejected": cross.pay.rejected,
        "cross_bank_errors": cross.pay.errors,
        "cross_bank_shown": cross.shown_settled,
        "cross_bank_not_shown": len(cross.arrivals.missing()) if cross.streams_live else None,
        "cross_bank_booked": len(booked_latencies),
        "cross_bank_not_booked": settled - len(booked_latencies),
        "cross_bank_answer_p50_ms": _ms(cross.pay.latencies, 0.5),
        "cross_bank_answer_p99_ms": _ms(cross.pay.latencies, 0.99),
        "cross_bank_booked_p50_ms": _ms(booked_latencies, 0.5),
        "cross_bank_booked_p99_ms": _ms(booked_latencies, 0.99),
        "cross_bank_stream_gaps": cross.arrivals.gaps,
        "cross_bank_stream_reopened": cross.arrivals.drops,
        "cross_bank_stream_problem": None if cross.streams_live else cross.stream_failure,
        "reconciled": bool(recon["reconciled"]),
        "reconcile_breaks": recon["breaks"],
        "reconcile_in_flight": recon["in_flight"],
        "meets_same_bank_target": same_tps >= TARGET_SAME_BANK_TPS,
        "meets_cross_bank_target": (options.cross_rate >= TARGET_CROSS_RATE
                                    and cross_p99 is not None
                                    and cross_p99 < TARGET_CROSS_P99_MS
                                    and delivered == settled == cross.pay.requests),
        "targets": {"same_bank_tps": TARGET_SAME_BANK_TPS,
                    "cross_bank_rate": TARGET_CROSS_RATE,
                    "cross_bank_p99_ms": TARGET_CROSS_P99_MS},
        "cpu_same_bank": same_probe.cpu,
        "cpu_cross_bank": cross_probe.cpu,
        "servers_same_bank": same_probe.servers,
        "servers_cross_bank": cross_probe.servers,
        "duration_s": options.duration,
        "wallets": options.wallets,
        "clients": options.clients,
        "server_pids": {s.name: s.pid for s in services},
        "server_exit_codes": {s.name: s.proc.returncode for s in services},
        "databases": sorted(dropped),
        "databases_dropped": all(dropped.values()),
    }


def _baseline_report(same_tps: float, baseline: BaselineResult | None) -> dict[str, Any]:
    if baseline is None:
        return {"baseline": False, "baseline_balanced": None, "ratio_same_bank": None}
    total = PhaseResult()
    for result in baseline.same.values():
        total.merge(result)
    tps = sum(r.tps for r in baseline.same.values())
    return {
        "baseline": True,
        "baseline_same_bank_tps": round(tps, 1),
        "baseline_same_bank_p50_ms": _ms(total.latencies, 0.5),
        "baseline_same_bank_p99_ms": _ms(total.latencies, 0.99),
        "baseline_same_bank_payments": total.ok,
        "baseline_same_bank_rejected": total.rejected,
        "baseline_balanced": baseline.balanced,
        "ratio_same_bank": same_tps / tps if tps else None,
    }


# --------------------------------------------------------------------- output
def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def format_report(report: dict[str, Any]) -> str:
    r = report
    rows = [
        (f"same bank ({r['clients']} clients)", r["same_bank_tps"], r["same_bank_p50_ms"],
         r["same_bank_p99_ms"], f">= {TARGET_SAME_BANK_TPS:,}/s: "
         f"{_yes_no(r['meets_same_bank_target'])}"),
    ]
    rows += [(f"  {code}", b["tps"], b["p50_ms"], b["p99_ms"], "")
             for code, b in r["same_bank_by_bank"].items()]
    rows += [
        (f"cross bank ({r['cross_bank_rate']:g}/s sent)", r["cross_bank_tps"],
         r["cross_bank_p50_ms"], r["cross_bank_p99_ms"],
         f"p99 < {TARGET_CROSS_P99_MS:g} ms at {TARGET_CROSS_RATE}/s: "
         f"{_yes_no(r['meets_cross_bank_target'])}"),
        ("  answered by BANKA", None, r["cross_bank_answer_p50_ms"],
         r["cross_bank_answer_p99_ms"], ""),
        ("  booked at BANKB", None, r["cross_bank_booked_p50_ms"],
         r["cross_bank_booked_p99_ms"], ""),
    ]
    if r["baseline"]:
        rows.append((f"baseline same bank ({r['clients']})", r["baseline_same_bank_tps"],
                     r["baseline_same_bank_p50_ms"], r["baseline_same_bank_p99_ms"],
                     f"banks / baseline: {number(r['ratio_same_bank'], 1)}x"))
    lines = [f"{'':30}{'payments/s':>12}{'p50 ms':>10}{'p99 ms':>10}   target"]
    for name, tps, p50, p99, target in rows:
        lines.append(f"{name:30}{number(tps):>12}{number(p50, 1):>10}{number(p99, 1):>10}   "
                     f"{target}".rstrip())
    source = ("the payee's live event stream" if r["cross_bank_latency_source"] == "stream"
              else "BANKB's booking time (no live stream)")
    lines += [
        f"(HTTP on loopback, each server its own process; cross-bank latency: order sent "
        f"to BANKA until {source})",
        f"same bank: {r['same_bank_payments']:,} settled, {r['same_bank_rejected']:,} "
        f"refused, {r['same_bank_errors']:,} unanswered"
        + ("; note: the signed orders ran out, the rest were signed on the clock"
           if r["same_bank_ran_dry"] else ""),
        f"cross bank: {r['cross_bank_sent']:,} sent, {r['cross_bank_settled']:,} settled, "
        f"{r['cross_bank_shown']:,} shown live, {r['cross_bank_booked']:,} booked at BANKB, "
        f"{r['cross_bank_rejected']:,} refused, {r['cross_bank_errors']:,} unanswered; "
        f"send lag at most {number(r['cross_bank_max_send_lag_ms'], 1)} ms",
    ]
    for phase in ("same_bank", "cross_bank"):
        cpu = r[f"cpu_{phase}"]
        lines.append(f"CPU, share of one core ({phase.replace('_', ' ')}): "
                     + ", ".join(f"{name} {percent(share)}" for name, share in cpu.items()))
        for name, stats in r[f"servers_{phase}"].items():
            routes = "; ".join(f"{route} {s['mean_ms']:.2f} ms x{s['count']:,}"
                               for route, s in stats["routes"].items())
            lines.append(f"  {name}: writer {number(stats['commits_per_s'])} commits/s, mean "
                         f"batch {number(stats['mean_batch'], 1)}, commit "
                         f"{number(stats['mean_commit_ms'], 2)} ms"
                         + (f"; server time {routes}" if routes else ""))
            stages = stats["interbank_stages_mean_ms"]
            if stages:
                lines.append(f"  {name}: payments to other banks, mean ms per stage: "
                             + ", ".join(f"{stage.replace('_', ' ')} {ms:.2f}"
                                         for stage, ms in stages.items()))
    if r["baseline"]:
        lines.append("baseline: commercial_bank.baseline, the same server and signed "
                     "orders, a row per wallet and one statement per payment; balanced: "
                     f"{str(r['baseline_balanced']).lower()}")
    lines.append(f"reconciled: {str(r['reconciled']).lower()}"
                 + (f" ({len(r['reconcile_breaks'])} breaks)" if r["reconcile_breaks"] else "")
                 + f"; databases dropped: {str(r['databases_dropped']).lower()}")
    return "\n".join(lines)


def succeeded(report: dict[str, Any]) -> bool:
    """Books reconciled and every settled cross-bank payment reached the payee."""
    return (bool(report["reconciled"]) and report["cross_bank_not_booked"] == 0
            and report["baseline_balanced"] is not False)


async def main(args: Any, endpoints: Any, settings: Any) -> int:
    """`cbdc bench retail`: run, print the table (or one JSON object); 0 when the books
    reconcile and no settled payment went missing."""
    options = RetailBenchOptions.from_args(args, settings)
    report = await run(endpoints.database_url, endpoints.redis_url, options)
    if options.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0 if succeeded(report) else 1


def _entry(argv: Sequence[str]) -> int:
    """`python -m loadtest.retail_bench [options]`, until `cbdc bench retail` is wired;
    `--serve-baseline` runs one baseline bank for `baseline_run`."""
    import argparse

    if argv[:1] == ["--serve-baseline"]:
        from cbdc import loops

        return loops.run(serve_baseline_main())

    from cbdc.settings import load_settings
    from cbdc.storage import running_storage

    parser = argparse.ArgumentParser(prog="python -m loadtest.retail_bench")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--wallets", type=int)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--cross-rate", type=float)
    parser.add_argument("--drain", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--database-prefix")
    parser.add_argument("--force", action="store_true", default=None)
    parser.add_argument("--json", action="store_true", default=None)
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", default=None)
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        with running_storage(settings) as endpoints:
            return asyncio.run(main(args, endpoints, settings))
    except CbdcError as exc:
        print(f"cbdc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(_entry(sys.argv[1:]))
