"""`cbdc bench ledger`: the settlement engine against a naive baseline and pgbench.

One run, on one PostgreSQL server, side by side:

* engine: a fresh database `cbdc_bench_<pid>`, the settlement migration, N accounts
  created through the API (timed, with the peak RSS after), then `submitters` asyncio
  tasks calling `ledger.create_transfers(batch)` in a closed loop for `duration`
  seconds; then open-loop paced submissions of small batches at half the measured
  peak; then, with `latency_rates`, one more paced phase at each rate given (the
  latency curve: up to which offered rate the p99 stays under 10 ms); finally every
  balance is read back and must sum to zero.
* naive: `naive_connections` connections doing one transaction per transfer (lock both
  rows in id order, update both, insert the transfer, commit), same access pattern.
* pgbench: its TPC-B-like workload in a database of its own, when `pgbench` is on PATH.

Transfers are generated before each clock starts, so the load generator's CPU is not
counted as the engine's (they share one process and one event loop, as a service
embedding the engine would). Latency is submit-to-durable per `create_transfers` call;
at half load it is counted from the moment a batch was due to be sent (open loop), so a
stall shows up in the percentiles instead of slowing the sender down.

Before each timed phase the server is asked to CHECKPOINT, so a phase does not pay for
the writes of the one before (without it the naive baseline, run right after the engine
wrote a million rows, once measured 188 transfers/s instead of about 3,000).

The databases the run created are dropped at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import settlement
from cbdc.bench_options import WRITER_SETTINGS, options_from_args
from cbdc.errors import ConfigError, LedgerError
from cbdc.migrations import apply_migrations
from cbdc.signing import SigningKey
from settlement.audit import history_breaks
from settlement.core.types import Account, CreateAccountResult, CreateTransferResult, Transfer
from settlement.engine import Engine
from settlement.writer import MAX_EVENTS_PER_REQUEST, LedgerWriter

LEDGER = 1
ACCOUNT_CODE = 1
TRANSFER_CODE = 1
MAX_AMOUNT = 1000
OK = CreateTransferResult.OK
LOOKUP_CHUNK = 8190
ACCOUNTS_IN_FLIGHT = 4  # account requests queued at once, so decide and commit overlap
POOL_HEADROOM = 1.5  # transfers generated per transfer the calibration predicts
MAX_POOL = 5_000_000  # about 1 GB of Transfer objects; beyond it a phase may run dry
LATENCY_TARGET_MS = 10.0  # p99 submit-to-durable the paced phases are read against
NAIVE_RETRIES = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


# --------------------------------------------------------------------- options
@dataclass(frozen=True)
class BenchOptions:
    duration: float = 10.0
    accounts: int = 100_000
    hot_share: float = 0.0  # share of transfers with one side among the hot accounts
    hot_accounts: int = 10
    # 64 x 512 queue enough for two batches committing and one being decided.
    submitters: int = 64
    batch: int = 512  # transfers per create_transfers call
    naive_connections: int = 16  # 0 skips the naive baseline
    json: bool = False
    half_load_duration: float | None = None  # None: max(duration, 5)
    half_load_batch: int = 64
    pgbench: bool = True
    pgbench_scale: int = 10
    pgbench_clients: int = 16
    pgbench_threads: int = 2
    max_events: int = 8190  # the writer's batch bound
    max_wait_ms: float = 0.0  # the writer's linger
    timezone: str = "Asia/Shanghai"
    seed: int | None = None
    # Offered rates (transfers/s) of extra paced phases, each as long as the half-load
    # phase and in its batches: p50/p99 against load, where the latency target holds.
    latency_rates: tuple[float, ...] = ()

    @property
    def half_load_seconds(self) -> float:
        if self.half_load_duration is not None:
            return self.half_load_duration
        return max(self.duration, 5.0)

    def validate(self) -> None:
        """Refuse options that cannot run, with a sentence saying why."""
        problems = []
        if not (math.isfinite(self.duration) and self.duration > 0):
            problems.append("duration must be a positive number of seconds")
        if not self.half_load_seconds > 0:
            problems.append("half_load_duration must be positive")
        if not 0.0 <= self.hot_share <= 1.0:
            problems.append("hot_share must be from 0 to 1")
        if self.hot_accounts < 1:
            problems.append("hot_accounts must be at least 1")
        if self.accounts < 2:
            problems.append("accounts must be at least 2")
        elif self.hot_share > 0 and self.accounts - self.hot_accounts < 2:
            problems.append("accounts must exceed hot_accounts by at least 2")
        if self.submitters < 1:
            problems.append("submitters must be at least 1")
        for name in ("batch", "half_load_batch"):
            if not 1 <= getattr(self, name) <= MAX_EVENTS_PER_REQUEST:
                problems.append(f"{name} must be from 1 to {MAX_EVENTS_PER_REQUEST}")
        if self.naive_connections < 0:
            problems.append("naive_connections must not be negative")
        if self.pgbench_scale < 1 or self.pgbench_clients < 1 or self.pgbench_threads < 1:
            problems.append("pgbench scale, clients and threads must be at least 1")
        if not all(math.isfinite(rate) and rate > 0 for rate in self.latency_rates):
            problems.append("latency_rates must be positive numbers of transfers per second")
        if problems:
            raise ConfigError("bench ledger: " + "; ".join(problems))

    @classmethod
    def from_args(cls, args: Any, settings: Any = None) -> BenchOptions:
        """Options from an argparse namespace and, where it leaves them out, from the
        settings."""
        return options_from_args(cls, args, settings, WRITER_SETTINGS)


# ---------------------------------------------------------------- measurements
@dataclass
class PhaseResult:
    """What one timed phase did: committed transfers, time and call latencies (s)."""

    ok: int = 0
    rejected: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    amount_ok: int = 0  # fen moved by the OK transfers
    ran_dry: bool = False  # the pre-generated transfers ran out before the clock did
    cpu_seconds: float = 0.0  # this process's CPU time during the phase

    @property
    def tps(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        return percentile_ms(self.latencies, q)


def percentile_ms(latencies: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile `q` (0..1) of latencies in seconds, in ms; None if none."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1] * 1000.0


def peak_rss_mb() -> float:
    """This process's peak resident set so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass(frozen=True)
