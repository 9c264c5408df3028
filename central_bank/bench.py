"""`cbdc bench central-bank`: the central bank's HTTP API under load, end to end.

One run, on one PostgreSQL server:

* a fresh database `cbdc_cbbench_<pid>` with every project migration applied, and the
  real central bank (`central_bank.app.serve`) started in a process of its own on an
  unused loopback port (`python -m central_bank.bench --serve`), so the load
  generator's CPU is not the server's; it is stopped when the run ends;
* `banks` operator banks registered through the admin API with fresh keys, their
  reserves funded and swapped for e-CNY (signed `POST /v1/issuance`), enough for the run;
* batch phase: `clients` asyncio tasks, each signing for its share of the banks, POST
  `/v1/transfers/batch` with `batch_size` interbank transfers (random payer among its
  banks, random other payee bank, 1..100 fen, random wallet refs) back to back for
  `duration` seconds; transfers/s counts the transfers the answers say settled;
* between phases PostgreSQL takes a CHECKPOINT, so no phase is timed while paying for
  the one before (the baseline's phases too);
* single phase: `single_clients` tasks POST `/v1/transfers`, one transfer each, awaited
  end to end, for `duration` seconds; with `single_processes` > 1 the tasks are spread
  over that many load-generator processes (`python -m central_bank.bench --load`). The
  default is one: on the 2-core machine two processes measured fewer transfers/s (796
  vs 961, and 1,335 vs 1,683 against a server with a cheaper signature check), as they
  take CPU from the server and PostgreSQL that share the same two cores;
* then `GET /v1/admin/supply` must say balanced, and each bank's e-CNY position
  (`GET /v1/positions`) must have moved by exactly what its settled transfers moved;
  `/metrics` is scraped once for the writer's mean batch and mean commit time;
* then, with the central bank stopped, the same two phases against the baseline
  (`central_bank.baseline`: the same HTTP server, bodies and signature check, with a row
  per bank and one PostgreSQL transaction per request), started the same way
  (`python -m central_bank.bench --serve-baseline FUNDING`) on the same database and the
  same operator keys; its positions must also have moved by exactly what it settled. The
  report gives both and their ratios (`ratio_batch`, `ratio_single`).

Request bodies (msgspec-encoded bytes) are built before each clock starts; signing each
request (RFC 9421, through `cbdc.bank_client.CentralBankClient`) is the client's cost
and is inside the latency. Each phase is preceded by a short warm-up that also sizes the
pool of pre-built bodies; a pool that runs dry is topped up on the fly (and said so).
A request whose outcome is unknown (no answer, 5xx) is sent again after the phase under
the same idempotency key, so the balance check stays exact; it is not counted as settled
throughput. Progress goes to stderr, the report to stdout.

Options (argparse fields; a missing or None one keeps its default):

    --duration S           seconds of each timed phase (10)
    --banks N              operator banks, at least 2 (4)
    --batch-size N         transfers per batch request, 1..8000 (8000)
    --clients N            concurrent batch clients (4)
    --single-clients N     concurrent single-transfer tasks (40)
    --single-processes N   load-generator processes for the single phase (1)
    --no-baseline          skip the baseline phases
    --seed N               seed of the random transfers
    --json                 print exactly one JSON object instead of the table

The writer's batch settings, time zone and operator rate limit are taken from the
`cbdc` settings (`CBDC_BATCH_MAX_EVENTS`, ...) and handed to the server process.

Targets reported against: batch >= 50,000 transfers/s; single >= 3,000 settled/s
with p99 < 25 ms. The exit code of `main` is 0 when the books balanced (the baseline's
too), else 1.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import psutil
from aiohttp import web

from cbdc import loops, wire
from cbdc.bank_client import CentralBankClient, CentralBankError, CentralBankUnreachable
from cbdc.bench_options import WRITER_SETTINGS, options_from_args
from cbdc.errors import CbdcError, ConfigError
from cbdc.heap import freeze_long_lived
from cbdc.http_metrics import read_samples
from cbdc.processes import Service, stop_process, unused_port, wait_healthy
from cbdc.signing import SigningKey
from settlement.bench import number, percent, percentile_ms, settle_server

DATABASE_PREFIX = "cbdc_cbbench_"
MAX_AMOUNT = 100  # fen per transfer, at most
BANK_PREFIX = "BENCH"
WALLET_REFS = 4096  # distinct pseudonymous wallet refs per bank
POOL_HEADROOM = 1.5  # bodies built per body the warm-up predicts
MAX_POOL_TRANSFERS = 3_000_000  # about 400 MB of JSON bodies; beyond it top up on the fly
FUNDING_RATE = 2_000_000  # transfers/s one bank could pay out, for sizing its e-CNY
SERVER_START_S = 60.0
SERVER_STOP_S = 15.0
RESOLVE_RETRIES = 3
BASELINE_TIMEOUT_FACTOR = 5  # the baseline's requests may take this many times longer
TARGET_BATCH_TPS = 50_000
TARGET_SINGLE_TPS = 3_000
TARGET_SINGLE_P99_MS = 25.0
BATCH_PATH = "/v1/transfers/batch"
SINGLE_PATH = "/v1/transfers"


# --------------------------------------------------------------------- options
@dataclass(frozen=True)
class CentralBankBenchOptions:
    duration: float = 10.0
    banks: int = 4
    batch_size: int = 8000
    clients: int = 4  # batch-phase clients
    # Single-phase tasks, over all load-generator processes. At 3,000 transfers/s one
    # takes about 11 ms end to end, so about 32 are in flight; 64 measured no more
    # transfers/s, only twice the wait (p50 22 ms, p99 37 ms, against 12 and 21 at 40).
    single_clients: int = 40
    single_processes: int = 1  # 1: the tasks run in this process
    json: bool = False
    seed: int | None = None
    request_timeout: float = 60.0  # seconds one request may take before it counts as lost
    warmup: float | None = None  # seconds of warm-up per phase; None: 20% of duration, 0.5..2
    max_events: int = 8190  # the server's writer batch bound
    max_wait_ms: float = 1.0  # the server's writer linger
    timezone: str = "Asia/Shanghai"
    operator_rate: float = 20_000.0  # the server's per-bank request rate limit
    baseline: bool = True  # also measure the hand-written baseline (central_bank.baseline)

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
        if self.banks < 2:
            problems.append("banks must be at least 2 (a transfer needs two banks)")
        if self.banks > 999:
            problems.append("banks must be at most 999")
        if not 1 <= self.batch_size <= wire.MAX_BATCH:
            problems.append(f"batch_size must be from 1 to {wire.MAX_BATCH}")
        if self.clients < 1:
            problems.append("clients must be at least 1")
        if self.single_clients < 1:
            problems.append("single_clients must be at least 1")
        if not 1 <= self.single_processes <= self.single_clients:
            problems.append("single_processes must be from 1 to single_clients")
        if not self.request_timeout > 0:
            problems.append("request_timeout must be positive")
        if not self.warmup_seconds >= 0:
            problems.append("warmup must not be negative")
        if problems:
            raise ConfigError("bench central-bank: " + "; ".join(problems))

    @classmethod
    def from_args(cls, args: Any, settings: Any = None) -> CentralBankBenchOptions:
        """Options from an argparse namespace and, where it leaves them out, from the
        settings."""
        return options_from_args(cls, args, settings,
                                 (*WRITER_SETTINGS, ("operator_rate", "operator_rate")))


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the report."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -------------------------------------------------------------- the requests
@dataclass(slots=True)
class Prepared:
    """One request ready to sign and send: its payer, body and what it moves."""

    payer: str
    path: str
    body: bytes
    key: str  # Idempotency-Key
    count: int  # transfers in it
    total: int  # fen they move
    deltas: dict[str, int]  # position change per bank if every transfer settles


class Generator:
    """Random interbank transfers with unique ids (a random per-generator prefix and a
    counter, in UUID form), between banks `codes`."""

    def __init__(self, codes: Sequence[str], rng: random.Random) -> None:
        self.codes = list(codes)
        self.rng = rng
        prefix = f"{rng.getrandbits(80):020x}"
        self._prefix = f"{prefix[:8]}-{prefix[8:12]}-{prefix[12:16]}-{prefix[16:20]}-"
        self._next = 0
        self._refs = {code: [f"{code.lower()}:w{rng.getrandbits(40):010x}"
                             for _ in range(WALLET_REFS)] for code in self.codes}
        self._others = {code: [c for c in self.codes if c != code] for code in self.codes}

    def new_id(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next:012x}"

    def _transfer(self, payer: str) -> wire.InterbankTransfer:
        rng = self.rng
        payee = rng.choice(self._others[payer])
        return wire.InterbankTransfer(
            id=self.new_id(), payee_bank=payee, amount=rng.randint(1, MAX_AMOUNT),
            payer_ref=rng.choice(self._refs[payer]), payee_ref=rng.choice(self._refs[payee]))

    def batch(self, payers: Sequence[str], size: int) -> Prepared:
        payer = self.rng.choice(payers)
        items = [self._transfer(payer) for _ in range(size)]
        deltas: Counter[str] = Counter()
        for item in items:
            deltas[item.payee_bank] += item.amount
        total = sum(deltas.values())
        deltas[payer] -= total
        return Prepared(payer, BATCH_PATH, msgspec.json.encode(wire.TransferBatch(items)),
                        self.new_id(), size, total, dict(deltas))

    def single(self, payers: Sequence[str]) -> Prepared:
        payer = self.rng.choice(payers)
        item = self._transfer(payer)
        return Prepared(payer, SINGLE_PATH, msgspec.json.encode(item), item.id, 1,
                        item.amount, {payer: -item.amount, item.payee_bank: item.amount})


# ---------------------------------------------------------------- measurement
@dataclass
class PhaseResult:
    """What one timed phase did, as the answers told it."""

    requests: int = 0
    ok: int = 0  # transfers settled
    rejected: int = 0  # transfers refused (4xx or a rejected batch item)
    errors: int = 0  # requests with no definite answer (sent again after the phase)
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    settled_fen: int = 0
    net: Counter[str] = field(default_factory=Counter)  # position change per bank
    ran_dry: bool = False
    cpu_seconds: float = 0.0  # the load generator's CPU time during the phase
    server_cpu_seconds: float = 0.0
    unknown: list[Prepared] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)  # error kinds, for the log

    @property
    def tps(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def merge(self, other: PhaseResult) -> None:
        self.requests += other.requests
        self.ok += other.ok
        self.rejected += other.rejected
        self.errors += other.errors
        self.elapsed = max(self.elapsed, other.elapsed)
        self.latencies.extend(other.latencies)
        self.settled_fen += other.settled_fen
        self.net.update(other.net)
        self.ran_dry = self.ran_dry or other.ran_dry
        self.cpu_seconds += other.cpu_seconds
        self.unknown.extend(other.unknown)
        self.problems.update(other.problems)

    def to_json(self) -> dict[str, Any]:
        """For a load-generator process to hand its result back (no unknown requests:
        it resolves them itself)."""
        return {"requests": self.requests, "ok": self.ok, "rejected": self.rejected,
                "errors": self.errors, "elapsed": self.elapsed, "latencies": self.latencies,
                "settled_fen": self.settled_fen, "net": dict(self.net),
                "ran_dry": self.ran_dry, "cpu_seconds": self.cpu_seconds,
                "problems": dict(self.problems)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PhaseResult:
        return cls(requests=data["requests"], ok=data["ok"], rejected=data["rejected"],
                   errors=data["errors"], elapsed=data["elapsed"],
                   latencies=list(data["latencies"]), settled_fen=data["settled_fen"],
                   net=Counter(data["net"]), ran_dry=data["ran_dry"],
                   cpu_seconds=data["cpu_seconds"], problems=Counter(data["problems"]))


def account(prepared: Prepared, data: Any, result: PhaseResult) -> None:
    """Count what an answered request settled."""
    if prepared.path == SINGLE_PATH:
        if isinstance(data, dict) and data.get("status") == "settled":
            result.ok += 1
            result.settled_fen += prepared.total
            result.net.update(prepared.deltas)
        else:
            result.rejected += 1
        return
    settled = data.get("settled", 0) if isinstance(data, dict) else 0
    result.ok += settled
    result.rejected += prepared.count - settled
    if settled == prepared.count:
        result.settled_fen += prepared.total
        result.net.update(prepared.deltas)
        return
    # Some were refused: count the settled ones item by item.
    items = msgspec.json.decode(prepared.body, type=wire.TransferBatch).transfers
    status = {r["id"]: r["status"] for r in data.get("results", [])} \
        if isinstance(data, dict) else {}
    for item in items:
        if status.get(item.id) == "settled":
            result.settled_fen += item.amount
            result.net[prepared.payer] -= item.amount
            result.net[item.payee_bank] += item.amount


async def send(clients: dict[str, CentralBankClient], prepared: Prepared,
               result: PhaseResult, *, retries: int = 0) -> bool:
    """Sign and send one prepared request; count its outcome. False when the outcome
    is unknown (no answer or a 5xx): the request is kept to be sent again."""
    client = clients[prepared.payer]
    started = time.perf_counter()
    result.requests += 1
    try:
        _, data = await client.request("POST", prepared.path, msgspec.Raw(prepared.body),
                                       idempotency_key=prepared.key, retries=retries)
    except CentralBankError as exc:
        if exc.status >= 500:
            result.errors += 1
            result.unknown.append(prepared)
            result.problems[f"HTTP {exc.status}"] += 1
            return False
        result.latencies.append(time.perf_counter() - started)
        result.rejected += prepared.count
        result.problems[f"HTTP {exc.status} {exc.code or exc.type or ''}".strip()] += 1
        return True
    except CentralBankUnreachable as exc:
        result.errors += 1
        result.unknown.append(prepared)
        result.problems[f"unreachable: {type(exc.__cause__).__name__}"] += 1
        return False
    result.latencies.append(time.perf_counter() - started)
    account(prepared, data, result)
    return True


async def closed_loop(clients: dict[str, CentralBankClient],
                      senders: Sequence[tuple[deque[Prepared], Callable[[], Prepared]]],
                      duration: float, server: psutil.Process | None, *,
                      count_dry: bool = True) -> PhaseResult:
    """One task per (pool, maker) sends pre-built requests from its pool back to back
    until `duration` passes; when its pool is empty it builds the next one itself."""
    result = PhaseResult()
    freeze_long_lived()  # the pool lives through the phase: no full walks of it in the timing
    server_cpu = _cpu(server)
    cpu = time.process_time()
    started = time.perf_counter()
    deadline = started + duration

    async def sender(pool: deque[Prepared], make: Callable[[], Prepared]) -> None:
        while time.perf_counter() < deadline:
            if pool:
                prepared = pool.popleft()
            else:
                result.ran_dry = result.ran_dry or count_dry
                prepared = make()
            await send(clients, prepared, result)

    await asyncio.gather(*(sender(pool, make) for pool, make in senders))
    result.elapsed = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu
    result.server_cpu_seconds = _cpu(server) - server_cpu
    return result


async def resolve(clients: dict[str, CentralBankClient], result: PhaseResult) -> int:
    """Send the requests of unknown outcome again (same idempotency key and body, a new
    signature): what they did, settled or not, joins the net but not the throughput.
    Returns how many still have no answer."""
    unresolved = 0
    pending, result.unknown = result.unknown, []
    for prepared in pending:
        after = PhaseResult()
        if not await send(clients, prepared, after, retries=RESOLVE_RETRIES):
            unresolved += 1
            continue
        result.settled_fen += after.settled_fen
        result.net.update(after.net)
    return unresolved


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def pool_size(rate: float, seconds: float, senders: int) -> int:
    """Requests to pre-build for a phase expected to run at `rate` requests/s."""
    return int(rate * seconds * POOL_HEADROOM) + senders * 2


# ------------------------------------------------------------------- the banks
@dataclass
class Bank:
    code: str
    key_id: str
    key: SigningKey


def bank_codes(count: int, prefix: str = BANK_PREFIX) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(1, count + 1)]


def make_clients(url: str, banks: Sequence[Bank], session: aiohttp.ClientSession,
                 timeout: float) -> dict[str, CentralBankClient]:
    return {b.code: CentralBankClient(url, key_id=b.key_id, key=b.key, session=session,
                                      timeout=timeout, retries=0) for b in banks}


async def admin_call(session: aiohttp.ClientSession, url: str, token: str, method: str,
                     path: str, body: Any = None) -> Any:
    async with session.request(method, url + path, json=body,
                               headers={"Authorization": f"Bearer {token}"}) as response:
        data = await response.json(content_type=None)
        if response.status >= 400:
            raise CbdcError(f"bench: {method} {path} answered {response.status}: "
                            f"{data.get('detail') if isinstance(data, dict) else data}")
        return data


async def open_banks(session: aiohttp.ClientSession, url: str, token: str,
                     clients_of: Callable[[Sequence[Bank]], dict[str, CentralBankClient]],
                     count: int, amount: int, new_id: Callable[[], str],
                     prefix: str = BANK_PREFIX
                     ) -> tuple[list[Bank], dict[str, CentralBankClient]]:
    """Register `count` operator banks (`<prefix>001`, ...) with fresh keys, fund their
    reserves and swap `amount` fen of them for e-CNY each."""
    banks = []
    for code in bank_codes(count, prefix):
        key = SigningKey.generate()
        bank = Bank(code, f"{code.lower()}-bench-1", key)
        await admin_call(session, url, token, "POST", "/v1/admin/operators", {
            "code": code, "name": f"Bench bank {code}", "key_id": bank.key_id,
            "public_key_pem": key.public.to_pem().decode()})
        await admin_call(session, url, token, "POST", f"/v1/admin/operators/{code}/reserves",
                         {"id": new_id(), "amount": amount})
        banks.append(bank)
    clients = clients_of(banks)
    for bank in banks:
        result = await clients[bank.code].issue(new_id(), amount)
        if result.get("status") != "settled":
            raise CbdcError(f"bench: issuing e-CNY to {bank.code} failed: {result}")
    return banks, clients


async def positions(clients: dict[str, CentralBankClient]) -> dict[str, int]:
    """Each bank's e-CNY position, fen."""
    return {code: int((await client.positions())["ecny"]) for code, client in clients.items()}


