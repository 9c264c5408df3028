"""`cbdc loadtest SCENARIO`: a Locust run against the network, reconciled after.

One run:

* the network: embedded by default, each tier a process of its own on unused loopback
  ports (`loadtest.network.start_system`; the central bank alone for the settlement
  scenarios, with banks BANKA and BANKB for retail), its databases prefixed
  `--database-prefix` (`cbdc_ltest_`) and dropped after; or an existing one
  (`--host URL` of its central bank, `--bank CODE=URL` of each bank, default the
  configured `CBDC_BANKS` on the central bank's host; the admin and teller tokens and
  the banks' operator keys from the configured data folder);
* seeding: settlement registers `--banks` operator banks with fresh keys and swaps
  reserves for e-CNY (`central_bank.bench.open_banks`); retail opens and funds
  `--wallets` class-1 wallets at each bank (`loadtest.seeding.seed_wallets`). The keys
  go into `RUN/seed.json` (owner-only), which the Locust users sign with;
* Locust, headless, in processes of its own (never imported here: gevent patches the
  standard library): one process with `--workers 1`, else a master and N workers on
  loopback (default: one worker per core; against the embedded network on a 2-core
  machine `--workers 1` leaves the servers more: 40 single-transfer users settled
  1,956/s, p99 47 ms, with two workers and 2,654 to 2,753/s, p99 24 to 25 ms, with
  one). The users are in `loadtest/locustfiles/`;
  CSV files (`RUN/locust_stats.csv`, ...) and an HTML report (`RUN/report.html`) land in
  the run folder with the processes' logs;
* the central bank's (and banks') `/metrics` before and after: the writers' mean batch
  and commit time during the run, and in a retail run with payments to the other bank
  the payer banks' mean time per stage of those payments (`loadtest.server_metrics`);
* reconciliation: every transfer a user was told succeeded (`RUN/acks-*.txt`) must be in
  its ledger (the central bank's, or the payer bank's) with its amount; the ledger's
  primary key makes it exactly once. Then `loadtest.reconcile` checks every invariant
  (supply, each bank against its position, every chain) once the servers stopped;
* thresholds: `--max-p99-ms`, `--max-fail-ratio`, `--min-tps` (settled transfers/s);
  the exit code is 1 when one is crossed or the books do not reconcile, else 0.

Progress goes to stderr; the summary table (or, with `--json`, one JSON object) to
stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import os
import random
import re
import shutil
import string
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from cbdc.bench_options import WRITER_SETTINGS, options_from_args
from cbdc.errors import CbdcError, ConfigError
from cbdc.http_metrics import read_samples
from cbdc.processes import Service, die_with_parent, stop_process, unused_port
from cbdc.settings import Settings
from cbdc.storage import database_url_for
from cbdc.wire import id_from_text
from central_bank.bench import make_clients, open_banks, progress
from loadtest.curves import CURVES
from loadtest.network import (
    CENTRAL_BANK_SERVICE,
    CODES,
    Network,
    claim_databases,
    clean_up,
    database_names,
    existing_databases,
    start_system,
    stop_all,
    uninterrupted,
)
from loadtest.seeding import WALLET_FUNDING, seed_wallets
from loadtest.server_metrics import stage_keys, stage_means_ms
from settlement.bench import number

LOCUSTFILES = Path(__file__).resolve().parent / "locustfiles"
SHAPES = tuple(CURVES)


@dataclass(frozen=True)
class Scenario:
    locustfile: str
    user_classes: tuple[str, ...]
    retail: bool  # wallets at commercial banks (else operator banks at the central bank)
    users: int  # default peak users


# Settlement: 40 users keep about as many transfers in flight as the central bank settles
# at its peak on the 2-core machine (about 3,000/s at 11 ms); 64 settled no more (2,728/s)
# and only waited longer (p99 46 ms against 23 to 25).
SCENARIOS = {
    "settlement": Scenario("settlement_users.py", ("SingleTransferUser",), False, 40),
    "settlement-batch": Scenario("settlement_users.py", ("BatchTransferUser",), False, 4),
    "settlement-mix": Scenario("settlement_users.py",
                               ("SingleTransferUser", "BatchTransferUser"), False, 32),
    "retail": Scenario("retail_users.py", ("WalletUser",), True, 32),
}
DEFAULT_PREFIX = "cbdc_ltest_"
FUNDING_RATE = 2_000_000  # transfers/s one operator bank could pay out, for its e-CNY
MAX_AMOUNT = 100  # fen per transfer at most (the locust files' bound)
LOCUST_GRACE_S = 120.0  # beyond the run time: start-up, stopping, writing the reports
ID_CHUNK = 50_000


# --------------------------------------------------------------------- options
@dataclass(frozen=True)
class LoadTestOptions:
    scenario: str = "settlement"
    host: str | None = None  # the central bank of a running network; None: embedded
    bank: tuple[str, ...] = ()  # CODE=URL of the banks of a running network (retail)
    users: int | None = None  # peak users; None: the scenario's default
    spawn_rate: float | None = None  # users started per second; None: all in a second
    duration: float = 30.0
    workers: int | None = None  # None: one per core
    external_workers: int = 0  # workers started elsewhere (docker compose) connect to us
    master_port: int = 5557  # where the master listens for external workers
    shape: str | None = None
    pace: float = 0.0  # requests/s per user; 0: closed loop
    batch_size: int = 4000
    banks: int = 4
    hot_banks: int = 2
    hot_share: float = 0.5
    wallets: int = 50
    cross_share: float = 0.5
    run_dir: Path | None = None
    max_p99_ms: float | None = None
    max_fail_ratio: float | None = None
    min_tps: float | None = None
    json: bool = False
    force: bool = False
    database_prefix: str = DEFAULT_PREFIX
    # The embedded servers' settings (from the `cbdc` settings by `from_args`).
    timezone: str = "Asia/Shanghai"
    max_events: int = 8190
    max_wait_ms: float = 1.0
    limit_preset: str = "2020"
    operator_rate: float = 1_000_000.0  # a load test measures the ledger, not the limiter

    @property
    def worker_count(self) -> int:
        if self.external_workers:
            return self.external_workers
        return self.workers if self.workers is not None else (os.cpu_count() or 1)

    @property
    def peak_users(self) -> int:
        return self.users if self.users is not None else SCENARIOS[self.scenario].users

    def validate(self) -> None:
        """Refuse options that cannot run, with a sentence saying why."""
        problems = []
        if self.scenario not in SCENARIOS:
            problems.append(f"scenario must be one of {', '.join(SCENARIOS)}")
        if not (math.isfinite(self.duration) and self.duration >= 1):
            problems.append("duration must be at least 1 second")
        if self.users is not None and self.users < 1:
            problems.append("users must be at least 1")
        if self.workers is not None and not 1 <= self.workers <= 64:
            problems.append("workers must be from 1 to 64")
        if not 0 <= self.external_workers <= 1000:
            problems.append("external_workers must be from 0 to 1000")
        if not 1 <= self.master_port <= 65535:
            problems.append("master_port must be a port number")
        if self.shape is not None and self.shape not in SHAPES:
            problems.append(f"shape must be one of {', '.join(SHAPES)}")
        if not (math.isfinite(self.pace) and self.pace >= 0):
            problems.append("pace must be a number of requests per second, 0 or more")
        if not 1 <= self.batch_size <= 8000:
            problems.append("batch_size must be from 1 to 8000")
        if not 2 <= self.banks <= 999:
            problems.append("banks must be from 2 to 999")
        if not 0 <= self.hot_share <= 1 or not 0 <= self.cross_share <= 1:
            problems.append("hot_share and cross_share must be from 0 to 1")
        if self.wallets < 2:
            problems.append("wallets must be at least 2 per bank")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", self.database_prefix):
            problems.append("database_prefix must be a lower-case letter and then up to 30 "
                            "lower-case letters, digits or underscores")
        if self.max_fail_ratio is not None and not 0 <= self.max_fail_ratio <= 1:
            problems.append("max_fail_ratio must be from 0 to 1")
        for item in self.bank:
            code, sep, url = item.partition("=")
            if not sep or not code or not url.startswith(("http://", "https://")):
                problems.append(f"bank takes CODE=URL, got {item!r}")
        if problems:
            raise ConfigError("loadtest: " + "; ".join(problems))

    @classmethod
    def from_args(cls, args: Any, settings: Any = None) -> LoadTestOptions:
        options = options_from_args(cls, args, settings,
                                    (*WRITER_SETTINGS, ("limit_preset", "limit_preset")))
        if options.run_dir is not None and not isinstance(options.run_dir, Path):
            options = _replace(options, run_dir=Path(options.run_dir))
        if not isinstance(options.bank, tuple):
            options = _replace(options, bank=tuple(options.bank))
        return options


def _replace(options: LoadTestOptions, **changes: Any) -> LoadTestOptions:
    return LoadTestOptions(**{**asdict(options), **changes})


# -------------------------------------------------------------------- seeding
@dataclass
class Target:
    """The network under load, seeded: what the users need and where its books are."""

    central_bank_url: str
    bank_urls: dict[str, str]  # the banks the users pay through
    databases: dict[str, str]  # ledger name (central_bank or a bank code) -> database URL
    reconciled_banks: list[str]  # the banks whose books are checked after the run


async def seed_operators(session: aiohttp.ClientSession, url: str, token: str,
                         options: LoadTestOptions) -> dict[str, Any]:
    """Register the operator banks the settlement users sign for; their keys."""
    funding = int(options.duration * FUNDING_RATE * MAX_AMOUNT) + 10**6
    # A fresh code prefix each run: a running network keeps the banks of earlier runs.
    prefix = "LT" + "".join(random.choices(string.ascii_uppercase, k=4))
    banks, _ = await open_banks(
        session, url, token, lambda banks: make_clients(url, banks, session, 60.0),
        options.banks, funding, lambda: str(uuid.uuid4()), prefix)
    progress(f"{options.banks} operator banks registered ({prefix}001...), {funding:,} fen "
             "of e-CNY issued to each")
    return {"banks": [{"code": b.code, "key_id": b.key_id, "pem": b.key.to_pem().decode()}
                      for b in banks]}


async def seed_retail(session: aiohttp.ClientSession, bank_urls: dict[str, str],
                      tellers: dict[str, str], options: LoadTestOptions) -> dict[str, Any]:
    progress(f"opening and funding {options.wallets} wallets at each bank")
    wallets = await seed_wallets(session, bank_urls, tellers, options.wallets)
    return {"wallets": [{"bank": w.code, "address": w.text, "pem": w.key.to_pem().decode()}
                        for made in wallets.values() for w in made]}


def write_seed(run_dir: Path, target: Target, seeded: dict[str, Any]) -> Path:
    """The seed file (private keys: owner-only)."""
    path = run_dir / "seed.json"
    content = {"central_bank_url": target.central_bank_url, "bank_urls": target.bank_urls,
               **seeded}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle)
    return path


# ---------------------------------------------------------------------- locust
def locust_argv(options: LoadTestOptions, seed_file: Path, run_dir: Path, host: str
                ) -> tuple[list[str], list[str] | None, dict[str, str]]:
    """The master's (or single process's) command line, the workers' (None: no
    workers) and the environment both run with."""
    scenario = SCENARIOS[options.scenario]
    common = [sys.executable, "-m", "locust",
              "-f", str(LOCUSTFILES / scenario.locustfile),
              "--seed-file", str(seed_file), "--ack-dir", str(run_dir),
              "--pace", repr(options.pace), "--batch-size", str(options.batch_size),
              "--hot-banks", str(options.hot_banks), "--hot-share", repr(options.hot_share),
              "--cross-share", repr(options.cross_share), "--loglevel", "WARNING"]
    users = options.peak_users
    rate = options.spawn_rate if options.spawn_rate is not None else float(users)
    master = [*common, "--headless", "--host", host, "-u", str(users), "-r", repr(rate),
              "-t", f"{math.ceil(options.duration)}s", "--stop-timeout", "10",
              "--csv", str(run_dir / "locust"), "--html", str(run_dir / "report.html"),
              "--exit-code-on-error", "0", "--only-summary"]
    workers = None
    if options.external_workers:
        # Workers on other machines (docker compose's locust-worker): all interfaces.
        master += ["--master", "--master-bind-host", "0.0.0.0", "--master-bind-port",
                   str(options.master_port), "--expect-workers", str(options.external_workers),
                   "--expect-workers-max-wait", "300"]
    elif options.worker_count > 1:
        port = unused_port()
        master += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                   str(port), "--expect-workers", str(options.worker_count),
                   "--expect-workers-max-wait", "120"]
        workers = [*common, "--worker", "--master-host", "127.0.0.1", "--master-port",
                   str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_")}
    if options.shape:
        env["LOADTEST_SHAPE"] = options.shape
    return [*master, *scenario.user_classes], (
        [*workers, *scenario.user_classes] if workers else None), env


# Locust goes when this process does, even on kill -9 (Linux); its own session keeps
# Ctrl-C for us, and we stop it in order.
_orphan_guard = die_with_parent if sys.platform == "linux" else None


async def run_locust(options: LoadTestOptions, seed_file: Path, run_dir: Path, host: str
                     ) -> int:
    """Run Locust to the end; its master's exit code."""
    master_argv, worker_argv, env = locust_argv(options, seed_file, run_dir, host)
    procs: list[asyncio.subprocess.Process] = []
    logs = []
    try:
        count = options.worker_count if worker_argv else 0
        progress(f"locust: {options.peak_users} users, "
                 + (f"a master and {count} workers on loopback" if count else
                    f"a master waiting for {options.external_workers} workers on port "
                    f"{options.master_port}" if options.external_workers else "one process")
                 + f", {options.duration:g} s" + (f", {options.shape} shape"
                                                  if options.shape else ""))
        for index in range(count):
            log = (run_dir / f"locust-worker-{index + 1}.log").open("wb")
            logs.append(log)
            assert worker_argv is not None
            procs.append(await asyncio.create_subprocess_exec(
                *worker_argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                preexec_fn=_orphan_guard))
        log = (run_dir / "locust.log").open("wb")
        logs.append(log)
        master = await asyncio.create_subprocess_exec(
            *master_argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            preexec_fn=_orphan_guard)
        procs.insert(0, master)
        try:
            code = await asyncio.wait_for(master.wait(), options.duration + LOCUST_GRACE_S)
        except TimeoutError:
            raise CbdcError(f"loadtest: locust did not finish within "
                            f"{options.duration + LOCUST_GRACE_S:g} s; see "
                            f"{run_dir / 'locust.log'}") from None
        for worker in procs[1:]:  # they quit when the master does
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.wait(), 15)
        return code
    finally:
        for proc in procs:
            await stop_process(proc, 10.0, "locust")
        for log in logs:
            log.close()