class WriterSnapshot:
    commits: int
    entries: int
    commit_seconds: float
    checkpoints: int
    slow_commits: int  # commits that took longer than the latency target

    @classmethod
    def of(cls, ledger: LedgerWriter) -> WriterSnapshot:
        m = ledger.metrics
        return cls(m.commits, m.entries, m.commit_seconds.total, m.checkpoints,
                   m.commit_seconds.count_above(LATENCY_TARGET_MS / 1000.0))

    def since(self, earlier: WriterSnapshot) -> dict[str, float | int | None]:
        commits = self.commits - earlier.commits
        entries = self.entries - earlier.entries
        seconds = self.commit_seconds - earlier.commit_seconds
        return {
            "commits": commits,
            "mean_batch": entries / commits if commits else None,
            "mean_commit_ms": seconds * 1000.0 / commits if commits else None,
            "checkpoints": self.checkpoints - earlier.checkpoints,
            # A call waits for the commit in flight, then its own: one slow commit (a
            # stalled fsync, say) puts every call of its time over the target.
            "slow_commits": self.slow_commits - earlier.slow_commits,
        }


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the report."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------- access pattern
class Pattern:
    """Who pays whom: accounts 1..n, of which 1..hot are the hot ones.

    A `hot_share` of transfers has one side (debit or credit, at random) among the hot
    accounts and the other among the rest; the others stay among the rest. With a hot
    share of 0 every account is equally likely.
    """

    def __init__(self, accounts: int, hot_accounts: int, hot_share: float,
                 rng: random.Random) -> None:
        self.rng = rng
        self.hot_share = hot_share
        self.hot = min(hot_accounts, accounts) if hot_share > 0 else 0
        self.first_cold = self.hot + 1
        self.cold_count = accounts - self.hot

    def pair(self) -> tuple[int, int]:
        """(debit, credit), two different accounts."""
        rng = self.rng
        if self.hot and rng.random() < self.hot_share:
            hot = rng.randint(1, self.hot)
            other = self.first_cold + rng.randrange(self.cold_count)
            return (hot, other) if rng.random() < 0.5 else (other, hot)
        debit = rng.randrange(self.cold_count)
        credit = rng.randrange(self.cold_count - 1)
        if credit >= debit:
            credit += 1
        return self.first_cold + debit, self.first_cold + credit

    def amount(self) -> int:
        return self.rng.randint(1, MAX_AMOUNT)


Batch = tuple[list[Transfer], int]  # transfers and the sum of their amounts


