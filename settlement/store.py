"""PostgreSQL side of a ledger: load its state, commit a batch as one transaction, lookups.

Every batch is written inside one transaction on the writer's own connection (COPY and
array statements, or a small one's single statement; a batch gathering behind a commit
streams its transfers through a COPY opened at once, `StreamedTransfers`), so a batch is
either wholly in the database or not at all.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from cbdc.merkle import merkle_proof
from cbdc.receipts import (
    ENTRY_ACCOUNT_UPDATE,
    GENESIS_HASH,
    BlockHeader,
    Receipt,
    encode_account,
    encode_expiry,
    encode_transfer,
)
from settlement.attachments import AttachedRows
from settlement.blocks import SealedBlock, leaf_hashes
from settlement.core.state import (
    EXPIRED,
    NO_ID,
    OPEN,
    POSTED,
    VOIDED,
    AccountState,
    Batch,
    LedgerState,
    TransferRow,
)
from settlement.core.types import (
    Account,
    AccountBalance,
    Transfer,
    TransferFlags,
    TransferRecord,
)
from settlement.rows import (
    COPY_HEADER,
    COPY_TRAILER,
    RECORD_FIELDS,
    SMALL_BATCH_RECORD,
    TRANSFER_COPY_COLUMNS,
    copy_rows,
    copy_tuples,
    small_batch_records,
)

_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
_PENDING = int(TransferFlags.PENDING)
_LOAD_CHUNK = 50_000
DIRECTIONS = ("both", "debits", "credits")  # an account's history: all, or one side
# Every MARK_EVERY-th transfer of a history chain is in the side's marks index (the
# partial indexes of migration 0005, whose predicate names the same number).
MARK_EVERY = 64
_CHECKPOINT_CHUNK = 2_000
CHECKPOINT_PAUSE = 1.0  # pause after a staged chunk, as a share of the time it took


def b16(value: int) -> bytes:
    return value.to_bytes(16, "big")


def i16(raw: bytes | None) -> int:
    return int.from_bytes(raw, "big") if raw else 0


@dataclass(frozen=True, slots=True)
class ChainTip:
    height: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class StoredBlock:
    header: BlockHeader
    hash: bytes
    signature: bytes
    entries: list[bytes]


_ACCOUNT_COPY_COLUMNS = (
    "ledger", "id", "code", "flags", "user_data", "balance_cap", "debit_limit_single",
    "debit_limit_daily", "debit_limit_yearly", "timestamp", "block_height",
)

# A checkpoint's balances are staged in a temporary table (not WAL-logged, no locks on
# `accounts`) a chunk at a time, then applied in one statement: the accounts' rows are
# locked for that statement only, not while every chunk is made and sent. A commit that
# changes an account's definition (a freeze, new limits) updates its row, and it used to
# wait on such a lock for the whole checkpoint, seconds with 100,000 accounts.
_STAGE_BALANCES = """
CREATE TEMPORARY TABLE checkpoint_balances (
    id bytea, dp bigint, dpend bigint, cp bigint, cpend bigint,
    day int, day_used bigint, year int, year_used bigint
) ON COMMIT DROP
"""
_STAGED_COLUMNS = ("id", "dp", "dpend", "cp", "cpend", "day", "day_used", "year",
                   "year_used")
_UPDATE_BALANCES = """
UPDATE accounts AS a SET
    debits_posted = u.dp, debits_pending = u.dpend,
    credits_posted = u.cp, credits_pending = u.cpend,
    usage_day = u.day, debits_today = u.day_used,
    usage_year = u.year, debits_this_year = u.year_used
FROM checkpoint_balances AS u
WHERE a.ledger = $1 AND a.id = u.id
"""

_INSERT_REJECTED = """
INSERT INTO rejected_transfers (ledger, id, debit_account_id, credit_account_id, amount,
    pending_id, user_data, timeout, code, flags, timestamp, result, block_height)
SELECT $1, * , $13 FROM unnest($2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[],
    $6::bytea[], $7::bytea[], $8::bigint[], $9::int[], $10::int[], $11::bigint[], $12::int[])
"""

_INSERT_ACCOUNT_UPDATES = """
INSERT INTO account_updates (ledger, id, flags, user_data, balance_cap, debit_limit_single,
                             debit_limit_daily, debit_limit_yearly, timestamp, block_height,
                             previous_flags, previous_user_data, previous_balance_cap,
                             previous_debit_limit_single, previous_debit_limit_daily,
                             previous_debit_limit_yearly)
SELECT $1, u.id, u.flags, u.user_data, u.cap, u.single, u.daily, u.yearly, u.ts, $10,
       u.pflags, u.puser, u.pcap, u.psingle, u.pdaily, u.pyearly
