"""Storage: embedded PostgreSQL and Redis started, reused and stopped; every PostgreSQL
checked for durability. Embedded servers here live in private temporary folders; the
shared servers are only connected to, never reconfigured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio

from cbdc.errors import StorageError
from cbdc.processes import unused_port
from cbdc.settings import Settings
from cbdc.storage import check_durability, embedded_tuning, redact, running_storage

REPO_ROOT = Path(__file__).resolve().parents[2]


def pretty(value: str) -> str:
    """A setting as SHOW prints it: PostgreSQL writes whole gigabytes as GB."""
    if value.endswith("MB") and int(value[:-2]) % 1024 == 0:
        return f"{int(value[:-2]) // 1024}GB"
    return value


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])


def redis_pid(data_dir: Path) -> int:
    import json

    registry = json.loads((data_dir / "redis.db.settings").read_text())
    return int(Path(registry["pidfile"]).read_text())


def assert_stopped(pid: int, within: float = 15.0) -> None:
    """The server process has exited (or is a zombie) within `within` seconds: a stop
    request is answered before the last backend is gone, more slowly on a busy machine."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} ({' '.join(process.cmdline())[:120]}) still runs "
                         f"{within:g} s after the stop")


async def test_embedded_storage_starts_keeps_data_and_stops(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with running_storage(settings) as endpoints:
        assert endpoints.embedded
        assert endpoints.redis_url.startswith("unix://")
        conn = await asyncpg.connect(endpoints.database_url)
        assert await conn.fetchval("SELECT current_database()") == "cbdc"
        # A folder made here runs with the ledger's settings from its first start.
        running = {name: await conn.fetchval(f"SHOW {name}") for name in embedded_tuning()}
        assert running == {name: pretty(value) for name, value in embedded_tuning().items()}
        await conn.execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('hi')")
        await conn.close()
        client = redis.asyncio.Redis.from_url(endpoints.redis_url)
        await client.set("kept", "yes")
        await client.aclose()
        pids = postmaster_pid(settings.data_dir), redis_pid(settings.data_dir)
    for pid in pids:
        assert_stopped(pid)
    assert not (settings.data_dir / "pg" / "postmaster.pid").exists()

    with running_storage(settings) as endpoints:  # the same folder, reused
        conn = await asyncpg.connect(endpoints.database_url)
        assert await conn.fetchval("SELECT note FROM kept") == "hi"
        await conn.close()
        client = redis.asyncio.Redis.from_url(endpoints.redis_url)
        assert await client.get("kept") == b"yes"
        await client.aclose()
        pids = postmaster_pid(settings.data_dir), redis_pid(settings.data_dir)
    for pid in pids:
        assert_stopped(pid)


async def test_embedded_storage_stops_when_the_block_raises(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    pids: tuple[int, int] = (0, 0)

    def fail_inside() -> None:
        nonlocal pids
        with running_storage(settings):
            pids = postmaster_pid(settings.data_dir), redis_pid(settings.data_dir)
            raise RuntimeError("the service crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        fail_inside()
    for pid in pids:
        assert_stopped(pid)


async def test_durability_check_refuses_fsync_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with running_storage(settings) as endpoints:  # a private server, ours to reconfigure
        conn = await asyncpg.connect(endpoints.database_url)
        await conn.execute("ALTER SYSTEM SET fsync = off")
        await conn.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.2)  # the reload is asynchronous
        with pytest.raises(StorageError, match="fsync=off") as caught:
            await check_durability(conn)
        assert caught.value.store == "postgresql"
        await conn.close()

    with pytest.raises(StorageError, match="fsync=off") as caught, \
            running_storage(settings):
        pytest.fail("storage started on a server with fsync off")
    assert "\n" not in str(caught.value)
    assert not (settings.data_dir / "pg" / "postmaster.pid").exists()  # stopped again


async def test_durability_check_refuses_synchronous_commit_off(pg_server_url: str) -> None:
    conn = await asyncpg.connect(pg_server_url)
    try:
        await check_durability(conn)  # the servers the tests use are durable
        await conn.execute("SET synchronous_commit = local")  # still flushes locally
        await check_durability(conn)
        await conn.execute("SET synchronous_commit = off")  # this session only
        with pytest.raises(StorageError, match="synchronous_commit=off"):
            await check_durability(conn)
    finally:
        await conn.close()


async def test_configured_servers_are_used_as_they_are(
    pg_server_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=pg_server_url, redis_url=redis_url,
                        data_dir=tmp_path / "unused")
    with running_storage(settings) as endpoints:
        assert endpoints.database_url == pg_server_url
        assert endpoints.redis_url == redis_url
        assert not endpoints.embedded
    assert not (tmp_path / "unused").exists()


async def test_an_unreachable_postgres_is_a_storage_error(
    redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url="postgresql://postgres:s3cret@127.0.0.1:1/none",
                        redis_url=redis_url)
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL") as caught, \
            running_storage(settings):
        pass
    assert caught.value.store == "postgresql"
    assert "s3cret" not in str(caught.value)


async def test_an_unreachable_redis_is_a_storage_error(pg_server_url: str) -> None:
    settings = Settings(database_url=pg_server_url, redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(StorageError, match="cannot reach Redis") as caught, \
            running_storage(settings):
        pass
    assert caught.value.store == "redis"


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://app:pw@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@contextlib.contextmanager
def ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """Children started in this block have SIGINT on, as a program in a terminal has.

    A job a shell starts in the background (a test run may be one) ignores SIGINT, its
    children inherit that, and `cbdc up` rightly keeps it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cbdc_up_serve_stops_storage_on_a_signal(
    tmp_path_factory: pytest.TempPathFactory, sig: signal.Signals, code: int
) -> None:
    data_dir = tmp_path_factory.getbasetemp() / "serve-data"  # shared: initdb once
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env["CBDC_DATA_DIR"] = str(data_dir)
    env["CBDC_CENTRAL_BANK_PORT"] = str(unused_port())  # `up` also serves the central bank
    with ctrl_c_as_in_a_terminal():
        process = subprocess.Popen(
            [sys.executable, "-m", "cbdc.cli", "up", "--no-demo", "--serve"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
    try:
        assert process.stdout is not None
        lines = []
        while not lines or "Ctrl-C" not in lines[-1]:
            line = process.stdout.readline()
            assert line, f"cbdc up ended early: {process.communicate()[1]}"
            lines.append(line)
        assert lines[0].startswith("PostgreSQL: embedded")
        pids = postmaster_pid(data_dir), redis_pid(data_dir)
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code
    assert "Traceback" not in err
    for pid in pids:
        assert_stopped(pid)


def test_an_unusable_data_folder_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create the data folder"), \
            running_storage(Settings(data_dir=blocker / "data")):
        pass