def make_batches(pattern: Pattern, ids: Iterator[int], transfers: int,
                 batch: int) -> deque[Batch]:
    """`transfers` fresh transfers (unique ids) in batches of `batch`."""
    batches: deque[Batch] = deque()
    for start in range(0, transfers, batch):
        items = []
        total = 0
        for _ in range(min(batch, transfers - start)):
            debit, credit = pattern.pair()
            amount = pattern.amount()
            total += amount
            items.append(Transfer(id=next(ids), debit_account_id=debit,
                                  credit_account_id=credit, amount=amount, ledger=LEDGER,
                                  code=TRANSFER_CODE))
        batches.append((items, total))
    # The pool is the load generator's, alive for the whole phase: keep it out of the
    # cyclic collector's full walks, which would otherwise bill the engine for it.
    gc.freeze()
    return batches


# -------------------------------------------------------------- the engine
async def load_accounts(ledger: LedgerWriter, count: int) -> float:
    """Create accounts 1..count in requests of 8190; return the seconds it took."""
    accounts = [Account(id=i, ledger=LEDGER, code=ACCOUNT_CODE) for i in range(1, count + 1)]
    chunks = deque(accounts[i:i + MAX_EVENTS_PER_REQUEST]
                   for i in range(0, count, MAX_EVENTS_PER_REQUEST))

    async def creator() -> None:
        while chunks:
            results = await ledger.create_accounts(chunks.popleft())
            bad = [r for r in results if r is not CreateAccountResult.OK]
            if bad:
                raise LedgerError(f"bench: creating accounts failed: {bad[0].name}",
                                  ledger=LEDGER)

    started = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(ACCOUNTS_IN_FLIGHT)))
    return time.perf_counter() - started


async def submit(ledger: LedgerWriter, batch: Batch, result: PhaseResult,
                 sent_at: float) -> None:
    """One create_transfers call, its latency counted from `sent_at`."""
    transfers, total = batch
    try:
        results = await ledger.create_transfers(transfers)
    except LedgerError as exc:  # BatchNotCommitted: counted, the run goes on
        result.errors += 1
        progress(f"a batch failed: {exc}")
        return
    result.latencies.append(time.perf_counter() - sent_at)
    ok = results.count(OK)
    result.ok += ok
    result.rejected += len(results) - ok
    if ok == len(results):
        result.amount_ok += total
    else:
        result.amount_ok += sum(t.amount for t, r in zip(transfers, results, strict=True)
                                if r is OK)


async def timed(phase: Callable[[PhaseResult], Awaitable[None]]) -> PhaseResult:
    result = PhaseResult()
    cpu = time.process_time()
    started = time.perf_counter()
    await phase(result)
    result.elapsed = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu
    return result


async def closed_loop(ledger: LedgerWriter, batches: deque[Batch], submitters: int,
                      duration: float) -> PhaseResult:
    """`submitters` tasks submit back to back until `duration` passes (or batches run out)."""

    async def run(result: PhaseResult) -> None:
        deadline = time.perf_counter() + duration

        async def submitter() -> None:
            while batches and time.perf_counter() < deadline:
                await submit(ledger, batches.popleft(), result, time.perf_counter())
            if not batches and time.perf_counter() < deadline:
                result.ran_dry = True

        await asyncio.gather(*(submitter() for _ in range(submitters)))

    return await timed(run)


async def open_loop(ledger: LedgerWriter, batches: deque[Batch], interval: float
                    ) -> PhaseResult:
    """Send batch i at start + i * interval whether or not earlier ones were answered."""

    async def run(result: PhaseResult) -> None:
        start = time.perf_counter()
        # Only the calls in flight are held: thousands of finished tasks kept to the end
        # grew the collector's oldest generation, whose walks then stalled the loop for
        # 15 to 23 ms in the phase's last second, the calls behind them setting its p99.
        in_flight: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failures.append(task.exception())  # type: ignore[arg-type]

        for i in range(len(batches)):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(submit(ledger, batches.popleft(), result, due))
            in_flight.add(task)
            task.add_done_callback(finished)
        await asyncio.gather(*in_flight)
        if failures:
            raise failures[0]

    return await timed(run)


async def check_balances(ledger: LedgerWriter, accounts: int) -> tuple[int, int]:
    """(sum of debits posted, sum of credits posted) over accounts 1..accounts."""
    debits = credits = 0
    for start in range(1, accounts + 1, LOOKUP_CHUNK):
        ids = list(range(start, min(start + LOOKUP_CHUNK, accounts + 1)))
        for balance in await ledger.lookup_accounts(ids):
            if balance is None:
                raise LedgerError("bench: an account is missing from the ledger",
                                  ledger=LEDGER)
            debits += balance.debits_posted
            credits += balance.credits_posted
    return debits, credits


