"""The `cbdc` command line.

    cbdc up [--no-demo] [--serve]      start storage, migrate, show the seeded demo
    cbdc migrate                       apply pending schema migrations
    cbdc audit verify [--ledger N | --file PATH] [--public-key PEM]
    cbdc audit export --ledger N --out PATH
    cbdc bench ledger [--duration S] [--accounts N] ... [--json]
    cbdc loadtest SCENARIO [--host URL] [-u N] [-t S] [--workers N] ... [--json]

Exit codes: 0 success, 1 a reported error (`cbdc: error: <message>`, one line),
2 bad usage, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Handlers import the
settlement engine lazily, so `cbdc --help` starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from cbdc import loops
from cbdc.errors import CbdcError, StorageError
from cbdc.migrations import migration_sources
from cbdc.settings import Settings, load_settings
from cbdc.stopping import until_stopped
from cbdc.storage import Endpoints, database_url_for, redact, running_storage

PROG = "cbdc"
# `cbdc loadtest` scenarios (loadtest.runner.SCENARIOS; named here so --help starts fast).
LOADTEST_SCENARIOS = ("settlement", "settlement-batch", "settlement-mix", "retail")


class UsageError(Exception):
    """The command line itself is wrong (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and does not exit by itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------ entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the `cbdc` command line; return the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _fail(str(exc))
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        code: int = args.handler(args)
        return code
    except CbdcError as exc:
        _fail(str(exc))
        return 1
    except OSError as exc:  # a path the user gave cannot be read or written
        _fail(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc))
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="A digital-yuan-style CBDC prototype.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="start storage and the central bank, run the demos, serve until Ctrl-C")
    up.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True,
                    help="run the seeded demos (default: yes)")
    up.add_argument("--serve", action=argparse.BooleanOptionalAction, default=True,
                    help="keep the system running until Ctrl-C (default: yes)")
    up.set_defaults(handler=_up)

    central = commands.add_parser("central-bank", help="run the central bank service")
    central.add_argument("--host", help="address to listen on (CBDC_CENTRAL_BANK_HOST)")
    central.add_argument("--port", type=_positive_int, help="port (CBDC_CENTRAL_BANK_PORT)")
    central.set_defaults(handler=_central_bank)

    retail = commands.add_parser("commercial-bank",
                                 help="run one commercial bank (an operator's wallet service)")
    retail.add_argument("--code", required=True, help="the bank's operator code, e.g. BANKA")
    retail.add_argument("--port", type=_positive_int, required=True)
    retail.add_argument("--central-bank", metavar="URL",
                        help="the central bank (default: CBDC_CENTRAL_BANK_HOST/_PORT)")
    retail.add_argument("--peer", action="append", default=[], metavar="CODE=URL",
                        help="another bank's wallet API, for payments to it (repeatable)")
    retail.set_defaults(handler=_commercial_bank)

    migrate = commands.add_parser("migrate", help="apply pending schema migrations")
    migrate.set_defaults(handler=_migrate)

    audit = commands.add_parser("audit", help="verify or export a ledger's signed journal")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True,
                                          metavar="COMMAND")
    verify = audit_commands.add_parser("verify", help="verify a ledger's hash chain")
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--ledger", type=_positive_int, metavar="N",
                        help="ledger in the database (default 1)")
    source.add_argument("--file", metavar="PATH",
                        help="verify an export file offline (starts no storage)")
    verify.add_argument("--public-key", metavar="PEM_PATH",
                        help="verify against this key instead of the recorded one")
    verify.add_argument("--db", metavar="NAME",
                        help="database on the server holding the ledger, e.g. "
                        "cbdc_central_bank (default: the configured one)")
    verify.set_defaults(handler=_audit_verify)
    export = audit_commands.add_parser("export", help="write a ledger's chain as JSON lines")
    export.add_argument("--ledger", type=_positive_int, metavar="N", required=True)
    export.add_argument("--out", metavar="PATH", required=True)
    export.add_argument("--db", metavar="NAME",
                        help="database on the server holding the ledger (e.g. "
                        "cbdc_central_bank)")
    export.set_defaults(handler=_audit_export)

    wallet = commands.add_parser("wallet", help="open the terminal wallet")
    wallet.add_argument("--bank", metavar="URL",
                        help="the bank's wallet API (default: the first bank `cbdc up` runs)")
    wallet.add_argument("--profile", help="the wallet profile to open")
    wallet.add_argument("--keystore", metavar="DIR",
                        help="folder of encrypted profiles (default ~/.cbdc-wallet; `cbdc up` "
                             "keeps its demo wallet in .cbdc/wallet)")
    wallet.set_defaults(handler=_wallet)

    reconcile = commands.add_parser(
        "reconcile", help="check every bank against the central bank; exit 1 on a break")
    reconcile.add_argument("--grace", type=_positive_float, default=30.0, metavar="S",
                           help="transfers younger than this count as in flight (default 30)")
    reconcile.add_argument("--json", action="store_true", help="print the report as JSON")
    reconcile.set_defaults(handler=_reconcile)

    _add_loadtest(commands)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True,
                                          metavar="COMMAND")
    ledger = bench_commands.add_parser("ledger", help="measure the settlement hot path")
    # Unset options are None: settlement.bench keeps its own defaults for them.
    ledger.add_argument("--duration", type=_positive_float, metavar="S",
                        help="seconds of closed-loop load (default 10)")
    ledger.add_argument("--accounts", type=_positive_int, metavar="N",
                        help="accounts to create (default 100000)")
    ledger.add_argument("--hot-share", type=_fraction, metavar="F",
                        help="share of transfers touching a hot account, 0..1 (default 0)")
    ledger.add_argument("--hot-accounts", type=_positive_int, metavar="K",
                        help="number of hot accounts (default 10)")
    ledger.add_argument("--submitters", type=_positive_int, metavar="N",
                        help="concurrent submitting tasks (default 64)")
    ledger.add_argument("--batch", type=_positive_int, metavar="N",
                        help="transfers per create_transfers call (default 512)")
    ledger.add_argument("--naive-connections", type=_non_negative_int, metavar="N",
                        help="connections of the one-transfer-per-transaction baseline; "
                        "0 skips it (default 16)")
    ledger.add_argument("--latency-rates", type=_rates, metavar="R[,R...]",
                        help="also run paced phases at these offered transfers/s (small "
                        "batches, open loop) and report p50/p99 at each")
    ledger.add_argument("--paced-batch", dest="half_load_batch", type=_positive_int,
                        metavar="N", help="transfers per call in the paced phases (half "
                        "load and --latency-rates; default 64; 1: one call per transfer, "
                        "as a service sends them)")
    ledger.add_argument("--json", action="store_true", help="print the report as JSON")
    ledger.set_defaults(handler=_bench_ledger)
    central_bench = bench_commands.add_parser(
        "central-bank", help="measure the central bank over HTTP (batch and single transfers)")
    central_bench.add_argument("--duration", type=_positive_float, metavar="S",
                               help="seconds per phase (default 10)")
    central_bench.add_argument("--banks", type=_positive_int, metavar="N",
                               help="operator banks (default 4)")
    central_bench.add_argument("--batch-size", type=_positive_int, metavar="N",
                               help="transfers per batch request, at most 8000 (default 8000)")
    central_bench.add_argument("--clients", type=_positive_int, metavar="N",
                               help="concurrent clients of the batch phase (default 4)")
    central_bench.add_argument("--single-clients", type=_positive_int, metavar="N",
                               help="concurrent tasks of the single-transfer phase "
                                    "(default 40)")
    central_bench.add_argument("--single-processes", type=_positive_int, metavar="N",
                               help="load-generator processes the single-transfer tasks are "
                                    "spread over (default 1)")
    central_bench.add_argument("--no-baseline", dest="baseline", action="store_false",
                               default=None, help="skip the hand-written baseline "
                                                  "(central_bank.baseline)")
    central_bench.add_argument("--json", action="store_true", help="print the report as JSON")
    central_bench.set_defaults(handler=_bench_central_bank)
    retail_bench = bench_commands.add_parser(
        "retail", help="measure signed wallet payments, same bank and across banks")
    retail_bench.add_argument("--duration", type=_positive_float, metavar="S",
                              help="seconds per phase (default 10)")
    retail_bench.add_argument("--wallets", type=_positive_int, metavar="N",
                              help="wallets per bank (default 200)")
    retail_bench.add_argument("--clients", type=_positive_int, metavar="N",
                              help="concurrent same-bank clients (default 32)")
    retail_bench.add_argument("--cross-rate", type=_positive_float, metavar="R",
                              help="paced cross-bank payments per second (default 500)")
    retail_bench.add_argument("--force", action="store_true",
                              help="replace the benchmark's own databases if they exist")
    retail_bench.add_argument("--no-baseline", dest="baseline", action="store_false",
                              default=None, help="skip the hand-written baseline's same-bank "
                                                 "phase (commercial_bank.baseline)")
    retail_bench.add_argument("--json", action="store_true", help="print the report as JSON")
    retail_bench.set_defaults(handler=_bench_retail)
    return parser