# -------------------------------------------------------------------- results
def read_stats(path: Path) -> list[dict[str, Any]]:
    """Locust's `_stats.csv`: one row per request name, and the Aggregated one."""
    if not path.exists():
        raise CbdcError(f"loadtest: locust wrote no statistics ({path} is missing); see "
                        f"{path.parent / 'locust.log'}")
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({
                "name": row["Name"], "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "requests_per_s": _number(row["Requests/s"]),
                "p50_ms": _number(row["50%"]), "p95_ms": _number(row["95%"]),
                "p99_ms": _number(row["99%"])})
    return rows


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None  # "N/A": no request of that name
    return value if math.isfinite(value) else None


@dataclass
class Acks:
    by_ledger: dict[str, dict[str, int]] = field(default_factory=dict)  # ledger -> id -> fen
    repeated: int = 0  # the same id acknowledged twice
    first: float | None = None  # unix time of the first and the last acknowledgement
    last: float | None = None

    @property
    def span(self) -> float:
        return self.last - self.first if self.first is not None and self.last is not None \
            else 0.0

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.by_ledger.values())


def read_acks(run_dir: Path) -> Acks:
    acks = Acks()
    for path in sorted(run_dir.glob("acks-*.txt")):
        for line in path.read_text().splitlines():
            ledger, transfer_id, amount, at = line.split()
            moment = float(at)
            acks.first = moment if acks.first is None else min(acks.first, moment)
            acks.last = moment if acks.last is None else max(acks.last, moment)
            ids = acks.by_ledger.setdefault(ledger, {})
            if transfer_id in ids:
                acks.repeated += 1
            ids[transfer_id] = int(amount)
    return acks