async def settle_server(dsn: str) -> None:
    """CHECKPOINT, so what an earlier phase wrote is flushed before the next is timed
    (otherwise the next phase pays for it). Needs superuser or pg_checkpoint; skipped
    with a note when refused."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.execute("CHECKPOINT")
        progress(f"server checkpoint took {time.perf_counter() - started:.2f} s")
    except asyncpg.PostgresError as exc:
        progress(f"could not CHECKPOINT between phases ({exc}); figures may interfere")
    finally:
        await conn.close()


async def settle(ledger: LedgerWriter, dsn: str) -> None:
    """Let the writer, idle, take and write the balance checkpoint the last phase's
    entries call for, then CHECKPOINT the server: the next phase is timed without the
    last one's work."""
    await ledger.checkpoint_settled()
    await settle_server(dsn)


def pool_size(rate: float, seconds: float, batch: int, submitters: int) -> int:
    """How many transfers to generate for a phase expected to run at `rate`."""
    wanted = int(rate * seconds * POOL_HEADROOM) + batch * submitters * 2
    return min(wanted, MAX_POOL)


async def engine_phases(dsn: str, options: BenchOptions, rng: random.Random
                        ) -> dict[str, Any]:
    """Load accounts, run the peak and half-load phases, check the balances."""
    pattern = Pattern(options.accounts, options.hot_accounts, options.hot_share, rng)
    ids = itertools.count(1)
    engine = await Engine.open(dsn, key=SigningKey.generate(), timezone=options.timezone,
                               max_events=options.max_events,
                               max_wait=options.max_wait_ms / 1000.0)
    try:
        ledger = await engine.ledger(LEDGER)
        progress(f"engine: creating {options.accounts:,} accounts")
        load_s = await load_accounts(ledger, options.accounts)
        rss_after_load = peak_rss_mb()
        progress(f"engine: accounts loaded in {load_s:.2f} s, peak RSS {rss_after_load:.0f} MB")

        # Calibrate (and warm up) so the peak phase gets enough pre-generated transfers.
        warm_seconds = min(2.0, max(0.2, options.duration * 0.2))
        warm_pool = max(50_000, options.batch * options.submitters * 4)
        warm = await closed_loop(ledger, make_batches(pattern, ids, warm_pool, options.batch),
                                 options.submitters, warm_seconds)
        size = pool_size(warm.tps, options.duration, options.batch, options.submitters)
        progress(f"engine: warm-up {warm.tps:,.0f} transfers/s; generating {size:,} transfers")
        batches = make_batches(pattern, ids, size, options.batch)

        progress(f"engine: {options.submitters} submitters x {options.batch} for "
                 f"{options.duration:g} s")
        await settle(ledger, dsn)
        before = WriterSnapshot.of(ledger)
        peak = await closed_loop(ledger, batches, options.submitters, options.duration)
        writer = WriterSnapshot.of(ledger).since(before)
        rss_after_peak = peak_rss_mb()
        batches.clear()
        if peak.ran_dry:
            progress("engine: the pre-generated transfers ran out before the clock; "
                     "the peak figure is a lower bound")

        await settle(ledger, dsn)
        half, half_target, half_writer = await half_load_phase(ledger, pattern, ids, options,
                                                               peak.tps)
        curve = []
        for rate in options.latency_rates:
            await settle(ledger, dsn)
            curve.append((rate, *await paced_phase(ledger, pattern, ids, options, rate)))
        debits, credits = await check_balances(ledger, options.accounts)
        chain_breaks = await history_breaks(ledger.store, limit=1)
    finally:
        await engine.close()
    phases = [warm, peak, *([half] if half else []), *(result for _, result, _ in curve)]
    acknowledged = sum(phase.amount_ok for phase in phases)
    errors = sum(phase.errors for phase in phases)
    return {
        "accounts_load_s": load_s,
        "peak_rss_mb": rss_after_load,
        "peak": peak,
        "peak_rss_after_engine_mb": rss_after_peak,
        "half": half,
        "half_target_tps": half_target,
        "peak_rss_after_half_mb": peak_rss_mb(),
        "writer": writer,
        "half_writer": half_writer,
        "curve": curve,
        "balanced": debits == credits,
        # Every transfer's history links name the transfer before it on each side.
        "history_linked": not chain_breaks,
        # Without failed batches (whose outcome is unknown) the ledger holds exactly
        # what it acknowledged: not one fen lost, none applied twice.
        "acknowledged_matches": debits == acknowledged if errors == 0 else None,
        "posted_fen": debits,
    }