# ------------------------------------------------------------------ the phases
def batch_payers(codes: Sequence[str], clients: int) -> list[list[str]]:
    """The banks each batch client signs for: bank i goes to client i mod clients; a
    client left without one (more clients than banks) shares bank i mod banks."""
    shares: list[list[str]] = [[] for _ in range(clients)]
    for index, code in enumerate(codes):
        shares[index % clients].append(code)
    for index, share in enumerate(shares):
        if not share:
            share.append(codes[index % len(codes)])
    return shares


async def batch_phase(clients: dict[str, CentralBankClient], gen: Generator,
                      options: CentralBankBenchOptions, server: psutil.Process | None,
                      label: str = "batch") -> PhaseResult:
    """`clients` tasks, each with its own pool of batches paid by its own banks."""
    makers = [functools.partial(gen.batch, share, options.batch_size)
              for share in batch_payers(gen.codes, options.clients)]
    warm = PhaseResult()
    if options.warmup_seconds > 0:
        progress(f"{label}: warm-up for {options.warmup_seconds:g} s")
        warm = await closed_loop(clients, [(deque(), make) for make in makers],
                                 options.warmup_seconds, server, count_dry=False)
    rate = warm.requests / warm.elapsed if warm.elapsed else 10.0
    per_client = math.ceil(min(pool_size(rate, options.duration, options.clients),
                               MAX_POOL_TRANSFERS // options.batch_size) / options.clients)
    progress(f"{label}: warm-up {warm.tps:,.0f} transfers/s; building "
             f"{per_client * options.clients:,} requests of {options.batch_size:,} transfers")
    senders = [(deque(make() for _ in range(per_client)), make) for make in makers]
    progress(f"{label}: {options.clients} clients x {options.batch_size:,} transfers for "
             f"{options.duration:g} s")
    result = await closed_loop(clients, senders, options.duration, server)
    if result.ran_dry:
        progress(f"{label}: the pre-built requests ran out; the rest were built on the "
                 "clock")
    result.settled_fen += warm.settled_fen
    result.net.update(warm.net)
    result.unknown.extend(warm.unknown)
    return result


async def single_phase_here(clients: dict[str, CentralBankClient], gen: Generator,
                            tasks: int, duration: float, warmup: float,
                            server: psutil.Process | None,
                            ready: Callable[[], Any] | None = None) -> PhaseResult:
    """The single-transfer load from this process: `tasks` tasks, any bank pays."""
    def make() -> Prepared:
        return gen.single(gen.codes)

    warm = PhaseResult()
    if warmup > 0:
        empty: deque[Prepared] = deque()
        warm = await closed_loop(clients, [(empty, make)] * tasks, warmup, server,
                                 count_dry=False)
    rate = warm.requests / warm.elapsed if warm.elapsed else 1000.0
    pool = deque(make() for _ in range(pool_size(rate, duration, tasks)))
    if ready is not None:
        await ready()
    result = await closed_loop(clients, [(pool, make)] * tasks, duration, server)
    result.settled_fen += warm.settled_fen
    result.net.update(warm.net)
    result.unknown.extend(warm.unknown)
    return result


async def single_phase(url: str, banks: Sequence[Bank], clients: dict[str, CentralBankClient],
                       gen: Generator, options: CentralBankBenchOptions,
                       server: psutil.Process | None, rng: random.Random,
                       label: str = "single") -> PhaseResult:
    tasks, processes = options.single_clients, options.single_processes
    progress(f"{label}: {tasks} tasks in {processes} load-generator process"
             f"{'es' if processes > 1 else ''} for {options.duration:g} s "
             f"(after a {options.warmup_seconds:g} s warm-up)")
    if processes == 1:
        return await single_phase_here(clients, gen, tasks, options.duration,
                                       options.warmup_seconds, server)
    return await single_phase_processes(url, banks, options, server, rng)


async def single_phase_processes(url: str, banks: Sequence[Bank],
                                 options: CentralBankBenchOptions,
                                 server: psutil.Process | None, rng: random.Random
                                 ) -> PhaseResult:
    """The single-transfer load from `single_processes` processes of this module
    (`--load`): each builds its pool, says ready, and on "go" runs for the duration."""
    share = [options.single_clients // options.single_processes] * options.single_processes
    for i in range(options.single_clients % options.single_processes):
        share[i] += 1
    procs: list[asyncio.subprocess.Process] = []
    try:
        for tasks in share:
            spec = {"url": url, "tasks": tasks, "duration": options.duration,
                    "warmup": options.warmup_seconds, "timeout": options.request_timeout,
                    "seed": rng.getrandbits(64),
                    "banks": [{"code": b.code, "key_id": b.key_id,
                               "pem": b.key.to_pem().decode()} for b in banks]}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "central_bank.bench", "--load",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                start_new_session=True)
            procs.append(proc)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(spec).encode() + b"\n")
            await proc.stdin.drain()
        for proc in procs:  # every one warmed up and built its pool
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 600)
            if line.strip() != b"ready":
                raise CbdcError("bench: a load-generator process failed to start "
                                f"(exit code {await proc.wait()})")
        server_cpu = _cpu(server)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        result = PhaseResult()
        for proc in procs:
            assert proc.stdout is not None
            out = await asyncio.wait_for(proc.stdout.read(),
                                         options.duration + options.request_timeout * 5 + 60)
            if await proc.wait() != 0 or not out.strip():
                raise CbdcError(f"bench: a load-generator process exited with "
                                f"{proc.returncode} and no result")
            result.merge(PhaseResult.from_json(json.loads(out)))
        result.server_cpu_seconds = _cpu(server) - server_cpu
        return result
    finally:
        for proc in procs:
            await stop_process(proc, 5.0)


