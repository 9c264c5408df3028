"""What tests of whole runs (benchmarks, load tests) check after one: no process left
behind, no database left behind."""

from __future__ import annotations

import asyncpg
import psutil


def running_children(word: str = "cbdc.cli") -> list[psutil.Process]:
    """Processes this test process started, whose command line holds `word`, that still
    run."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if word in " ".join(child.cmdline()) and child.is_running() \
                    and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


async def databases_like(server_dsn: str, prefix: str) -> list[str]:
    """The databases on the server whose names start with `prefix`."""
    conn = await asyncpg.connect(server_dsn)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                                prefix.replace("_", r"\_") + "%")
    finally:
        await conn.close()
    return [r["datname"] for r in rows]