async def half_load_phase(ledger: LedgerWriter, pattern: Pattern, ids: Iterator[int],
                          options: BenchOptions, peak_tps: float
                          ) -> tuple[PhaseResult | None, float, dict[str, Any] | None]:
    """Small batches at half the peak rate, paced (open loop)."""
    target = peak_tps / 2
    if target <= 0:
        progress("engine: no peak rate measured; skipping the half-load phase")
        return None, 0.0, None
    progress("engine: half load")
    half, writer = await paced_phase(ledger, pattern, ids, options, target)
    return half, target, writer


async def paced_phase(ledger: LedgerWriter, pattern: Pattern, ids: Iterator[int],
                      options: BenchOptions, rate: float
                      ) -> tuple[PhaseResult, dict[str, Any]]:
    """Batches of `half_load_batch` sent at `rate` transfers/s for `half_load_seconds`,
    whether or not earlier ones were answered (open loop), and what the writer did."""
    seconds = options.half_load_seconds
    batch = options.half_load_batch
    count = max(1, round(rate * seconds / batch))
    batches = make_batches(pattern, ids, count * batch, batch)
    progress(f"engine: paced, {rate:,.0f} transfers/s in batches of {batch} for {seconds:g} s")
    before = WriterSnapshot.of(ledger)
    result = await open_loop(ledger, batches, batch / rate)
    return result, WriterSnapshot.of(ledger).since(before)


# -------------------------------------------------------------- naive baseline
_NAIVE_SCHEMA = """
CREATE TABLE naive_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE naive_transfers (id bigint PRIMARY KEY, debit bigint NOT NULL,
                              credit bigint NOT NULL, amount bigint NOT NULL);
"""
_NAIVE_LOCK = ("SELECT id FROM naive_accounts WHERE id = $1 OR id = $2 "
               "ORDER BY id FOR UPDATE")
_NAIVE_DEBIT = "UPDATE naive_accounts SET balance = balance - $2 WHERE id = $1"
_NAIVE_CREDIT = "UPDATE naive_accounts SET balance = balance + $2 WHERE id = $1"
_NAIVE_INSERT = "INSERT INTO naive_transfers (id, debit, credit, amount) VALUES ($1, $2, $3, $4)"


async def naive_transfer(conn: asyncpg.Connection, transfer_id: int, debit: int,
                         credit: int, amount: int) -> int:
    """One transfer, one transaction; return how many times it had to be retried."""
    retries = 0
    while True:
        try:
            async with conn.transaction():
                await conn.fetch(_NAIVE_LOCK, min(debit, credit), max(debit, credit))
                await conn.execute(_NAIVE_DEBIT, debit, amount)
                await conn.execute(_NAIVE_CREDIT, credit, amount)
                await conn.execute(_NAIVE_INSERT, transfer_id, debit, credit, amount)
        except NAIVE_RETRIES:
            retries += 1
            continue
        return retries


async def naive_phase(dsn: str, options: BenchOptions, rng: random.Random
                      ) -> tuple[PhaseResult, bool]:
    """The one-transaction-per-transfer baseline; (result, balances sum to zero)."""
    conns = [await asyncpg.connect(dsn) for _ in range(options.naive_connections)]
    try:
        setup = conns[0]
        await setup.execute(_NAIVE_SCHEMA)
        await setup.copy_records_to_table(
            "naive_accounts", columns=("id", "balance"),
            records=((i, 0) for i in range(1, options.accounts + 1)))
        await setup.execute("ANALYZE naive_accounts")
        pattern = Pattern(options.accounts, options.hot_accounts, options.hot_share, rng)
        ids = itertools.count(1)
        await settle_server(dsn)
        progress(f"naive: {options.naive_connections} connections, one transaction per "
                 f"transfer, for {options.duration:g} s")

        async def run(result: PhaseResult) -> None:
            deadline = time.perf_counter() + options.duration

            async def worker(conn: asyncpg.Connection) -> None:
                while time.perf_counter() < deadline:
                    debit, credit = pattern.pair()
                    amount = pattern.amount()
                    sent = time.perf_counter()
                    result.errors += await naive_transfer(conn, next(ids), debit, credit,
                                                          amount)
                    result.latencies.append(time.perf_counter() - sent)
                    result.ok += 1
                    result.amount_ok += amount

            await asyncio.gather(*(worker(conn) for conn in conns))

        result = await timed(run)
        total = await setup.fetchval("SELECT coalesce(sum(balance), 0) FROM naive_accounts")
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()
    return result, total == 0