async def load_main() -> int:
    """`python -m central_bank.bench --load`: one single-phase load generator, driven
    over stdin/stdout by `single_phase_processes`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    spec = json.loads(await reader.readline())
    banks = [Bank(b["code"], b["key_id"], SigningKey.from_pem(b["pem"].encode()))
             for b in spec["banks"]]
    gen = Generator([b.code for b in banks], random.Random(spec["seed"]))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = make_clients(spec["url"], banks, session, spec["timeout"])

        async def ready() -> None:
            print("ready", flush=True)
            if (await reader.readline()).strip() != b"go":
                raise SystemExit(1)

        result = await single_phase_here(clients, gen, spec["tasks"], spec["duration"],
                                         spec["warmup"], None, ready)
        if await resolve(clients, result):
            return 1  # the parent sees no result: its balance check cannot be exact
    print(json.dumps(result.to_json()), flush=True)
    return 0


# --------------------------------------------------------------- the server
def server_env(dsn: str, port: int, data_dir: Path, token: str,
               options: CentralBankBenchOptions) -> dict[str, str]:
    """The server process's settings, as `CBDC_*` variables (not arguments: the DSN may
    hold a password and the token is a secret, neither belongs in `ps`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env.update({
        "CBDC_DATABASE_URL": dsn,
        "CBDC_DATA_DIR": str(data_dir),
        "CBDC_ADMIN_TOKEN": token,
        "CBDC_CENTRAL_BANK_HOST": "127.0.0.1",
        "CBDC_CENTRAL_BANK_PORT": str(port),
        "CBDC_BATCH_MAX_EVENTS": str(options.max_events),
        "CBDC_BATCH_MAX_WAIT_MS": str(options.max_wait_ms),
        "CBDC_TIMEZONE": options.timezone,
        "CBDC_OPERATOR_RATE": str(options.operator_rate),
    })
    return env