def _add_loadtest(commands: Any) -> None:
    loadtest = commands.add_parser(
        "loadtest", help="run a Locust scenario against the network, then reconcile")
    loadtest.add_argument("scenario", choices=LOADTEST_SCENARIOS, metavar="SCENARIO",
                          help="settlement (single transfers), settlement-batch, "
                          "settlement-mix or retail (wallet payments)")
    loadtest.add_argument("--host", metavar="URL", help="the central bank of a running "
                          "network (default: start one, embedded)")
    loadtest.add_argument("--bank", action="append", metavar="CODE=URL",
                          help="with --host: a bank's wallet API (repeatable; default "
                          "CBDC_BANKS on the central bank's host)")
    loadtest.add_argument("-u", "--users", type=_positive_int, metavar="N",
                          help="(peak) Locust users (default: 40 settlement, 4 "
                          "settlement-batch, 32 settlement-mix and retail)")
    loadtest.add_argument("-r", "--spawn-rate", type=_positive_float, metavar="R",
                          help="users started per second (default: all in one second)")
    loadtest.add_argument("-t", "--duration", type=_positive_float, metavar="S",
                          help="seconds of load (default 30)")
    loadtest.add_argument("--workers", type=_positive_int, metavar="N",
                          help="Locust worker processes under a master on loopback; 1: "
                          "one process (default: one per core)")
    loadtest.add_argument("--external-workers", type=_positive_int, metavar="N",
                          help="start no workers: wait for N started elsewhere (e.g. on "
                          "other machines, or docker compose's locust-worker) to connect "
                          "to --master-port on every interface")
    loadtest.add_argument("--master-port", type=_positive_int, metavar="PORT",
                          help="with --external-workers: where the master listens (5557)")
    loadtest.add_argument("--shape", choices=("ramp", "step", "spike", "soak"),
                          help="load shape (default: all users for the whole run)")
    loadtest.add_argument("--pace", type=_positive_float, metavar="R",
                          help="requests/s per user, constant throughput (default: back "
                          "to back)")
    loadtest.add_argument("--batch-size", type=_positive_int, metavar="N",
                          help="transfers per batch request, at most 8000 (default 4000)")
    loadtest.add_argument("--banks", type=_positive_int, metavar="N",
                          help="operator banks of the settlement scenarios (default 4)")
    loadtest.add_argument("--hot-banks", type=_non_negative_int, metavar="K",
                          help="banks that receive --hot-share of the transfers (default 2)")
    loadtest.add_argument("--hot-share", type=_fraction, metavar="F",
                          help="share of transfers to the hot banks (default 0.5)")
    loadtest.add_argument("--wallets", type=_positive_int, metavar="N",
                          help="retail: wallets per bank (default 50)")
    loadtest.add_argument("--cross-share", type=_fraction, metavar="F",
                          help="retail: share of payments to the other bank (default 0.5)")
    loadtest.add_argument("--run-dir", metavar="DIR", help="where the reports go (default "
                          "loadtest-runs/<UTC time>-<scenario>)")
    loadtest.add_argument("--max-p99-ms", type=_positive_float, metavar="MS",
                          help="exit 1 if the p99 latency is above this")
    loadtest.add_argument("--max-fail-ratio", type=_fraction, metavar="F",
                          help="exit 1 if failed requests / requests is above this")
    loadtest.add_argument("--min-tps", type=_positive_float, metavar="N",
                          help="exit 1 if fewer settled transfers/s than this")
    loadtest.add_argument("--database-prefix", metavar="P",
                          help="embedded network: the services' database prefix "
                          "(default cbdc_ltest_)")
    loadtest.add_argument("--force", action="store_true",
                          help="embedded network: replace its databases if a killed run "
                          "left them")
    loadtest.add_argument("--json", action="store_true",
                          help="print the summary as one JSON object")
    loadtest.set_defaults(handler=_loadtest)