async def check_acks(acks: Acks, databases: dict[str, str]) -> dict[str, Any]:
    """Every acknowledged transfer in its ledger with its amount: how many are missing
    or differ, and a few examples."""
    missing = differ = 0
    examples: list[str] = []
    for ledger, ids in acks.by_ledger.items():
        url = databases.get(ledger)
        if url is None:
            missing += len(ids)
            examples.append(f"no database known for ledger {ledger}")
            continue
        conn = await asyncpg.connect(url)
        try:
            items = list(ids.items())
            for start in range(0, len(items), ID_CHUNK):
                chunk = items[start:start + ID_CHUNK]
                keys = [id_from_text(i).to_bytes(16, "big") for i, _ in chunk]
                rows = await conn.fetch("SELECT id, amount FROM transfers WHERE ledger = 1 "
                                        "AND id = ANY($1::bytea[])", keys)
                found = {bytes(r["id"]): r["amount"] for r in rows}
                for (transfer_id, amount), key in zip(chunk, keys, strict=True):
                    if key not in found:
                        missing += 1
                        if len(examples) < 5:
                            examples.append(f"{ledger}: {transfer_id} is not in the ledger")
                    elif found[key] != amount:
                        differ += 1
                        if len(examples) < 5:
                            examples.append(f"{ledger}: {transfer_id} moved {found[key]} "
                                            f"fen, not the {amount} acknowledged")
        finally:
            await conn.close()
    return {"acks_missing": missing, "acks_wrong_amount": differ, "acks_repeated": acks.repeated,
            "ack_problems": examples}