async def start_server(dsn: str, port: int, data_dir: Path, token: str,
                       options: CentralBankBenchOptions, log_path: Path,
                       *role: str) -> asyncio.subprocess.Process:
    """This module in a process of its own, as `--serve` (the central bank) unless
    `role` says otherwise (`--serve-baseline FUNDING`)."""
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "central_bank.bench", *(role or ("--serve",)),
            env=server_env(dsn, port, data_dir, token, options),
            stdin=asyncio.subprocess.PIPE, stdout=log, stderr=log,
            start_new_session=True)  # Ctrl-C reaches us; we stop it in order


async def serve_main() -> int:
    """`python -m central_bank.bench --serve`: the central bank from `CBDC_*` settings,
    until SIGTERM / SIGINT or until the parent closes our stdin (it died)."""
    from central_bank.app import serve

    settings = _server_settings()
    assert settings.database_url is not None
    return await serve_until_stopped(serve(settings, settings.database_url),
                                      f"central bank serving on port "
                                      f"{settings.central_bank_port}")


async def serve_baseline_main(funding: int) -> int:
    """`python -m central_bank.bench --serve-baseline FUNDING`: the baseline, on the
    database and port of the `CBDC_*` settings, each bank's position starting at
    `funding` fen; stopped as `--serve` is."""
    from central_bank.baseline import create_app

    settings = _server_settings()
    assert settings.database_url is not None
    port = settings.central_bank_port
    return await serve_until_stopped(
        start_app(create_app(settings.database_url, funding), port),
        f"baseline serving on port {port}")