# ------------------------------------------------------------------- handlers
def _up(args: argparse.Namespace) -> int:
    settings = load_settings()
    with running_storage(settings) as endpoints:
        for line in describe_storage(settings, endpoints):
            print(line)
        return asyncio.run(_up_async(args, endpoints, settings))


async def _up_async(args: argparse.Namespace, endpoints: Endpoints, settings: Settings) -> int:
    from central_bank import demo as central_bank_demo
    from central_bank import run as central_bank_run
    from settlement.demo import run_demo

    exit_code = 0
    _print_applied(await _apply_project_migrations(endpoints))
    if args.demo:
        await run_demo(endpoints, settings)
    from central_bank.app import admin_token
    from commercial_bank import demo as retail_demo
    from commercial_bank import run as bank_run

    _, runner = await central_bank_run.start_central_bank(settings, endpoints)
    runners = [runner]
    try:
        for line in central_bank_run.describe(settings):
            print(line, flush=True)
        url = f"http://{settings.central_bank_host}:{settings.central_bank_port}"
        if args.demo:
            await central_bank_demo.run_demo(url, settings)
        ports = settings.bank_ports()
        peers = {code: bank_run.bank_url(settings, port) for code, port in ports.items()}
        for code, port in ports.items():
            await bank_run.register_operator(url, admin_token(settings), code,
                                             bank_run.operator_key(settings, code),
                                             reserves=1_000_000_000)
            runners.append(await bank_run.start_bank(settings, endpoints, code, port,
                                                     central_bank_url=url, peers=peers))
            for line in bank_run.describe(settings, code, port):
                print(line, flush=True)
        if args.demo and {"BANKA", "BANKB"} <= set(ports):
            await retail_demo.run_demo(settings, ports)
        if args.serve and sys.stdin.isatty() and sys.stdout.isatty():
            await _wallet_in_foreground(settings, ports)
        elif args.serve:
            print("running; press Ctrl-C to stop", flush=True)
            exit_code = await until_stopped()
    finally:
        for running in reversed(runners):
            await running.cleanup()
    return exit_code