FROM unnest($2::bytea[], $3::int[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[],
            $8::bigint[], $9::bigint[], $11::int[], $12::bytea[], $13::bigint[],
            $14::bigint[], $15::bigint[], $16::bigint[])
     AS u(id, flags, user_data, cap, single, daily, yearly, ts, pflags, puser, pcap,
          psingle, pdaily, pyearly)
"""

# In timestamp order an account's last change wins; a batch rarely changes one twice.
_APPLY_ACCOUNT_UPDATES = """
UPDATE accounts AS a SET flags = u.flags, user_data = u.user_data,
    balance_cap = u.balance_cap, debit_limit_single = u.single,
    debit_limit_daily = u.daily, debit_limit_yearly = u.yearly
FROM (SELECT DISTINCT ON (id) * FROM unnest($2::bytea[], $3::int[], $4::bytea[],
        $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) WITH ORDINALITY
        AS x(id, flags, user_data, balance_cap, single, daily, yearly, n)
      ORDER BY id, n DESC) AS u
WHERE a.ledger = $1 AND a.id = u.id
"""

_INSERT_EXPIRATIONS = """
INSERT INTO expirations (ledger, pending_id, timestamp, block_height)
SELECT $1, *, $4 FROM unnest($2::bytea[], $3::bigint[])
"""

# A small batch of plain transfers goes in as one statement: one round trip, and the
# statement is its own transaction (PostgreSQL runs every part of it or none).
#
# Its transfers travel as one bytea of fixed-width records
# (`settlement.rows.SMALL_BATCH_RECORD`), cut up by the server, rather than as ten
# arrays: asyncpg encodes an array element by element, with an abstract-base-class
# check apiece, which cost 11 to 16 us of the
# event loop per transfer against 3.6 for the packed record (256-transfer statements,
# `client cpu` of the same insert both ways, on a machine where a P-256 verify took
# 134 us). The server's share of the work did not grow: the packed statement's round
# trip was the shorter (3.1 to 3.6 ms against 4.7 to 5.6).


def _record_fields() -> str:
    """SQL reading each field of the record `r`, in order."""
    fields, at = [], 1
    for name, sql_type in RECORD_FIELDS:
        width = 16 if sql_type == "bytea" else 8
        raw = f"substring(r from {at} for {width})"
        if sql_type != "bytea":
            raw = f"('x' || encode({raw}, 'hex'))::bit(64)::bigint::{sql_type}"
        elif name == "pending_id":
            raw = f"nullif({raw}, '\\x{NO_ID.hex()}'::bytea)"
        fields.append(raw)
        at += width
    return ",\n           ".join(fields)


_INSERT_SMALL_BATCH = f"""
WITH moved AS (
    INSERT INTO transfers (ledger, id, debit_account_id, credit_account_id, amount,
                           pending_id, user_data, timeout, code, flags, timestamp,
                           debit_prev, debit_seq, credit_prev, credit_seq, block_height)
    SELECT $1, {_record_fields()}, $2
    FROM generate_series(0, length($10::bytea) / {SMALL_BATCH_RECORD.size} - 1) AS g(i),
         substring($10::bytea from g.i * {SMALL_BATCH_RECORD.size} + 1
                   for {SMALL_BATCH_RECORD.size}) AS r
), noted AS (
    INSERT INTO transfer_notes (ledger, id, note, block_height)
    SELECT $1, n.id, n.note, $2 FROM unnest($11::bytea[], $12::bytea[]) AS n(id, note)
)
INSERT INTO blocks (ledger, height, previous_hash, merkle_root, time_ns, entry_count, version,
                    hash, signature)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
SMALL_BATCH = 256
_SMALL_BATCH_PARAMETERS = 12  # attached statements' parameters follow these


def _goes_as_one_statement(batch: Batch) -> bool:
    """A small batch of plain transfers: `_INSERT_SMALL_BATCH` writes it all."""
    return (len(batch.transfers) <= SMALL_BATCH and not batch.accounts
            and not batch.failures and not batch.expirations and not batch.account_updates)


@functools.lru_cache(maxsize=16)
def _small_batch_with(ctes: str) -> str:
    """The small batch's statement with attached statements as more CTEs."""
    return _INSERT_SMALL_BATCH.replace("\n), noted AS (", f"\n), {ctes}, noted AS (", 1)

_INSERT_BLOCK = """
INSERT INTO blocks (ledger, height, previous_hash, merkle_root, time_ns, entry_count, version,
                    hash, signature)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

_TRANSFER_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount, pending_id, user_data, timeout, "
    "code, flags, timestamp, block_height"
)


def _chain_walk(side: str, first: int) -> str:
    """SQL for the transfers on one side ("debit" or "credit") of account $2 after
    timestamp $3: from the mark `$first` places past the first one after the cursor
    (or, with no such mark, from the chain's durable head, `$first + 1`), back along
    the chain to the cursor. Parameters: $1 ledger, $2 account, $3 cursor."""
    columns = ", ".join(f"t.{c}" for c in _TRANSFER_COLUMNS.split(", "))
    return f"""
    {side}_walk AS (
        SELECT {columns}, t.{side}_prev AS prev FROM transfers t
         WHERE t.ledger = $1 AND t.timestamp = coalesce(
            (SELECT m.timestamp FROM transfers m
              WHERE m.ledger = $1 AND m.{side}_account_id = $2
                AND m.{side}_seq % {MARK_EVERY} = 0 AND m.timestamp > $3
              ORDER BY m.timestamp OFFSET ${first} LIMIT 1), ${first + 1})
        UNION ALL
        SELECT {columns}, t.{side}_prev FROM {side}_walk w
          JOIN transfers t ON t.ledger = $1 AND t.timestamp = w.prev
         WHERE w.prev > $3
    )"""


@functools.lru_cache(maxsize=4)
def _history_query(sides: tuple[str, ...]) -> str:
    """An account's transfers after a cursor, oldest first, at most $4: the walks of
    `sides` (each with its mark offset and head as parameters from $5), merged."""
    walks = ",".join(_chain_walk(side, 5 + 2 * n) for n, side in enumerate(sides))
    union = " UNION ALL ".join(f"SELECT * FROM {side}_walk" for side in sides)
    return (f"WITH RECURSIVE {walks}\nSELECT {_TRANSFER_COLUMNS} FROM ({union}) AS page "
            "ORDER BY timestamp LIMIT $4")


class StreamedTransfers:
    """The transaction of a batch still being decided, on a writer connection of its
    own, with a binary COPY into `transfers` open in it: the writer sends each request's
    accepted transfers (`send`) as it decides them, while the batch before commits, so
    the server stores them meanwhile. Once the batch is sealed, `LedgerStore.
    commit_streamed` ends the COPY (`finish`), writes the rest and commits: the rows
    cost the batch's own commit nothing but the last request's.

    The transaction opens (BEGIN, then the COPY) in a task of its own, so the writer
    never waits for it; `finish` and `rollback` wait for it first. A stream that fails
    fails the batch's commit, as a failed statement would.
    """

    def __init__(self, store: LedgerStore, slot: int, height: int) -> None:
        self.slot = slot
        self.height = height
        self.sent = 0  # transfers of the batch sent so far
        self._store = store
        self._parts: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._transaction: Any = None
        self._copy = asyncio.create_task(self._run(), name=f"block-{height}-stream")

    @property
    def conn(self) -> asyncpg.Connection:
        assert self._conn is not None, "the stream's connection is not open yet"
        return self._conn

    async def _run(self) -> None:
        self._conn = conn = await self._store.writer_connection(self.slot)
        self._transaction = conn.transaction()
        await self._transaction.start()
        await conn.copy_to_table("transfers", source=self._stream(),
                                 columns=TRANSFER_COPY_COLUMNS, format="binary")

    async def _stream(self) -> AsyncIterator[bytes]:
        yield COPY_HEADER
        while (part := await self._parts.get()) is not None:
            yield part
        yield COPY_TRAILER

    def send(self, transfers: list[TransferRow]) -> None:
        """Send the transfers decided since the last call (`transfers[sent:]`)."""
        if len(transfers) > self.sent and not self._copy.done():
            self._parts.put_nowait(copy_tuples(transfers, self.height, self.sent))
        self.sent = len(transfers)

    async def finish(self, transfers: list[TransferRow]) -> None:
        """Send what is left of `transfers` and end the COPY; raises if it failed."""
        self.send(transfers)
        self._parts.put_nowait(None)
        await self._copy

    async def commit(self) -> None:
        await self._transaction.commit()

    async def rollback(self) -> None:
        """Undo the transaction (a batch that failed or came to nothing); a connection
        that cannot is dropped, so the next batch opens a fresh one."""
        self._parts.put_nowait(None)
        try:
            await self._copy
            await self._transaction.rollback()
        except Exception:
            await self._store.drop_writer_connection(self.slot)


class LedgerStore:
    """One ledger's tables, seen through a pool (lookups) and the writer's connections
    (one per commit the writer keeps in flight)."""

    def __init__(self, pool: asyncpg.Pool, ledger: int, dsn: str) -> None:
        self.pool = pool
        self.ledger = ledger
        self.dsn = dsn
        self.replayed = 0
        self._conns: dict[int, asyncpg.Connection] = {}

    # ------------------------------------------------------------------ set-up
    async def register(self, public_key_der: bytes) -> bytes:
        """Record the ledger and its key on first use; return the key of record."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO ledgers (ledger, public_key) VALUES ($1, $2) "
                "ON CONFLICT (ledger) DO NOTHING",
                self.ledger,
                public_key_der,
            )
            key: bytes = await conn.fetchval(
                "SELECT public_key FROM ledgers WHERE ledger = $1", self.ledger
            )
        return key

    async def writer_connection(self, slot: int = 0) -> asyncpg.Connection:
        conn = self._conns.get(slot)
        if conn is None or conn.is_closed():
            conn = self._conns[slot] = await asyncpg.connect(self.dsn)
        return conn

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            if not conn.is_closed():
                await conn.close()

    async def drop_writer_connection(self, slot: int = 0) -> None:
        conn = self._conns.pop(slot, None)
        if conn is not None:
            conn.terminate()

    # ------------------------------------------------------------------ loading
    async def load(self, state: LedgerState) -> ChainTip:
        """Fill `state` from the committed tables and return the chain's tip.

        Balances start from the checkpoint; the transfers and expirations of later
        blocks are then replayed on top, in the order they were committed.
        """
        ledger = self.ledger
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            checkpoint = await conn.fetchval(
                "SELECT checkpoint_height FROM ledgers WHERE ledger = $1", ledger) or 0
            block_times = {r["height"]: r["time_ns"] for r in await conn.fetch(
                "SELECT height, time_ns FROM blocks WHERE ledger = $1", ledger)}
            async for row in conn.cursor(
                "SELECT * FROM accounts WHERE ledger = $1", ledger, prefetch=_LOAD_CHUNK
            ):
                state.load_account(_account_state(row))
            resolutions: dict[int, int] = {}
            pendings: list[tuple[Transfer, int, int]] = []
            replay: list[tuple[int, int, Transfer | int]] = []
            async for row in conn.cursor(
                f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE ledger = $1",
                ledger,
                prefetch=_LOAD_CHUNK,
            ):
                t = _transfer(row, ledger)
                ts = row["timestamp"]
                height = row["block_height"]
                state.load_transfer(t, ts)
                if height > checkpoint:
                    replay.append((ts, height, t))
                if t.flags & _PENDING:
                    pendings.append((t, ts, height))
                elif t.flags & _POST:
                    resolutions[t.pending_id] = POSTED
                elif t.flags & _VOID:
                    resolutions[t.pending_id] = VOIDED
            for row in await conn.fetch(
                "SELECT pending_id, timestamp, block_height FROM expirations WHERE ledger = $1",
                ledger,
            ):
                pending_id = i16(row["pending_id"])
                resolutions[pending_id] = EXPIRED
                state.note_timestamp(row["timestamp"])
                if row["block_height"] > checkpoint:
                    replay.append((row["timestamp"], row["block_height"], pending_id))
            for t, ts, height in pendings:
                state.load_pending(t, ts, resolutions.get(t.id, OPEN), block_times[height])
            replay.sort(key=lambda item: item[0])
            for _, height, item in replay:
                if isinstance(item, int):
                    state.replay_expiry(item)
                else:
                    state.replay_transfer(item, block_times[height])
            async for row in conn.cursor(
                "SELECT id, debit_account_id, credit_account_id, amount, pending_id, "
                "user_data, timeout, code, flags, timestamp, result "
                "FROM rejected_transfers WHERE ledger = $1",
                ledger,
                prefetch=_LOAD_CHUNK,
            ):
                state.load_failure(_transfer(row, ledger), row["result"], row["timestamp"])
            tip = await conn.fetchrow(
                "SELECT height, hash FROM blocks WHERE ledger = $1 ORDER BY height DESC LIMIT 1",
                ledger,
            )
        self.replayed = len(replay)
        if tip is None:
            return ChainTip(0, GENESIS_HASH)
        return ChainTip(tip["height"], bytes(tip["hash"]))

    # ------------------------------------------------------------------ commit
    @staticmethod
    def transfer_rows(batch: Batch, height: int) -> bytes:
        """The batch's accepted transfers as the commit sends them: for a small batch of
        plain transfers, one statement's packed records; for any other, one binary COPY
        stream (`settlement.rows`).

        The writer makes them while the batch before commits, so a commit spends its
        time sending rows rather than making them while the server waits.
        """
        if _goes_as_one_statement(batch):
            return small_batch_records(batch.transfers)
        return copy_rows(batch.transfers, height)

    async def commit(self, batch: Batch, block: SealedBlock,
                     rows: bytes | None = None, *,
                     after: Awaitable[object] | None = None, slot: int = 0,
                     attached: AttachedRows | None = None) -> None:
        """Write the batch and its block in one transaction (durable on return).

        `rows` are `transfer_rows(batch, height)`, made here when not given. `after` is
        the commit of the block before, still in flight on another connection (`slot`):
        this one writes everything, then waits for it before its own COMMIT, so a block
        is never durable before its predecessor; if `after` raises, this transaction
        rolls back and the error propagates. `attached` are the callers' own rows,
        written in the same transaction.
        """
        conn = await self.writer_connection(slot)
        if rows is None:
            rows = self.transfer_rows(batch, block.header.height)
        if _goes_as_one_statement(batch):
            if after is None:  # one statement: its own transaction
                await self._insert_small_batch(conn, batch, block, rows, attached)
                return
            async with conn.transaction():
                await self._insert_small_batch(conn, batch, block, rows, attached)
                await after
            return
        async with conn.transaction():
            await self._write_batch(conn, batch, block, rows, attached)
            if after is not None:
                await after

    async def commit_streamed(self, streamed: StreamedTransfers, batch: Batch,
                              block: SealedBlock, *,
                              after: Awaitable[object] | None = None,
                              attached: AttachedRows | None = None) -> None:
        """`commit` for a batch whose transfers went to the server while it was decided
        (`open_stream`): end their stream, write the rest and COMMIT (after `after`)."""
        await streamed.finish(batch.transfers)
        try:
            await self._write_batch(streamed.conn, batch, block, None, attached)
            if after is not None:
                await after
        except BaseException:
            await streamed.rollback()
            raise
        await streamed.commit()

    def open_stream(self, slot: int, height: int) -> StreamedTransfers:
        """Begin the transaction of block `height` on writer connection `slot` and a COPY
        of its transfers that takes them as they are decided (`StreamedTransfers`)."""
        return StreamedTransfers(self, slot, height)

    async def _write_batch(self, conn: asyncpg.Connection, batch: Batch,
                           block: SealedBlock, rows: bytes | None,
                           attached: AttachedRows | None) -> None:
        """Everything of the batch (its transfers too, unless `rows` is None: streamed)
        inside the transaction open on `conn`."""
        ledger = self.ledger
        header = block.header
        height = header.height
        if batch.accounts:
            await conn.copy_records_to_table(
                "accounts",
                columns=_ACCOUNT_COPY_COLUMNS,
                records=[
                    (ledger, b16(a.id), a.code, int(a.flags), b16(a.user_data),
                     a.balance_cap, a.debit_limit_single, a.debit_limit_daily,
                     a.debit_limit_yearly, ts, height)
                    for a, ts in batch.accounts
                ],
            )
        if rows is not None and batch.transfers:
            # Binary COPY: the cheapest way in for a batch, as fast on the server as
            # any, and made by one `struct` call a row (`settlement.rows`). A
            # memoryview: asyncpg would take bytes for a file's path.
            await conn.copy_to_table("transfers", source=memoryview(rows),
                                     columns=TRANSFER_COPY_COLUMNS, format="binary")
        if batch.failures:
            (ids, drs, crs, amounts, pending_ids, user_data, timeouts, _ledgers, codes,
             flags, stamps, results) = zip(*batch.failures, strict=True)
            await conn.execute(
                _INSERT_REJECTED,
                ledger,
                [b16(i) for i in ids],
                [b16(i) for i in drs],
                [b16(i) for i in crs],
                amounts,
                [b16(i) for i in pending_ids],
                [b16(i) for i in user_data],
                timeouts,
                codes,
                flags,
                stamps,
                results,
                height,
            )
        if batch.account_updates:
            updates = batch.account_updates
            current = (
                [b16(a.id) for a, _, _ in updates], [int(a.flags) for a, _, _ in updates],
                [b16(a.user_data) for a, _, _ in updates],
                [a.balance_cap for a, _, _ in updates],
                [a.debit_limit_single for a, _, _ in updates],
                [a.debit_limit_daily for a, _, _ in updates],
                [a.debit_limit_yearly for a, _, _ in updates],
            )
            previous = (
                [int(p.flags) for _, _, p in updates],
                [b16(p.user_data) for _, _, p in updates],
                [p.balance_cap for _, _, p in updates],
                [p.debit_limit_single for _, _, p in updates],
                [p.debit_limit_daily for _, _, p in updates],
                [p.debit_limit_yearly for _, _, p in updates],
            )
            await conn.execute(_INSERT_ACCOUNT_UPDATES, ledger, *current,
                               [ts for _, ts, _ in updates], height, *previous)
            await conn.execute(_APPLY_ACCOUNT_UPDATES, ledger, *current)
        if batch.notes:
            await conn.execute(
                "INSERT INTO transfer_notes (ledger, id, note, block_height) "
                "SELECT $1, u.id, u.note, $4 FROM unnest($2::bytea[], $3::bytea[]) "
                "AS u(id, note)",
                ledger, [b16(i) for i, _ in batch.notes], [n for _, n in batch.notes],
                height,
            )
        if batch.expirations:
            await conn.execute(
                _INSERT_EXPIRATIONS,
                ledger,
                [b16(p) for p, _ in batch.expirations],
                [ts for _, ts in batch.expirations],
                height,
            )
        if attached is not None:
            await conn.execute(attached.statement(), *attached.arguments)
        await conn.execute(
            _INSERT_BLOCK,
            ledger,
            height,
            header.previous_hash,
            header.merkle_root,
            header.time_ns,
            header.entry_count,
            header.version,
            block.hash,
            block.signature,
        )

    async def write_attachments(self, attached: AttachedRows) -> None:
        """Callers' rows of a batch that had nothing else to write (one statement)."""
        await self.pool.execute(attached.statement(), *attached.arguments)

    async def _insert_small_batch(self, conn: asyncpg.Connection, batch: Batch,
                                  block: SealedBlock, records: bytes,
                                  attached: AttachedRows | None = None) -> None:
        """A few plain transfers, their notes (a payment's signed order), what callers
        attached and their block in one statement: one round trip. A data-modifying CTE
        runs whether or not it is read."""
        header = block.header
        sql, extra = _INSERT_SMALL_BATCH, ()
        if attached is not None:
            sql = _small_batch_with(attached.ctes(_SMALL_BATCH_PARAMETERS))
            extra = attached.arguments
        await conn.execute(
            sql, self.ledger, header.height, header.previous_hash,
            header.merkle_root, header.time_ns, header.entry_count, header.version,
            block.hash, block.signature, records,
            [b16(i) for i, _ in batch.notes], [n for _, n in batch.notes], *extra,
        )

    # -------------------------------------------------------------- checkpoint
    async def checkpoint(self, height: int, rows: list[tuple[int, tuple[int, ...]]], *,
                         pause: float | None = None) -> None:
        """Store balances as of committed block `height` (rows: id, snapshot), on a
        connection of the pool so commits go on meanwhile; `pause` (default
        `CHECKPOINT_PAUSE`) 0 when nothing else runs (the last checkpoint, at close)."""
        if pause is None:
            pause = CHECKPOINT_PAUSE
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGE_BALANCES)
            # Small chunks: each chunk's rows are made and encoded in the event loop, and
            # the writer's commits go on between them. After each, a pause as long as
            # the chunk took, so the staging takes at most about half the server's time
            # beside the commits (back to back, it made them three to four times slower).
            for start in range(0, len(rows), _CHECKPOINT_CHUNK):
                started = time.perf_counter()
                await conn.copy_records_to_table(
                    "checkpoint_balances", columns=_STAGED_COLUMNS,
                    records=[(b16(i), *snapshot)
                             for i, snapshot in rows[start:start + _CHECKPOINT_CHUNK]])
                if pause:
                    await asyncio.sleep((time.perf_counter() - started) * pause)
            await conn.execute("ANALYZE checkpoint_balances")
            await conn.execute(_UPDATE_BALANCES, self.ledger)
            await conn.execute(
                "UPDATE ledgers SET checkpoint_height = $2 "
                "WHERE ledger = $1 AND checkpoint_height < $2", self.ledger, height)

    # ----------------------------------------------------------------- history
    async def account_history(
        self, account_id: int, *, debit_head: int, credit_head: int,
        after_timestamp: int = 0, limit: int = 100, direction: str = "both",
    ) -> list[TransferRecord]:
        """Transfers touching the account, oldest first, strictly after the cursor, at
        most `limit`: walked back along its history chains from the heads given (the
        timestamps of its newest durable debit and credit; 0: none). A side whose head
        is at or before the cursor has nothing to read and costs no query."""
        if direction not in DIRECTIONS:
            raise ValueError("direction must be 'both', 'debits' or 'credits'")
        heads = {"debit": debit_head if direction != "credits" else 0,
                 "credit": credit_head if direction != "debits" else 0}
        sides = tuple(side for side, head in heads.items() if head > after_timestamp)
        if not sides:
            return []
        mark = (limit + MARK_EVERY - 2) // MARK_EVERY  # the mark at or past the page's end
        arguments = [value for side in sides for value in (mark, heads[side])]
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_history_query(sides), self.ledger, b16(account_id),
                                    after_timestamp, limit, *arguments)
        return [_record(r, self.ledger) for r in rows]

    # ------------------------------------------------------------------ lookups
    async def lookup_transfers(self, ids: Sequence[int]) -> list[TransferRecord | None]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_TRANSFER_COLUMNS} FROM transfers "
                "WHERE ledger = $1 AND id = ANY($2::bytea[])",
                self.ledger,
                [b16(i) for i in ids],
            )
        found = {i16(r["id"]): _record(r, self.ledger) for r in rows}
        return [found.get(i) for i in ids]

    async def lookup_notes(self, ids: Sequence[int]) -> dict[int, bytes]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, note FROM transfer_notes WHERE ledger = $1 AND id = ANY($2::bytea[])",
                self.ledger, [b16(i) for i in ids],
            )
        return {i16(r["id"]): bytes(r["note"]) for r in rows}

    async def lookup_rejections(self, ids: Sequence[int]) -> dict[int, int]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, result FROM rejected_transfers "
                "WHERE ledger = $1 AND id = ANY($2::bytea[])",
                self.ledger,
                [b16(i) for i in ids],
            )
        return {i16(r["id"]): r["result"] for r in rows}

    async def lookup_accounts(self, ids: Sequence[int]) -> list[AccountBalance | None]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM accounts WHERE ledger = $1 AND id = ANY($2::bytea[])",
                self.ledger,
                [b16(i) for i in ids],
            )
        found = {i16(r["id"]): _account_state(r).balance() for r in rows}
        return [found.get(i) for i in ids]

    # ------------------------------------------------------------------ blocks
    async def block(self, height: int, conn: asyncpg.Connection | None = None
                    ) -> StoredBlock | None:
        if conn is None:
            async with self.pool.acquire() as own:
                return await self.block(height, own)
        row = await conn.fetchrow(
            "SELECT * FROM blocks WHERE ledger = $1 AND height = $2", self.ledger, height
        )
        if row is None:
            return None
        return StoredBlock(
            header=_header(row),
            hash=bytes(row["hash"]),
            signature=bytes(row["signature"]),
            entries=await self._entries(conn, height),
        )

    async def blocks(self, first: int = 1, last: int | None = None
                     ) -> AsyncIterator[StoredBlock]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            top = last if last is not None else await conn.fetchval(
                "SELECT coalesce(max(height), 0) FROM blocks WHERE ledger = $1", self.ledger
            )
            for height in range(first, top + 1):
                block = await self.block(height, conn)
                if block is None:
                    # A gap is itself a finding; hand the auditor an empty placeholder.
                    yield StoredBlock(
                        header=BlockHeader(self.ledger, height, b"", b"", 0, 0, 0),
                        hash=b"",
                        signature=b"",
                        entries=[],
                    )
                    continue
                yield block

    async def chain_height(self) -> int:
        async with self.pool.acquire() as conn:
            height: int = await conn.fetchval(
                "SELECT coalesce(max(height), 0) FROM blocks WHERE ledger = $1", self.ledger
            )
        return height

    async def _entries(self, conn: asyncpg.Connection, height: int) -> list[bytes]:
        """A block's entries, re-encoded from the stored rows, in timestamp order."""
        ledger = self.ledger
        keyed: list[tuple[int, bytes]] = []
        # An account's creation entry holds the definition it was created with: the
        # one its first update replaced, if it was ever updated.
        for r in await conn.fetch(
            "SELECT a.id, a.code, a.timestamp, "
            "coalesce(f.previous_flags, a.flags) AS flags, "
            "coalesce(f.previous_user_data, a.user_data) AS user_data, "
            "CASE WHEN f.id IS NULL THEN a.balance_cap ELSE f.previous_balance_cap END "
            "  AS balance_cap, "
            "CASE WHEN f.id IS NULL THEN a.debit_limit_single "
            "  ELSE f.previous_debit_limit_single END AS debit_limit_single, "
            "CASE WHEN f.id IS NULL THEN a.debit_limit_daily "
            "  ELSE f.previous_debit_limit_daily END AS debit_limit_daily, "
            "CASE WHEN f.id IS NULL THEN a.debit_limit_yearly "
            "  ELSE f.previous_debit_limit_yearly END AS debit_limit_yearly "
            "FROM accounts a LEFT JOIN LATERAL ("
            "  SELECT * FROM account_updates u WHERE u.ledger = a.ledger AND u.id = a.id "
            "  ORDER BY u.timestamp LIMIT 1) f ON true "
            "WHERE a.ledger = $1 AND a.block_height = $2", ledger, height,
        ):
            keyed.append((r["timestamp"], encode_account(
                i16(r["id"]), i16(r["user_data"]), ledger, r["code"], r["flags"],
                r["balance_cap"], r["debit_limit_single"], r["debit_limit_daily"],
                r["debit_limit_yearly"], r["timestamp"])))
        for r in await conn.fetch(
            f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE ledger = $1 "
            "AND block_height = $2", ledger, height,
        ):
            keyed.append((r["timestamp"], encode_transfer(
                i16(r["id"]), i16(r["debit_account_id"]), i16(r["credit_account_id"]),
                r["amount"], i16(r["pending_id"]), i16(r["user_data"]), r["timeout"], ledger,
                r["code"], r["flags"], r["timestamp"])))
        for r in await conn.fetch(
            "SELECT id, user_data, flags, balance_cap, debit_limit_single, "
            "debit_limit_daily, debit_limit_yearly, timestamp, "
            "(SELECT code FROM accounts a WHERE a.ledger = u.ledger AND a.id = u.id) AS code "
            "FROM account_updates u WHERE ledger = $1 AND block_height = $2", ledger, height,
        ):
            keyed.append((r["timestamp"], encode_account(
                i16(r["id"]), i16(r["user_data"]), ledger, r["code"], r["flags"],
                r["balance_cap"], r["debit_limit_single"], r["debit_limit_daily"],
                r["debit_limit_yearly"], r["timestamp"], kind=ENTRY_ACCOUNT_UPDATE)))
        for r in await conn.fetch(
            "SELECT pending_id, timestamp FROM expirations WHERE ledger = $1 "
            "AND block_height = $2", ledger, height,
        ):
            keyed.append((r["timestamp"], encode_expiry(i16(r["pending_id"]), ledger,
                                                        r["timestamp"])))
        keyed.sort(key=lambda pair: pair[0])
        return [entry for _, entry in keyed]

    async def receipt(self, transfer_id: int) -> Receipt | None:
        """The transfer's block header, signature and Merkle proof."""
        async with self.pool.acquire() as conn:
            height = await conn.fetchval(
                "SELECT block_height FROM transfers WHERE ledger = $1 AND id = $2",
                self.ledger, b16(transfer_id),
            )
            if height is None:
                return None
            block = await self.block(height, conn)
        if block is None:
            return None
        wanted = b16(transfer_id)
        for index, entry in enumerate(block.entries):
            if entry[1:17] == wanted:
                proof = merkle_proof(leaf_hashes(block.entries), index)
                return Receipt(header=block.header, signature=block.signature, entry=entry,
                               proof=proof)
        return None


