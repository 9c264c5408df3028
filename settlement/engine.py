"""The settlement engine: a connection pool and one writer per ledger it serves.

    engine = await Engine.open(dsn, key=SigningKey.from_pem(...))
    ledger = await engine.ledger(1)
    await ledger.create_accounts([...])
    results = await ledger.create_transfers([...])
    await engine.close()
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg

from cbdc.errors import StorageError
from cbdc.signing import SigningKey
from settlement.attachments import AttachmentRows
from settlement.errors import KeyMismatch
from settlement.store import LedgerStore
from settlement.writer import Clock, LedgerWriter

MIGRATIONS = Path(__file__).parent / "migrations"

_DURABILITY = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset hook: nothing to reset, so no round trip on every release.

    asyncpg's default runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` each time a connection goes back to the pool: a round trip per request
    log group and per lookup. The pool's users leave no session state behind: no SET,
    LISTEN or advisory lock (migrations take theirs on a connection of their own), and
    cursors live inside transactions. asyncpg itself still rolls back a transaction
    left open and drops listeners before calling this hook.
    """


async def check_durability(conn: asyncpg.Connection) -> None:
    """Refuse a server that could lose an acknowledged commit."""
    for setting, wanted in _DURABILITY.items():
        value = await conn.fetchval(f"SHOW {setting}")
        if value != wanted:
            raise StorageError(
                f"PostgreSQL has {setting}={value}; the ledger needs {setting}={wanted} "
                "so that an acknowledged transfer survives a crash"
            )


class Engine:
    def __init__(self, pool: asyncpg.Pool, dsn: str, key: SigningKey, *, clock: Clock,
                 timezone: str, max_events: int, max_wait: float,
                 checkpoint_every: int) -> None:
        self.pool = pool
        self.dsn = dsn
        self.key = key
        self.clock = clock
        self.timezone = timezone
        self.max_events = max_events
        self.max_wait = max_wait
        self.checkpoint_every = checkpoint_every
        self._writers: dict[int, LedgerWriter] = {}

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        key: SigningKey,
        clock: Clock = time.time_ns,
        timezone: str = "Asia/Shanghai",
        max_events: int = 8190,
        max_wait: float = 0.0,
        pool_size: int = 8,
        checkpoint_every: int = 1_000_000,
    ) -> Engine:
        """Connect, check the server is durable, and serve ledgers on demand.

        `checkpoint_every` bounds how many committed entries a restart replays.
        """
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size,
                                         reset=keep_session)
        try:
            async with pool.acquire() as conn:
                await check_durability(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, dsn, key, clock=clock, timezone=timezone, max_events=max_events,
                   max_wait=max_wait, checkpoint_every=checkpoint_every)

    async def ledger(self, ledger: int, *,
                     attachments: AttachmentRows | None = None) -> LedgerWriter:
        """The writer of `ledger`, started (and its chain registered) on first use;
        `attachments` writes what callers attach to their transfers (see LedgerWriter)."""
        writer = self._writers.get(ledger)
        if writer is not None:
            return writer
        store = LedgerStore(self.pool, ledger, self.dsn)
        recorded = await store.register(self.key.public.to_der())
        if recorded != self.key.public.to_der():
            raise KeyMismatch(ledger)
        writer = LedgerWriter(ledger=ledger, store=store, key=self.key, clock=self.clock,
                              timezone=self.timezone, max_events=self.max_events,
                              max_wait=self.max_wait,
                              checkpoint_every=self.checkpoint_every,
                              attachments=attachments)
        await writer.start()
        self._writers[ledger] = writer
        return writer

    async def close(self) -> None:
        for writer in self._writers.values():
            await writer.close()
        self._writers.clear()
        await self.pool.close()