_SUMMED = ("cbdc_ledger_batch_entries_sum", "cbdc_ledger_batch_entries_count",
           "cbdc_ledger_commit_seconds_sum", "cbdc_ledger_commit_seconds_count", *stage_keys())


async def scrape(session: aiohttp.ClientSession, urls: Sequence[str]) -> dict[str, float]:
    """The writers' batch and commit totals and the payer banks' interbank stage times
    over `urls`' /metrics, summed."""
    totals: dict[str, float] = {}
    for url in urls:
        try:
            samples = await read_samples(session, url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            progress(f"could not read {url}/metrics: {exc or type(exc).__name__}")
            continue
        for name in _SUMMED:
            totals[name] = totals.get(name, 0.0) + samples.get(name, 0.0)
    return totals


def server_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = delta("cbdc_ledger_batch_entries_count")
    commits = delta("cbdc_ledger_commit_seconds_count")
    return {
        "server_mean_batch": delta("cbdc_ledger_batch_entries_sum") / batches
        if batches > 0 else None,
        "server_mean_commit_ms": delta("cbdc_ledger_commit_seconds_sum") * 1000.0 / commits
        if commits > 0 else None,
        "server_commits": int(commits),
        "server_interbank_stages_mean_ms": stage_means_ms(delta),
    }


def thresholds(options: LoadTestOptions, summary: dict[str, Any]) -> list[str]:
    """The thresholds the run crossed, one sentence each."""
    crossed = []
    p99 = summary["p99_ms"]
    if options.max_p99_ms is not None and (p99 is None or p99 > options.max_p99_ms):
        crossed.append(f"p99 {number(p99, 1)} ms > {options.max_p99_ms:g} ms")
    if options.max_fail_ratio is not None and summary["fail_ratio"] > options.max_fail_ratio:
        crossed.append(f"failure ratio {summary['fail_ratio']:.4f} > "
                       f"{options.max_fail_ratio:g}")
    if options.min_tps is not None and summary["transfers_per_s"] < options.min_tps:
        crossed.append(f"settled transfers/s {summary['transfers_per_s']:,.0f} < "
                       f"{options.min_tps:,g}")
    return crossed


# ------------------------------------------------------------------------ run
async def start_embedded(session: aiohttp.ClientSession, endpoints: Any,
                         options: LoadTestOptions, services: list[Service], data_dir: Path,
                         names: dict[str, str]) -> tuple[Network, Target]:
    codes = [name for name in names if name != CENTRAL_BANK_SERVICE]
    await claim_databases(endpoints.database_url, list(names.values()), force=options.force)
    network = await start_system(session, endpoints.database_url, endpoints.redis_url,
                                 data_dir, options, services,
                                 float_target=options.wallets * WALLET_FUNDING, codes=codes)
    databases = {name: database_url_for(endpoints.database_url, db)
                 for name, db in names.items()}
    return network, Target(network.central_bank_url, network.bank_urls, databases, codes)


async def attach(session: aiohttp.ClientSession, endpoints: Any, settings: Settings,
                 options: LoadTestOptions) -> tuple[Network, Target]:
    """A running network (`--host`): its URLs, tokens and databases from the settings."""
    from central_bank.app import admin_token
    from commercial_bank.run import database_name, operator_key, register_operator, teller_token

    assert options.host is not None
    url = options.host.rstrip("/")
    if options.bank:
        bank_urls = dict(item.split("=", 1) for item in options.bank)
    else:
        host = url.rsplit(":", 1)[0]
        bank_urls = {code: f"{host}:{port}" for code, port in settings.bank_ports().items()}
    for name, service_url in [("central bank", url), *bank_urls.items()]:
        if name != "central bank" and not SCENARIOS[options.scenario].retail:
            break  # the settlement users need the central bank only
        try:
            async with session.get(service_url.rstrip("/") + "/health",
                                   timeout=aiohttp.ClientTimeout(total=10)) as response:
                healthy = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            healthy = False
        if not healthy:
            raise CbdcError(f"loadtest: the {name} at {service_url} does not answer "
                            "GET /health")
    token = admin_token(settings)
    tellers = {}
    if SCENARIOS[options.scenario].retail:
        for code in bank_urls:  # as `cbdc up` does; nothing happens if already registered
            await register_operator(url, token, code, operator_key(settings, code),
                                    reserves=10**9)
            tellers[code] = teller_token(settings, code)
    central = settings.service_database(CENTRAL_BANK_SERVICE)
    wanted = {code: database_name(settings, code) for code in bank_urls}
    existing = await existing_databases(endpoints.database_url, [central, *wanted.values()])
    if central not in existing:
        raise CbdcError(f"loadtest: there is no database {central} on the configured "
                        "PostgreSQL, so the run could not be reconciled; set "
                        "CBDC_DATABASE_URL (and CBDC_DATABASE_PREFIX) to the network's")
    # The banks' books are reconciled too when they are on this server.
    databases = {name: database_url_for(endpoints.database_url, db)
                 for name, db in [(CENTRAL_BANK_SERVICE, central), *wanted.items()]
                 if db in existing}
    if not SCENARIOS[options.scenario].retail:
        bank_urls = {}
    banks = [code for code in wanted if code in databases]
    return (Network(url, token, bank_urls, tellers),
            Target(url, bank_urls, databases, banks))


def default_run_dir(scenario: str) -> Path:
    return Path("loadtest-runs") / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{scenario}"


async def run(endpoints: Any, settings: Settings | None, options: LoadTestOptions
              ) -> dict[str, Any]:
    """One load run; the summary (JSON-ready)."""
    from loadtest.reconcile import reconcile

    options.validate()
    scenario = SCENARIOS[options.scenario]
    run_dir = (options.run_dir or default_run_dir(options.scenario)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob("acks-*.txt"):  # a folder reused: only this run's acks count
        stale.unlink()
    data_dir = Path(tempfile.mkdtemp(prefix="cbdc-loadtest-"))
    services: list[Service] = []
    names: dict[str, str] = {}
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            if options.host is None:
                names = database_names(options.database_prefix,
                                       CODES if scenario.retail else ())
                network, target = await start_embedded(session, endpoints, options,
                                                       services, data_dir, names)
            else:
                network, target = await attach(session, endpoints,
                                               settings or Settings(), options)
            if scenario.retail:
                seeded = await seed_retail(session, network.bank_urls, network.tellers,
                                           options)
            else:
                seeded = await seed_operators(session, network.central_bank_url,
                                              network.admin_token, options)
            seed_file = write_seed(run_dir, target, seeded)
            metric_urls = [target.central_bank_url, *target.bank_urls.values()]
            before = await scrape(session, metric_urls)
            host = next(iter(target.bank_urls.values())) if scenario.retail \
                else target.central_bank_url
            locust_code = await run_locust(options, seed_file, run_dir, host)
            after = await scrape(session, metric_urls)
        if services:
            progress("stopping the servers; reconciling")
            await stop_all(services)
        stats = read_stats(run_dir / "locust_stats.csv")
        acks = read_acks(run_dir)
        ack_check = await check_acks(acks, target.databases)
        recon = await reconcile(target.databases[CENTRAL_BANK_SERVICE],
                                {code: target.databases[code]
                                 for code in target.reconciled_banks})
    finally:
        if options.host is None:
            await uninterrupted(clean_up(services, endpoints.database_url, names, data_dir))
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    for line in recon.lines:
        if line.startswith("BREAK"):
            progress(f"reconcile: {line}")
    summary = build_summary(options, run_dir, stats, acks, ack_check, recon.to_json(),
                            server_figures(before, after), locust_code)
    summary["wall_time_s"] = time.monotonic() - started
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_summary(options: LoadTestOptions, run_dir: Path, stats: list[dict[str, Any]],
                  acks: Acks, ack_check: dict[str, Any], recon: dict[str, Any],
                  servers: dict[str, Any], locust_code: int) -> dict[str, Any]:
    total = next((row for row in stats if row["name"] == "Aggregated"), None)
    if total is None:
        raise CbdcError(f"loadtest: no Aggregated row in {run_dir / 'locust_stats.csv'}")
    requests, rps = total["requests"], total["requests_per_s"] or 0.0
    # Locust's own clock: requests / (requests/s) is how long it measured. Requests that
    # end while the run stops are acknowledged but may miss Locust's counts: settled
    # transfers/s divides by the longer of that and the acknowledgements' own span.
    elapsed = max(requests / rps if rps > 0 else 0.0, acks.span)
    acked = acks.count
    books_ok = (recon["reconciled"] and ack_check["acks_missing"] == 0
                and ack_check["acks_wrong_amount"] == 0)
    summary: dict[str, Any] = {
        "scenario": options.scenario,
        "requests": requests,
        "failures": total["failures"],
        "fail_ratio": total["failures"] / requests if requests else 0.0,
        "requests_per_s": rps,
        "transfers_per_s": acked / elapsed if elapsed > 0 else 0.0,
        "acknowledged": acked,
        "p50_ms": total["p50_ms"],
        "p95_ms": total["p95_ms"],
        "p99_ms": total["p99_ms"],
        "by_name": [row for row in stats if row["name"] != "Aggregated"],
        **servers,
        "reconciled": books_ok,
        **ack_check,
        "reconcile_breaks": recon["breaks"],
        "in_flight": recon["in_flight"],
        "users": options.peak_users,
        "workers": options.worker_count,
        "duration_s": options.duration,
        "measured_s": elapsed,
        "shape": options.shape,
        "pace": options.pace,
        "batch_size": options.batch_size if "batch" in options.scenario else None,
        "host": options.host,
        "run_dir": str(run_dir),
        "locust_exit_code": locust_code,
        "thresholds": {"max_p99_ms": options.max_p99_ms,
                       "max_fail_ratio": options.max_fail_ratio,
                       "min_tps": options.min_tps},
    }
    summary["crossed"] = thresholds(options, summary)
    # Failed requests do not change Locust's exit code (--exit-code-on-error 0): anything
    # else that does is Locust itself failing.
    summary["passed"] = books_ok and not summary["crossed"] and locust_code == 0
    return summary


# --------------------------------------------------------------------- output
def format_summary(s: dict[str, Any]) -> str:
    workers = s["workers"]
    lines = [f"cbdc loadtest {s['scenario']}: {s['users']} users, "
             + (f"{workers} locust workers" if workers > 1 else "1 locust process")
             + f", {s['duration_s']:g} s" + (f", {s['shape']} shape" if s["shape"] else "")
             + (f", paced at {s['pace']:g} req/s per user" if s["pace"] else ""),
             f"{'request':34}{'requests':>10}{'failures':>10}{'req/s':>10}{'p50 ms':>9}"
             f"{'p95 ms':>9}{'p99 ms':>9}"]
    rows = [*s["by_name"], {"name": "all", "requests": s["requests"],
                            "failures": s["failures"], "requests_per_s": s["requests_per_s"],
                            "p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"],
                            "p99_ms": s["p99_ms"]}]
    for row in rows:
        lines.append(f"{row['name'][:33]:34}{row['requests']:>10,}{row['failures']:>10,}"
                     f"{number(row['requests_per_s']):>10}{number(row['p50_ms']):>9}"
                     f"{number(row['p95_ms']):>9}{number(row['p99_ms']):>9}")
    lines += [
        f"settled transfers/s: {number(s['transfers_per_s'])} ({s['acknowledged']:,} "
        f"acknowledged in {number(s['measured_s'], 1)} s)",
        f"server writers during the run (/metrics): mean batch "
        f"{number(s['server_mean_batch'])} transfers, mean commit "
        f"{number(s['server_mean_commit_ms'], 2)} ms, {s['server_commits']:,} commits",
    ]
    stages = s.get("server_interbank_stages_mean_ms")
    if stages:
        lines.append("payments to the other bank, mean ms per stage at the payer bank: "
                     + ", ".join(f"{stage.replace('_', ' ')} {ms:.2f}"
                                 for stage, ms in stages.items()))
    if s["reconciled"]:
        lines.append(f"reconciled: yes (all {s['acknowledged']:,} acknowledged transfers are "
                     "in their ledger exactly once; supply, positions and chains check)")
    else:
        lines.append(f"reconciled: NO ({s['acks_missing']:,} acknowledged transfers missing, "
                     f"{s['acks_wrong_amount']:,} with another amount, "
                     f"{len(s['reconcile_breaks'])} reconcile breaks)")
        lines += [f"  {text}" for text in [*s["ack_problems"], *s["reconcile_breaks"]][:8]]
    if s["locust_exit_code"] != 0:
        lines.append(f"locust exited with {s['locust_exit_code']}: see "
                     f"{s['run_dir']}/locust.log")
    if s["crossed"]:
        lines.append("thresholds crossed: " + "; ".join(s["crossed"]))
    elif any(v is not None for v in s["thresholds"].values()):
        lines.append("thresholds: all met")
    lines.append(f"reports: {s['run_dir']} (report.html, locust_stats.csv, summary.json)")
    return "\n".join(lines)


async def main(args: Any, endpoints: Any, settings: Any) -> int:
    """`cbdc loadtest`: run, print the table (or one JSON object); 0 when every
    threshold held and the books reconcile."""
    options = LoadTestOptions.from_args(args, settings)
    summary = await run(endpoints, settings, options)
    print(json.dumps(summary) if options.json else format_summary(summary), flush=True)
    return 0 if summary["passed"] else 1