async def _wallet_in_foreground(settings: Settings, ports: dict[str, int]) -> None:
    """At a terminal, `cbdc up` ends in the demo wallet (alice at the first bank), the
    services still serving in this process; quitting the wallet stops them all."""
    from commercial_bank.run import bank_url
    from wallet_tui.app import WalletApp
    from wallet_tui.demo_profile import demo_wallet

    url = bank_url(settings, next(iter(ports.values())))
    demo = demo_wallet(settings.data_dir, url)
    if demo.profile is not None:
        print(f"wallet: profile {demo.profile!r} in {demo.keystore_dir}, passphrase "
              f"{demo.passphrase} (also in {settings.data_dir / 'wallet-passphrase'})",
              flush=True)
        prompt = "press Enter to open the wallet (quit it with Ctrl+Q to stop everything) "
        with contextlib.suppress(EOFError):
            await asyncio.to_thread(input, prompt)  # the services keep serving meanwhile
    await WalletApp(url, keystore_dir=demo.keystore_dir, profile=demo.profile).run_async()
    print("wallet closed; stopping the services", flush=True)


def _central_bank(args: argparse.Namespace) -> int:
    from central_bank.run import run_forever

    overrides = {k: v for k, v in (("central_bank_host", args.host),
                                   ("central_bank_port", args.port)) if v is not None}
    settings = load_settings(**overrides)
    with running_storage(settings) as endpoints:
        for line in describe_storage(settings, endpoints):
            print(line)
        return _call(run_forever, settings, endpoints)