def _header(row: Any) -> BlockHeader:
    return BlockHeader(
        ledger=row["ledger"],
        height=row["height"],
        previous_hash=bytes(row["previous_hash"]),
        merkle_root=bytes(row["merkle_root"]),
        time_ns=row["time_ns"],
        entry_count=row["entry_count"],
        version=row["version"],
    )


def _account_state(row: Any) -> AccountState:
    definition = Account(
        id=i16(row["id"]),
        ledger=row["ledger"],
        code=row["code"],
        flags=row["flags"],
        user_data=i16(row["user_data"]),
        balance_cap=row["balance_cap"],
        debit_limit_single=row["debit_limit_single"],
        debit_limit_daily=row["debit_limit_daily"],
        debit_limit_yearly=row["debit_limit_yearly"],
    )
    state = AccountState(definition, row["timestamp"])
    state.dp = row["debits_posted"]
    state.dpend = row["debits_pending"]
    state.cp = row["credits_posted"]
    state.cpend = row["credits_pending"]
    state.day = row["usage_day"]
    state.day_used = row["debits_today"]
    state.year = row["usage_year"]
    state.year_used = row["debits_this_year"]
    return state


def _transfer(row: Any, ledger: int) -> Transfer:
    return Transfer(
        id=i16(row["id"]),
        debit_account_id=i16(row["debit_account_id"]),
        credit_account_id=i16(row["credit_account_id"]),
        amount=row["amount"],
        ledger=ledger,
        code=row["code"],
        flags=row["flags"],
        pending_id=i16(row["pending_id"]),
        timeout=row["timeout"],
        user_data=i16(row["user_data"]),
    )


def _record(row: Any, ledger: int) -> TransferRecord:
    t = _transfer(row, ledger)
    return TransferRecord(
        **{name: getattr(t, name) for name in t.__struct_fields__},
        timestamp=row["timestamp"],
        block_height=row["block_height"],
    )
