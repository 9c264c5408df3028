"""Server processes that benchmarks and load runs start: wait until one answers, stop it.

    Service          one started process: its name, URL, process and log file
    unused_port()    a free loopback port to start a server on
    die_with_parent  a `preexec_fn`: Linux sends the child SIGTERM if its parent dies
    wait_healthy     poll `GET <url>/health` until 200; a `CbdcError` with the log's tail
                     when the process exits or does not answer in time
    stop_process     SIGTERM, then SIGKILL after a grace period; never raises
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from cbdc.errors import CbdcError

START_S = 60.0  # how long a server may take to answer /health


@dataclass
class Service:
    """One server process."""

    name: str
    url: str
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


_HANDED_OUT: set[int] = set()


def unused_port() -> int:
    """A free port on 127.0.0.1, never one this process handed out before: ports are
    chosen before the services that bind them start, and the kernel may offer a port
    again until it is bound (two services of one cluster were once given the same one,
    and the second's health check was answered by the first)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """Linux: SIGTERM this child when its parent dies (kill -9 included)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def log_tail(path: Path, lines: int = 5) -> str:
    """The last non-blank `lines` of a log, on one line."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


async def wait_healthy(session: aiohttp.ClientSession, service: Service,
                       seconds: float = START_S) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if service.proc.returncode is not None:
            break
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with session.get(service.url + "/health",
                                   timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.proc.wait(), 0.1)
    state = (f"exited with {service.proc.returncode}" if service.proc.returncode is not None
             else f"did not answer /health within {seconds:g} s")
    tail = log_tail(service.log_path)
    raise CbdcError(f"{service.name} {state}" + (f": {tail}" if tail else ""))


async def stop_process(proc: asyncio.subprocess.Process, grace: float,
                       name: str | None = None) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (saying so on stderr when `name` is
    given); never raises."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        if name is not None:
            print(f"{name} did not stop within {grace:g} s; killing it", file=sys.stderr,
                  flush=True)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