def _wallet(args: argparse.Namespace) -> int:
    from wallet_tui.cli import main as wallet_main

    settings = load_settings()
    bank = args.bank
    if bank is None:
        port = next(iter(settings.bank_ports().values()))
        bank = f"http://{settings.central_bank_host}:{port}"
    argv = ["--bank", bank] + (["--profile", args.profile] if args.profile else []) \
        + (["--keystore", args.keystore] if args.keystore else [])
    return wallet_main(argv)


def _reconcile(args: argparse.Namespace) -> int:
    settings = load_settings()
    with running_storage(settings) as endpoints:
        return _call(_run_reconcile, settings, endpoints, args)


async def _run_reconcile(settings: Settings, endpoints: Endpoints,
                         args: argparse.Namespace) -> int:
    import json

    import asyncpg

    from commercial_bank.run import database_name
    from loadtest.reconcile import reconcile

    server = endpoints.database_url
    conn = await asyncpg.connect(server)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()
    central = settings.service_database("central_bank")
    if central not in existing:
        raise CbdcError("there is no central bank database here yet; run cbdc up first")
    banks = {code: database_url_for(server, database_name(settings, code))
             for code in settings.bank_ports() if database_name(settings, code) in existing}
    report = await reconcile(database_url_for(server, central), banks,
                             grace_seconds=args.grace)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print("\n".join(report.lines))
        print("reconciled: clean" if report.clean else
              f"reconciled: {len(report.breaks)} break(s)")
    return 0 if report.clean else 1


def _commercial_bank(args: argparse.Namespace) -> int:
    settings = load_settings()
    peers = {}
    for item in args.peer:
        code, sep, url = item.partition("=")
        if not sep or not url.startswith("http"):
            _fail(f"--peer takes CODE=URL, got {item!r}")
        peers[code] = url
    with running_storage(settings) as endpoints:
        for line in describe_storage(settings, endpoints):
            print(line)
        return _call(_run_commercial_bank, settings, endpoints, args, peers)


async def _run_commercial_bank(settings: Settings, endpoints: Endpoints,
                               args: argparse.Namespace, peers: dict[str, str]) -> int:
    from commercial_bank import run as bank_run

    url = args.central_bank or (
        f"http://{settings.central_bank_host}:{settings.central_bank_port}")
    runner = await bank_run.start_bank(settings, endpoints, args.code, args.port,
                                       central_bank_url=url, peers=peers)
    try:
        for line in bank_run.describe(settings, args.code, args.port):
            print(line, flush=True)
        print("running; press Ctrl-C to stop", flush=True)
        code = await until_stopped()
    finally:
        await runner.cleanup()
    return code


def _loadtest(args: argparse.Namespace) -> int:
    runner = importlib.import_module("loadtest.runner")
    settings = load_settings()
    with running_storage(settings) as endpoints:
        return _call(runner.main, args, endpoints, settings)


