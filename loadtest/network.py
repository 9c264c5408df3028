"""The network a load run or benchmark drives: each tier a process of its own.

`start_system` starts the central bank (`python -m cbdc.cli central-bank ...`) and, when
asked, commercial banks (`... commercial-bank --code ... --central-bank URL --peer
CODE=URL`) on unused loopback ports, sharing a temporary `CBDC_DATA_DIR` (so the operator
keys, the admin token and the teller tokens match) and a database prefix of their own
(`CBDC_DATABASE_PREFIX`), registering each bank with the central bank (operator key,
reserves) before it starts. `claim_databases` refuses to reuse databases a killed run
left unless forced; `clean_up` stops the servers (banks first), drops the databases and
removes the data folder. The servers also get SIGTERM if the process that started them
dies (Linux).

Used by `cbdc bench retail` (`loadtest.retail_bench`) and `cbdc loadtest`
(`loadtest.runner`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import asyncpg

from cbdc.errors import CbdcError
from cbdc.processes import (
    Service,
    die_with_parent,
    stop_process,
    unused_port,
    wait_healthy,
)
from cbdc.settings import Settings
from cbdc.storage import redact
from central_bank.bench import drop_database, progress
from commercial_bank.run import database_name, operator_key, register_operator, teller_token

T = TypeVar("T")
CODES = ("BANKA", "BANKB")  # the commercial banks a retail run starts
CENTRAL_BANK_SERVICE = "central_bank"
SERVER_STOP_S = 20.0


class ServerOptions(Protocol):
    """The servers' settings a run hands to the processes it starts."""

    @property
    def database_prefix(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def max_events(self) -> int: ...
    @property
    def max_wait_ms(self) -> float: ...
    @property
    def limit_preset(self) -> str: ...
    @property
    def operator_rate(self) -> float: ...


# ------------------------------------------------------------------ processes
async def start_service(name: str, url: str, argv: Sequence[str], env: dict[str, str],
                        log_path: Path) -> Service:
    """`python -m cbdc.cli <argv>` in a session of its own, its output in `log_path`."""
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cbdc.cli", *argv, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            preexec_fn=die_with_parent if sys.platform == "linux" else None)
    return Service(name, url, proc, log_path)


async def stop_service(service: Service, grace: float = SERVER_STOP_S) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; never raises."""
    await stop_process(service.proc, grace, service.name)


async def stop_all(services: Sequence[Service]) -> None:
    """The banks first (they call the central bank while stopping), then the central
    bank."""
    await asyncio.gather(*(stop_service(s) for s in services
                           if s.name != CENTRAL_BANK_SERVICE))
    for service in services:
        if service.name == CENTRAL_BANK_SERVICE:
            await stop_service(service)


async def uninterrupted(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to the end even if this task is cancelled meanwhile (Ctrl-C, again
    and again); then let the cancellation go on."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


async def clean_up(services: Sequence[Service], database_url: str, names: dict[str, str],
                   data_dir: Path) -> dict[str, bool]:
    """Stop the servers, drop the databases, remove the data folder; database name ->
    dropped."""
    await stop_all(services)
    dropped = {name: await drop_database(database_url, name) for name in names.values()}
    progress("databases dropped: " + ", ".join(
        f"{name} {'yes' if ok else 'NO'}" for name, ok in dropped.items()))
    shutil.rmtree(data_dir, ignore_errors=True)
    return dropped


# ------------------------------------------------------------------ databases
def database_names(prefix: str, codes: Sequence[str] = CODES) -> dict[str, str]:
    """The databases the services create: service name -> database name."""
    settings = Settings(database_prefix=prefix)
    names = {CENTRAL_BANK_SERVICE: settings.service_database(CENTRAL_BANK_SERVICE)}
    names.update({code: database_name(settings, code) for code in codes})
    return names


async def existing_databases(server_dsn: str, names: Iterable[str]) -> list[str]:
    conn = await asyncpg.connect(server_dsn)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname = ANY($1)",
                                list(names))
    finally:
        await conn.close()
    return sorted(r["datname"] for r in rows)


async def claim_databases(server_dsn: str, names: Sequence[str], *, force: bool) -> None:
    """Make sure none of `names` exists: refuse if one does (unless `force`: drop it)."""
    existing = await existing_databases(server_dsn, names)
    if not existing:
        return
    if not force:
        raise CbdcError(
            f"database{'s' if len(existing) > 1 else ''} "
            f"{', '.join(existing)} already exist{'' if len(existing) > 1 else 's'} on "
            f"{redact(server_dsn)}, probably left by a run that was killed; run again with "
            "--force to drop and recreate them, or choose another --database-prefix")
    for name in existing:
        progress(f"--force: dropping database {name} left by an earlier run")
        if not await drop_database(server_dsn, name):
            raise CbdcError(f"could not drop database {name}")


# ---------------------------------------------------------------------- run
@dataclass(frozen=True)
class Network:
    """A started system: where each service answers and the secrets to drive it."""

    central_bank_url: str
    admin_token: str
    bank_urls: dict[str, str]  # code -> wallet API
    tellers: dict[str, str]  # code -> teller token


def child_env(database_url: str, redis_url: str, data_dir: Path, token: str, cb_port: int,
              ports: dict[str, int], float_target: int, options: ServerOptions
              ) -> dict[str, str]:
    """The servers' settings as `CBDC_*` variables (not arguments: the DSN may hold a
    password and the admin token is a secret; neither belongs in `ps`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env.update({
        "CBDC_DATABASE_URL": database_url,
        "CBDC_REDIS_URL": redis_url,
        "CBDC_DATA_DIR": str(data_dir),
        "CBDC_DATABASE_PREFIX": options.database_prefix,
        "CBDC_ADMIN_TOKEN": token,
        "CBDC_CENTRAL_BANK_HOST": "127.0.0.1",
        "CBDC_CENTRAL_BANK_PORT": str(cb_port),
        "CBDC_TIMEZONE": options.timezone,
        "CBDC_BATCH_MAX_EVENTS": str(options.max_events),
        "CBDC_BATCH_MAX_WAIT_MS": str(options.max_wait_ms),
        "CBDC_LIMIT_PRESET": options.limit_preset,
        "CBDC_OPERATOR_RATE": str(options.operator_rate),
        "CBDC_FLOAT_TARGET": str(float_target),
    })
    if ports:  # else the central bank alone: the setting's default is never used
        env["CBDC_BANKS"] = ",".join(f"{code}:{port}" for code, port in ports.items())
    return env


async def start_system(session: aiohttp.ClientSession, database_url: str, redis_url: str,
                       data_dir: Path, options: ServerOptions, services: list[Service], *,
                       float_target: int, codes: Sequence[str] = CODES) -> Network:
    """Start the central bank, register the banks `codes` (none: the central bank
    alone), start them; append each started process to `services` at once (so a failure
    still stops it). Each bank keeps `float_target` fen of e-CNY in hand."""
    token = secrets.token_urlsafe(32)
    settings = Settings(data_dir=data_dir, admin_token=token,
                        database_prefix=options.database_prefix)
    cb_port = unused_port()
    ports = {code: unused_port() for code in codes}
    urls = {code: f"http://127.0.0.1:{port}" for code, port in ports.items()}
    env = child_env(database_url, redis_url, data_dir, token, cb_port, ports, float_target,
                    options)
    cb_url = f"http://127.0.0.1:{cb_port}"
    central = await start_service(CENTRAL_BANK_SERVICE, cb_url,
                                  ["central-bank", "--host", "127.0.0.1", "--port",
                                   str(cb_port)], env, data_dir / "central-bank.log")
    services.append(central)
    await wait_healthy(session, central)
    progress(f"central bank (pid {central.pid}) answering at {cb_url}")
    tellers = {}
    for code in codes:
        # Reserves for one issuance of the float (plus what is asked for on top) with
        # room to spare.
        await register_operator(cb_url, token, code, operator_key(settings, code),
                                reserves=4 * float_target + 10**9)
        tellers[code] = teller_token(settings, code)
    for code in codes:
        peers = [arg for other in codes if other != code
                 for arg in ("--peer", f"{other}={urls[other]}")]
        services.append(await start_service(
            code, urls[code], ["commercial-bank", "--code", code, "--port", str(ports[code]),
                               "--central-bank", cb_url, *peers],
            env, data_dir / f"bank-{code.lower()}.log"))
    await asyncio.gather(*(wait_healthy(session, s) for s in services[1:]))
    if codes:
        progress("banks answering: " + ", ".join(f"{s.name} (pid {s.pid}) at {s.url}"
                                                 for s in services[1:]))
    return Network(cb_url, token, urls, tellers)