# --------------------------------------------------------------------- pgbench
@dataclass
class PgbenchResult:
    tps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    error: str | None = None


_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)


async def run_process(argv: Sequence[str], cwd: str | None, limit_s: float
                      ) -> tuple[int, str]:
    """Run a command; (exit code, its stdout and stderr). Killed if we are cancelled."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(limit_s):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(errors="replace")


def pgbench_latencies(folder: Path) -> list[float]:
    """Per-transaction latencies (s) from pgbench -l logs (third field: microseconds)."""
    latencies = []
    for log in folder.glob("pgbench_log.*"):
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                latencies.append(int(parts[2]) / 1e6)
    return latencies


async def pgbench_phase(dsn: str, options: BenchOptions) -> PgbenchResult:
    """pgbench's TPC-B-like run in database `dsn` (initialised here)."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return PgbenchResult(error="pgbench is not on PATH")
    seconds = max(1, round(options.duration))
    progress(f"pgbench: initialising scale {options.pgbench_scale}")
    code, out = await run_process(
        [pgbench, "-i", "-q", "-s", str(options.pgbench_scale), dsn], None, 600)
    if code != 0:
        return PgbenchResult(error=f"pgbench -i exited with {code}: {_last_line(out)}")
    await settle_server(dsn)
    progress(f"pgbench: {options.pgbench_clients} clients for {seconds} s")
    with tempfile.TemporaryDirectory(prefix="cbdc-bench-pgbench-") as folder:
        code, out = await run_process(
            [pgbench, "-c", str(options.pgbench_clients), "-j", str(options.pgbench_threads),
             "-T", str(seconds), "-n", "-l", dsn], folder, seconds + 120)
        latencies = pgbench_latencies(Path(folder))
    match = _TPS.search(out)
    if code != 0 or match is None:
        return PgbenchResult(error=f"pgbench exited with {code}: {_last_line(out)}")
    return PgbenchResult(tps=float(match.group(1)), p50_ms=percentile_ms(latencies, 0.5),
                         p99_ms=percentile_ms(latencies, 0.99))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# ------------------------------------------------------------------ databases