def _bench_retail(args: argparse.Namespace) -> int:
    bench = importlib.import_module("loadtest.retail_bench")
    settings = load_settings()
    with running_storage(settings) as endpoints:
        return _call(bench.main, args, endpoints, settings)


def _bench_central_bank(args: argparse.Namespace) -> int:
    bench = importlib.import_module("central_bank.bench")
    settings = load_settings()
    with running_storage(settings) as endpoints:
        return _call(bench.main, args, endpoints, settings)


def _migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    with running_storage(settings) as endpoints:
        _print_applied(asyncio.run(_apply_project_migrations(endpoints)))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from settlement.audit import verify_command

    settings = load_settings()
    if args.file:
        return _call(verify_command, args, None, settings)
    if args.ledger is None:
        args.ledger = 1
    with running_storage(settings) as endpoints:
        return _call_with_tables(verify_command, args, _on_database(endpoints, args.db),
                                 settings)


def _audit_export(args: argparse.Namespace) -> int:
    from settlement.audit import export_command

    settings = load_settings()
    with running_storage(settings) as endpoints:
        return _call_with_tables(export_command, args, _on_database(endpoints, args.db),
                                 settings)


def _on_database(endpoints: Endpoints, database: str | None) -> Endpoints:
    """The endpoints, pointed at another database of the same server when one is named."""
    if database is None:
        return endpoints
    return dataclasses.replace(endpoints,
                               database_url=database_url_for(endpoints.database_url, database))


def _bench_ledger(args: argparse.Namespace) -> int:
    # By name: settlement.bench is written separately; the CLI type-checks without it.
    bench = importlib.import_module("settlement.bench")
    settings = load_settings()
    with running_storage(settings) as endpoints:
        return _call(bench.main, args, endpoints, settings)


# -------------------------------------------------------------------- helpers
def describe_storage(settings: Settings, endpoints: Endpoints) -> list[str]:
    """Where PostgreSQL and Redis live, one line each, passwords hidden."""
    data_dir = settings.data_dir.expanduser().resolve()
    if settings.database_url is None:
        postgres = f"embedded, data in {data_dir / 'pg'} ({endpoints.database_url})"
    else:
        postgres = redact(endpoints.database_url)
    if settings.redis_url is None:
        cache = f"embedded, data in {data_dir / 'redis.db'} ({endpoints.redis_url})"
    else:
        cache = redact(endpoints.redis_url)
    return [f"PostgreSQL: {postgres}", f"Redis: {cache}"]


async def _apply_project_migrations(endpoints: Endpoints) -> list[str]:
    import asyncpg

    from cbdc.migrations import apply_migrations

    conn = await asyncpg.connect(endpoints.database_url)
    try:
        return await apply_migrations(conn, *migration_sources())
    finally:
        await conn.close()


def _print_applied(applied: list[str]) -> None:
    if not applied:
        print("migrations: nothing to apply")
    for name in applied:
        print(f"migrations: applied {name}")


def _call(handler: Callable[..., int | Awaitable[int]], *args: Any) -> int:
    """Call a subcommand's handler, sync or async, outside any running event loop."""
    result = handler(*args)
    if inspect.isawaitable(result):
        return loops.run(_awaited(result))
    return result


async def _awaited(awaitable: Awaitable[int]) -> int:
    return await awaitable


def _call_with_tables(handler: Callable[..., int | Awaitable[int]], *args: Any) -> int:
    import asyncpg

    try:
        return _call(handler, *args)
    except asyncpg.UndefinedTableError:
        raise StorageError(
            "the database has no ledger tables yet; run 'cbdc migrate' or 'cbdc up' first",
            store="postgresql",
        ) from None


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def _rates(text: str) -> tuple[float, ...]:
    """Comma-separated positive numbers, e.g. `5000,10000,20000`."""
    try:
        return tuple(_positive_float(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be positive numbers separated by commas, not {text!r}") from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