async def start_app(app: web.Application, port: int) -> web.AppRunner:
    """`app` listening on loopback `port`; the caller keeps the runner."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _server_settings() -> Any:
    import logging

    from cbdc.settings import load_settings

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return load_settings()


async def serve_until_stopped(starting: Awaitable[web.AppRunner], started: str) -> int:
    """Serve what `starting` starts until SIGTERM / SIGINT or until the parent closes
    our stdin (it died)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def orphaned() -> None:
        await reader.read()  # EOF: the parent is gone
        stop.set()

    watcher = asyncio.create_task(orphaned())
    runner = await starting
    print(started, flush=True)
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        await runner.cleanup()
    return 0


# ----------------------------------------------------------------- databases
def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` on the same server (the query is kept)."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def database_name(pid: int | None = None) -> str:
    return f"{DATABASE_PREFIX}{os.getpid() if pid is None else pid}"


async def create_database(server_dsn: str, name: str) -> None:
    from cbdc.migrations import apply_migrations, migration_sources

    admin = await asyncpg.connect(server_dsn)
    try:
        # One left from an earlier process with our pid: replace it.
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(server_dsn, name))
    try:
        await apply_migrations(conn, *migration_sources())
    finally:
        await conn.close()


async def drop_database(server_dsn: str, name: str) -> bool:
    """Drop `name`, forcing out any session left; True when it is gone."""
    try:
        admin = await asyncpg.connect(server_dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        progress(f"could not connect to drop database {name}: {exc}")
        return False
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    except asyncpg.PostgresError as exc:
        progress(f"could not drop database {name}: {exc}")
        return False
    finally:
        await admin.close()


# ---------------------------------------------------------------------- run
def _mean(samples: dict[str, float], family: str, scale: float = 1.0) -> float | None:
    count = samples.get(f"{family}_count")
    total = samples.get(f"{family}_sum")
    return total * scale / count if count and total is not None else None


async def run(database_url: str, options: CentralBankBenchOptions | None = None
              ) -> dict[str, Any]:
    """Run the whole benchmark against the PostgreSQL server of `database_url`; return
    the report (JSON-ready: numbers, booleans, None, strings, small dicts)."""
    options = options or CentralBankBenchOptions()
    options.validate()
    rng = random.Random(options.seed)
    name = database_name()
    dsn = with_database(database_url, name)
    data_dir = Path(tempfile.mkdtemp(prefix="cbdc-cbbench-"))
    log_path = data_dir / "server.log"
    token = secrets.token_urlsafe(32)
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    proc: asyncio.subprocess.Process | None = None
    created = False
    dropped = False
    try:
        created = True  # before CREATE: a cancel mid-way still drops it
        progress(f"creating database {name}")
        await create_database(database_url, name)
        proc = await start_server(dsn, port, data_dir, token, options, log_path)
        server = psutil.Process(proc.pid)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_healthy(session, Service("bench: the central bank server", url,
                                                proc, log_path), SERVER_START_S)
            progress(f"central bank (pid {proc.pid}) answering at {url}")
            funding = int(options.duration * 2 * FUNDING_RATE * MAX_AMOUNT) + 10**6
            setup = Generator([], rng)
            banks, clients = await open_banks(
                session, url, token,
                lambda banks: make_clients(url, banks, session, options.request_timeout),
                options.banks, funding, setup.new_id)
            progress(f"{options.banks} operator banks registered, {funding:,} fen of e-CNY "
                     "issued to each")
            before = await positions(clients)
            gen = Generator([b.code for b in banks], rng)

            batch = await batch_phase(clients, gen, options, server)
            await settle_server(dsn)
            single = await single_phase(url, banks, clients, gen, options, server, rng)
            unresolved = await resolve(clients, batch) + await resolve(clients, single)

            after = await positions(clients)
            supply = await admin_call(session, url, token, "GET", "/v1/admin/supply")
            metrics = await read_samples(session, url)
            await stop_process(proc, SERVER_STOP_S)  # the baseline gets the machine alone
            baseline = await baseline_run(session, dsn, data_dir, banks, gen, options,
                                          funding, rng) if options.baseline else None
    finally:
        if proc is not None:
            await stop_process(proc, SERVER_STOP_S)
        if created:
            dropped = await drop_database(database_url, name)
        shutil.rmtree(data_dir, ignore_errors=True)
    net_all = {code: batch.net.get(code, 0) + single.net.get(code, 0) for code in before}
    positions_match = unresolved == 0 and all(
        after[code] - before[code] == net_all[code] for code in before)
    for phase_name, phase in (("batch", batch), ("single", single)):
        if phase.problems:
            progress(f"{phase_name}: problems: " + ", ".join(
                f"{kind} x{count}" for kind, count in phase.problems.most_common(5)))
    return build_report(options, batch, single, supply=supply, metrics=metrics,
                        positions_match=positions_match, unresolved=unresolved,
                        moved={code: after[code] - before[code] for code in before},
                        server_pid=proc.pid if proc else None,
                        server_exit=proc.returncode if proc else None,
                        database=name, dropped=dropped, baseline=baseline)


@dataclass
class BaselineResult:
    batch: PhaseResult
    single: PhaseResult
    balanced: bool  # each bank's position moved by exactly what it settled


async def baseline_run(session: aiohttp.ClientSession, dsn: str, data_dir: Path,
                       banks: Sequence[Bank], gen: Generator,
                       options: CentralBankBenchOptions, funding: int, rng: random.Random
                       ) -> BaselineResult:
    """The same two phases against `central_bank.baseline`, in a process of its own."""
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "baseline.log"
    proc = await start_server(dsn, port, data_dir, secrets.token_urlsafe(16), options, log_path,
                              "--serve-baseline", str(funding))
    try:
        await wait_healthy(session, Service("bench: the baseline server", url, proc,
                                            log_path), SERVER_START_S)
        progress(f"baseline (pid {proc.pid}) answering at {url}: one PostgreSQL "
                 "transaction per request, a row per bank")
        server = psutil.Process(proc.pid)
        # Its batches wait on each other's row locks: give a request longer than ours.
        clients = make_clients(url, banks, session,
                               options.request_timeout * BASELINE_TIMEOUT_FACTOR)
        before = await positions(clients)
        await settle_server(dsn)  # not to pay for what the central bank's phases wrote
        batch = await batch_phase(clients, gen, options, server, "baseline batch")
        await settle_server(dsn)
        single = await single_phase(url, banks, clients, gen, options, server, rng,
                                    "baseline single")
        unresolved = await resolve(clients, batch) + await resolve(clients, single)
        after = await positions(clients)
    finally:
        await stop_process(proc, SERVER_STOP_S)
    moved = {code: batch.net.get(code, 0) + single.net.get(code, 0) for code in before}
    balanced = unresolved == 0 and all(after[code] - before[code] == moved[code]
                                       for code in before)
    return BaselineResult(batch, single, balanced)


def _share(seconds: float, elapsed: float) -> float | None:
    return seconds / elapsed if elapsed > 0 else None


def build_report(options: CentralBankBenchOptions, batch: PhaseResult, single: PhaseResult,
                 *, supply: dict[str, Any], metrics: dict[str, float], positions_match: bool,
                 unresolved: int, moved: dict[str, int], server_pid: int | None,
                 server_exit: int | None, database: str, dropped: bool,
                 baseline: BaselineResult | None = None) -> dict[str, Any]:
    single_p99 = percentile_ms(single.latencies, 0.99)
    supply_balanced = bool(supply.get("balanced"))
    return {
        **_baseline_report(batch, single, baseline),
        "batch_tps": batch.tps,
        "batch_p50_ms": percentile_ms(batch.latencies, 0.5),
        "batch_p99_ms": percentile_ms(batch.latencies, 0.99),
        "batch_requests": batch.requests,
        "batch_rejected": batch.rejected,
        "batch_errors": batch.errors,
        "batch_ran_dry": batch.ran_dry,
        "batch_client_cpu_share": _share(batch.cpu_seconds, batch.elapsed),
        "batch_server_cpu_share": _share(batch.server_cpu_seconds, batch.elapsed),
        "single_tps": single.tps,
        "single_p50_ms": percentile_ms(single.latencies, 0.5),
        "single_p99_ms": single_p99,
        "single_requests": single.requests,
        "single_rejected": single.rejected,
        "single_errors": single.errors,
        "single_ran_dry": single.ran_dry,
        "single_client_cpu_share": _share(single.cpu_seconds, single.elapsed),
        "single_server_cpu_share": _share(single.server_cpu_seconds, single.elapsed),
        "balanced": supply_balanced and positions_match,
        "supply_balanced": supply_balanced,
        "positions_match": positions_match,
        "unresolved": unresolved,
        "settled_fen": batch.settled_fen + single.settled_fen,
        "position_changes": moved,
        "ecny_outstanding": supply.get("ecny_outstanding"),
        "server_mean_batch": _mean(metrics, "cbdc_ledger_batch_entries"),
        "server_mean_commit_ms": _mean(metrics, "cbdc_ledger_commit_seconds", 1000.0),
        "server_commits": metrics.get("cbdc_ledger_commits_total"),
        "meets_batch_target": batch.tps >= TARGET_BATCH_TPS,
        "meets_single_target": (single.tps >= TARGET_SINGLE_TPS and single_p99 is not None
                                and single_p99 < TARGET_SINGLE_P99_MS),
        "targets": {"batch_tps": TARGET_BATCH_TPS, "single_tps": TARGET_SINGLE_TPS,
                    "single_p99_ms": TARGET_SINGLE_P99_MS},
        "duration_s": options.duration,
        "banks": options.banks,
        "batch_size": options.batch_size,
        "clients": options.clients,
        "single_clients": options.single_clients,
        "single_processes": options.single_processes,
        "server_pid": server_pid,
        "server_exit_code": server_exit,
        "database": database,
        "database_dropped": dropped,
    }


def _baseline_report(batch: PhaseResult, single: PhaseResult,
                     baseline: BaselineResult | None) -> dict[str, Any]:
    """The baseline's figures and the ratios to it (None without a baseline run)."""
    if baseline is None:
        return {"baseline": False, "baseline_balanced": None, "ratio_batch": None,
                "ratio_single": None}
    b_batch, b_single = baseline.batch, baseline.single
    return {
        "baseline": True,
        "baseline_batch_tps": b_batch.tps,
        "baseline_batch_p50_ms": percentile_ms(b_batch.latencies, 0.5),
        "baseline_batch_p99_ms": percentile_ms(b_batch.latencies, 0.99),
        "baseline_batch_rejected": b_batch.rejected,
        "baseline_single_tps": b_single.tps,
        "baseline_single_p50_ms": percentile_ms(b_single.latencies, 0.5),
        "baseline_single_p99_ms": percentile_ms(b_single.latencies, 0.99),
        "baseline_single_rejected": b_single.rejected,
        "baseline_balanced": baseline.balanced,
        "ratio_batch": batch.tps / b_batch.tps if b_batch.tps else None,
        "ratio_single": single.tps / b_single.tps if b_single.tps else None,
    }


# --------------------------------------------------------------------- output
def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def format_report(report: dict[str, Any]) -> str:
    r = report
    procs = r["single_processes"]
    rows = [
        (f"batch ({r['clients']} x {r['batch_size']:,})", r["batch_tps"], r["batch_p50_ms"],
         r["batch_p99_ms"], f">= {TARGET_BATCH_TPS:,}/s: {_yes_no(r['meets_batch_target'])}"),
        (f"single ({r['single_clients']} tasks, {procs} proc)", r["single_tps"],
         r["single_p50_ms"], r["single_p99_ms"],
         f">= {TARGET_SINGLE_TPS:,}/s, p99 < {TARGET_SINGLE_P99_MS:g} ms: "
         f"{_yes_no(r['meets_single_target'])}"),
    ]
    if r["baseline"]:
        rows += [
            (f"baseline batch ({r['clients']} x {r['batch_size']:,})",
             r["baseline_batch_tps"], r["baseline_batch_p50_ms"], r["baseline_batch_p99_ms"],
             f"central bank / baseline: {number(r['ratio_batch'], 1)}x"),
            (f"baseline single ({r['single_clients']} tasks)", r["baseline_single_tps"],
             r["baseline_single_p50_ms"], r["baseline_single_p99_ms"],
             f"central bank / baseline: {number(r['ratio_single'], 1)}x"),
        ]
    lines = [f"{'':30}{'transfers/s':>13}{'p50 ms':>10}{'p99 ms':>10}   target"]
    for name, tps, p50, p99, target in rows:
        lines.append(f"{name:30}{number(tps):>13}{number(p50, 1):>10}"
                     f"{number(p99, 1):>10}   {target}")
    lines += [
        "(HTTP on loopback, server in its own process; latency per request, signing "
        "included)",
        f"server ledger writer (whole run, /metrics): mean batch "
        f"{number(r['server_mean_batch'])} transfers, mean commit "
        f"{number(r['server_mean_commit_ms'], 2)} ms",
        f"CPU, share of one core: server {percent(r['batch_server_cpu_share'])} (batch) / "
        f"{percent(r['single_server_cpu_share'])} (single); load generator "
        f"{percent(r['batch_client_cpu_share'])} / {percent(r['single_client_cpu_share'])}"
        + (f" (single: summed over its {procs} processes)" if procs > 1 else ""),
        f"rejected: {r['batch_rejected']:,} batch / {r['single_rejected']:,} single; "
        f"no answer: {r['batch_errors']:,} / {r['single_errors']:,} requests "
        f"(sent again after the phase; unresolved {r['unresolved']})",
        f"balanced: {str(r['balanced']).lower()} (supply balanced: "
        f"{str(r['supply_balanced']).lower()}; positions moved exactly by the "
        f"{r['settled_fen']:,} fen settled: {str(r['positions_match']).lower()})",
    ]
    if r["baseline"]:
        lines.insert(3, "(baseline: central_bank.baseline, the same server, bodies and "
                        "signature check; a row per bank, one transaction per request)")
        lines.append(f"baseline balanced: {str(r['baseline_balanced']).lower()} (positions "
                     "moved exactly by what it settled)")
    if r["batch_ran_dry"] or r["single_ran_dry"]:
        lines.append("note: pre-built requests ran out; the rest were built on the clock")
    return "\n".join(lines)


async def main(args: Any, endpoints: Any, settings: Any) -> int:
    """`cbdc bench central-bank`: run, print the table (or one JSON object), 0 if the
    books balanced."""
    options = CentralBankBenchOptions.from_args(args, settings)
    report = await run(endpoints.database_url, options)
    if options.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0 if report["balanced"] and report["baseline_balanced"] is not False else 1


def _entry(argv: Sequence[str]) -> int:
    if argv[:1] == ["--serve"]:
        return loops.run(serve_main())
    if argv[:1] == ["--load"]:
        return loops.run(load_main())
    if argv[:1] == ["--serve-baseline"] and len(argv) == 2 and argv[1].isdigit():
        return loops.run(serve_baseline_main(int(argv[1])))
    print("usage: python -m central_bank.bench --serve | --serve-baseline FUNDING | --load "
          "(internal; use 'cbdc bench central-bank')", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_entry(sys.argv[1:]))