def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` on the same server."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def bench_database_names(pid: int | None = None) -> tuple[str, str]:
    """(engine and naive database, pgbench database) of the run in process `pid`."""
    base = f"cbdc_bench_{os.getpid() if pid is None else pid}"
    return base, f"{base}_pgbench"


async def create_database(admin: asyncpg.Connection, name: str) -> None:
    # A database of this name is left from an earlier process with our pid: replace it.
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')


async def drop_databases(server_dsn: str, names: Sequence[str]) -> None:
    """Drop `names`, forcing out any connection left; report but survive failures."""
    if not names:
        return
    try:
        admin = await asyncpg.connect(server_dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        progress(f"could not connect to drop {', '.join(names)}: {exc}")
        return
    try:
        for name in names:
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except asyncpg.PostgresError as exc:
                progress(f"could not drop database {name}: {exc}")
    finally:
        await admin.close()


async def apply_settlement_schema(dsn: str) -> None:
    """The settlement migrations, applied as `cbdc migrate` applies them."""
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, ("settlement", Path(settlement.__file__).parent
                                      / "migrations"))
    finally:
        await conn.close()


# ------------------------------------------------------------------------ run
async def run(database_url: str, options: BenchOptions | None = None) -> dict[str, Any]:
    """Run the whole benchmark against the server of `database_url`; return the report.

    The report is JSON-ready (numbers, booleans, None, strings, a list of names).
    """
    options = options or BenchOptions()
    options.validate()
    rng = random.Random(options.seed)
    bench_db, pgbench_db = bench_database_names()
    created: list[str] = []
    try:
        admin = await asyncpg.connect(database_url)
        try:
            created.append(bench_db)  # before CREATE: a cancel mid-way still drops it
            await create_database(admin, bench_db)
            if options.pgbench:
                created.append(pgbench_db)
                await create_database(admin, pgbench_db)
        finally:
            await admin.close()
        dsn = with_database(database_url, bench_db)
        await apply_settlement_schema(dsn)
        engine = await engine_phases(dsn, options, rng)
        naive, naive_balanced = None, None
        if options.naive_connections:
            naive, naive_balanced = await naive_phase(dsn, options, rng)
        pgbench = PgbenchResult(error="not run (pgbench disabled)")
        if options.pgbench:
            pgbench = await pgbench_phase(with_database(database_url, pgbench_db), options)
            if pgbench.error:
                progress(f"pgbench: no figure: {pgbench.error}")
    finally:
        await drop_databases(database_url, created)
    return build_report(options, engine, naive=naive, naive_balanced=naive_balanced,
                        pgbench=pgbench, databases=created)


def build_report(options: BenchOptions, engine: dict[str, Any], *,
                 naive: PhaseResult | None, naive_balanced: bool | None,
                 pgbench: PgbenchResult, databases: list[str]) -> dict[str, Any]:
    peak: PhaseResult = engine["peak"]
    half: PhaseResult | None = engine["half"]
    writer = engine["writer"]
    half_writer = engine["half_writer"] or {}
    curve = [{"offered_tps": rate, "tps": result.tps, "p50_ms": result.percentile_ms(0.5),
              "p99_ms": result.percentile_ms(0.99), "mean_batch": phase_writer["mean_batch"],
              "mean_commit_ms": phase_writer["mean_commit_ms"],
              "checkpoints": phase_writer["checkpoints"],
              "commits_over_target": phase_writer["slow_commits"]}
             for rate, result, phase_writer in engine["curve"]]
    within = [point["offered_tps"] for point in curve
              if point["p99_ms"] is not None and point["p99_ms"] < LATENCY_TARGET_MS]
    naive_tps = naive.tps if naive else None
    return {
        "engine_tps": peak.tps,
        "engine_p50_ms": peak.percentile_ms(0.5),
        "engine_p99_ms": peak.percentile_ms(0.99),
        "engine_rejected": peak.rejected,
        "engine_failed_batches": peak.errors,
        "engine_ran_dry": peak.ran_dry,
        "engine_cpu_share": peak.cpu_seconds / peak.elapsed if peak.elapsed else None,
        "engine_half_load_target_tps": engine["half_target_tps"],
        "engine_half_load_tps": half.tps if half else None,
        "engine_half_load_p50_ms": half.percentile_ms(0.5) if half else None,
        "engine_half_load_p99_ms": half.percentile_ms(0.99) if half else None,
        "half_writer_mean_batch": half_writer.get("mean_batch"),
        "half_writer_mean_commit_ms": half_writer.get("mean_commit_ms"),
        "half_writer_checkpoints": half_writer.get("checkpoints"),
        "half_writer_commits_over_target": half_writer.get("slow_commits"),
        "latency_curve": curve,
        "rates_p99_within_target": within,
        "max_rate_p99_within_target": max(within, default=None),
        "naive_tps": naive_tps,
        "naive_p50_ms": naive.percentile_ms(0.5) if naive else None,
        "naive_p99_ms": naive.percentile_ms(0.99) if naive else None,
        "naive_retries": naive.errors if naive else None,
        "naive_balanced": naive_balanced,
        "pgbench_tps": pgbench.tps,
        "pgbench_p50_ms": pgbench.p50_ms,
        "pgbench_p99_ms": pgbench.p99_ms,
        "pgbench_error": pgbench.error,
        "ratio_engine_naive": peak.tps / naive_tps if naive_tps else None,
        "writer_commits": writer["commits"],
        "writer_mean_batch": writer["mean_batch"],
        "writer_mean_commit_ms": writer["mean_commit_ms"],
        "writer_checkpoints": writer["checkpoints"],
        "accounts": options.accounts,
        "accounts_load_s": engine["accounts_load_s"],
        "peak_rss_mb": engine["peak_rss_mb"],
        "peak_rss_after_engine_mb": engine["peak_rss_after_engine_mb"],
        "peak_rss_after_half_mb": engine["peak_rss_after_half_mb"],
        "balanced": engine["balanced"],
        "history_linked": engine["history_linked"],
        "acknowledged_matches": engine["acknowledged_matches"],
        "duration_s": options.duration,
        "half_load_duration_s": options.half_load_seconds,
        "paced_batch": options.half_load_batch,
        "submitters": options.submitters,
        "batch": options.batch,
        "hot_share": options.hot_share,
        "hot_accounts": options.hot_accounts,
        "naive_connections": options.naive_connections,
        "databases": databases,
    }


# --------------------------------------------------------------------- output
def number(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators and `digits` decimals; "-" when unknown."""
    return "-" if value is None else f"{value:,.{digits}f}"


def percent(share: float | None) -> str:
    """A share (0..1) as a whole percentage; "-" when unknown."""
    return "-" if share is None else f"{share * 100:.0f}%"


def format_report(report: dict[str, Any]) -> str:
    r = report
    rows = [
        (f"engine ({r['submitters']} x {r['batch']})", r["engine_tps"], r["engine_p50_ms"],
         r["engine_p99_ms"], r["peak_rss_after_engine_mb"]),
        ("engine at half load", r["engine_half_load_tps"], r["engine_half_load_p50_ms"],
         r["engine_half_load_p99_ms"], r["peak_rss_after_half_mb"]),
        *((f"engine at {point['offered_tps']:,.0f}/s", point["tps"], point["p50_ms"],
           point["p99_ms"], None) for point in r["latency_curve"]),
        (f"naive ({r['naive_connections']} conns)", r["naive_tps"], r["naive_p50_ms"],
         r["naive_p99_ms"], None),
        ("pgbench TPC-B", r["pgbench_tps"], r["pgbench_p50_ms"], r["pgbench_p99_ms"], None),
    ]
    lines = [f"{'':24}{'transfers/s':>13}{'p50 ms':>10}{'p99 ms':>10}{'peak RSS MB':>13}"]
    for name, tps, p50, p99, rss in rows:
        lines.append(f"{name:24}{number(tps):>13}{number(p50, 1):>10}{number(p99, 1):>10}"
                     f"{number(rss):>13}")
    load_rate = r["accounts"] / r["accounts_load_s"] if r["accounts_load_s"] else None
    ratio = r["ratio_engine_naive"]
    lines += [
        "(peak RSS: this process, load generator included; the server's is not counted)",
        f"accounts: {r['accounts']:,} created in {r['accounts_load_s']:.2f} s "
        f"({number(load_rate)}/s); peak RSS after that {r['peak_rss_mb']:.0f} MB",
        f"engine/naive: {'-' if ratio is None else f'{ratio:.1f}x'}",
        f"writer during the peak: {r['writer_commits']:,} commits, mean batch "
        f"{number(r['writer_mean_batch'])} transfers, mean commit "
        f"{number(r['writer_mean_commit_ms'], 1)} ms, {r['writer_checkpoints']} balance "
        "checkpoints",
        f"paced phases: {r['paced_batch']} transfers a call; half load: target "
        f"{number(r['engine_half_load_target_tps'])} transfers/s, mean "
        f"batch {number(r['half_writer_mean_batch'])}, mean commit "
        f"{number(r['half_writer_mean_commit_ms'], 1)} ms, "
        f"{number(r['half_writer_commits_over_target'])} commits over "
        f"{LATENCY_TARGET_MS:g} ms, {number(r['half_writer_checkpoints'])} balance checkpoints",
        f"balanced: {str(r['balanced']).lower()} (ledger holds exactly what it "
        f"acknowledged: {_yes_no(r['acknowledged_matches'])}; naive balanced: "
        f"{_yes_no(r['naive_balanced'])})",
        f"history links: {'verified' if r['history_linked'] else 'BROKEN'} "
        "(each transfer names the one before it on each side of each account)",
    ]
    if r["pgbench_error"]:
        lines.append(f"pgbench: {r['pgbench_error']}")
    if r["latency_curve"]:
        within = ", ".join(f"{rate:,.0f}" for rate in r["rates_p99_within_target"])
        lines.append(f"p99 under {LATENCY_TARGET_MS:g} ms at: "
                     + (f"{within} transfers/s offered" if within
                        else "none of the paced rates"))
    return "\n".join(lines)


def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else str(value).lower()


async def main(args: Any, endpoints: Any, settings: Any) -> int:
    """`cbdc bench ledger`: run, print the table (or one JSON object), 0 if balanced."""
    options = BenchOptions.from_args(args, settings)
    report = await run(endpoints.database_url, options)
    if options.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0 if report["balanced"] and report["history_linked"] and (
        report["naive_balanced"] is not False) else 1
