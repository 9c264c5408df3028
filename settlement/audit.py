"""Offline audit of a ledger's chain of blocks: `cbdc audit verify` and `cbdc audit export`.

For every block, in height order, the auditor checks that the heights are consecutive,
that each header names the previous block's hash, that the stored hash is the header's
hash, that the Merkle root re-derived from the block's entries (re-encoded from the
stored rows) matches the header, and that the ledger's key signed the header. It names
the first bad block and why. Over the database it also checks that every account's
stored balances equal what its transfers add up to, and that every transfer's history
links (the previous transfer on each side of each of its accounts) are right.

The export format is JSON lines: one object per block with its header, hash, signature
and entries (hex), preceded by one line naming the ledger and its public key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import asyncpg

from cbdc.errors import AuditError
from cbdc.merkle import merkle_root
from cbdc.receipts import GENESIS_HASH, BlockHeader
from cbdc.signing import VerifyingKey
from settlement.blocks import leaf_hashes
from settlement.store import LedgerStore, StoredBlock

EXPORT_FORMAT = "cbdc-ledger-chain/1"


@dataclass(frozen=True, slots=True)
class AuditFinding:
    height: int
    reason: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    ledger: int
    blocks_checked: int
    entries_checked: int
    finding: AuditFinding | None
    balance_breaks: tuple[str, ...] = ()
    history_breaks: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.finding is None and not self.balance_breaks and not self.history_breaks

    def summary(self) -> str:
        if self.finding is not None:
            return (f"ledger {self.ledger}: FAILED at block {self.finding.height}: "
                    f"{self.finding.reason}")
        if self.balance_breaks:
            return (f"ledger {self.ledger}: chain of {self.blocks_checked} blocks verified, "
                    f"but balances disagree with transfers: {self.balance_breaks[0]}")
        if self.history_breaks:
            return (f"ledger {self.ledger}: chain of {self.blocks_checked} blocks verified, "
                    f"but the account history links disagree with transfers: "
                    f"{self.history_breaks[0]}")
        return (f"ledger {self.ledger}: OK, {self.blocks_checked} blocks and "
                f"{self.entries_checked} entries verified")


def check_block(block: StoredBlock, expected_height: int, previous_hash: bytes,
                key: VerifyingKey) -> str | None:
    """Why `block` is not a valid successor, or None."""
    header = block.header
    if header.height != expected_height:
        return f"expected height {expected_height}, found {header.height}"
    if not block.signature and not block.hash:
        return "the block is missing"
    if header.previous_hash != previous_hash:
        return "its previous-block hash does not match the block before it"
    if sha256(header.encode()).digest() != block.hash:
        return "its stored hash is not the hash of its header"
    if len(block.entries) != header.entry_count:
        return (f"it should hold {header.entry_count} entries but "
                f"{len(block.entries)} are stored")
    if merkle_root(leaf_hashes(block.entries)) != header.merkle_root:
        return "its entries do not match its Merkle root (a stored entry was changed)"
    if not key.verify(block.signature, header.encode()):
        return "its signature does not verify with the ledger's public key"
    return None


async def verify_chain(ledger: int, blocks: AsyncIterator[StoredBlock], key: VerifyingKey
                       ) -> AuditReport:
    previous = GENESIS_HASH
    checked = entries = 0
    async for block in blocks:
        reason = check_block(block, checked + 1, previous, key)
        if reason is not None:
            return AuditReport(ledger, checked, entries, AuditFinding(checked + 1, reason))
        previous = block.hash
        checked += 1
        entries += len(block.entries)
    return AuditReport(ledger, checked, entries, None)


async def _iterate(blocks: Iterable[StoredBlock]) -> AsyncIterator[StoredBlock]:
    for block in blocks:
        yield block


async def verify_store(store: LedgerStore, key: VerifyingKey) -> AuditReport:
    report = await verify_chain(store.ledger, store.blocks(), key)
    breaks = await balance_breaks(store)
    return AuditReport(report.ledger, report.blocks_checked, report.entries_checked,
                       report.finding, tuple(breaks), tuple(await history_breaks(store)))


async def history_breaks(store: LedgerStore, limit: int = 10) -> list[str]:
    """Transfers whose history links disagree with the ledger: on each side, the link
    must name the transfer before it on that side of that account (by timestamp; 0 for
    the first) and its position there (1, 2, ...). A wrong link would hide part of an
    account's history or show another account's transfers in it."""
    query = """
    WITH linked AS (
        SELECT id, block_height, timestamp, debit_prev, debit_seq, credit_prev, credit_seq,
               coalesce(lag(timestamp) OVER debit_side, 0) AS want_debit_prev,
               row_number() OVER debit_side AS want_debit_seq,
               coalesce(lag(timestamp) OVER credit_side, 0) AS want_credit_prev,
               row_number() OVER credit_side AS want_credit_seq
        FROM transfers WHERE ledger = $1
        WINDOW debit_side AS (PARTITION BY debit_account_id ORDER BY timestamp),
               credit_side AS (PARTITION BY credit_account_id ORDER BY timestamp)
    )
    SELECT encode(id, 'hex') AS id, block_height, debit_prev, debit_seq, credit_prev,
           credit_seq, want_debit_prev, want_debit_seq, want_credit_prev, want_credit_seq
    FROM linked
    WHERE (debit_prev, debit_seq) <> (want_debit_prev, want_debit_seq)
       OR (credit_prev, credit_seq) <> (want_credit_prev, want_credit_seq)
    ORDER BY timestamp LIMIT $2
    """
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(query, store.ledger, limit)
    breaks = []
    for r in rows:
        for side in ("debit", "credit"):
            found = (r[f"{side}_prev"], r[f"{side}_seq"])
            wanted = (r[f"want_{side}_prev"], r[f"want_{side}_seq"])
            if found != wanted:
                breaks.append(
                    f"transfer 0x{r['id']} (block {r['block_height']}): its {side} link "
                    f"names the transfer at timestamp {found[0]} and position {found[1]}; "
                    f"the {side}s of that account put the one at timestamp {wanted[0]} "
                    f"before it, at position {wanted[1]}")
                break
    return breaks


async def balance_breaks(store: LedgerStore, limit: int = 10) -> list[str]:
    """Accounts whose checkpointed balances differ from the sum of their transfers up to
    the checkpoint's block."""
    query = """
    WITH cp AS (SELECT checkpoint_height AS h FROM ledgers WHERE ledger = $1),
    t AS (
        SELECT t.*, (t.flags & 2) <> 0 AS is_pending, (t.flags & 8) <> 0 AS is_void,
               (t.flags & 2) <> 0 AND NOT EXISTS (
                   SELECT 1 FROM transfers r WHERE r.ledger = t.ledger
                       AND r.pending_id = t.id AND r.block_height <= (SELECT h FROM cp))
                 AND NOT EXISTS (SELECT 1 FROM expirations e WHERE e.ledger = t.ledger
                       AND e.pending_id = t.id AND e.block_height <= (SELECT h FROM cp))
                 AS still_pending
        FROM transfers t WHERE t.ledger = $1 AND t.block_height <= (SELECT h FROM cp)
    ), sides AS (
        SELECT debit_account_id AS id,
               sum(amount) FILTER (WHERE NOT is_pending AND NOT is_void) AS dp,
               sum(amount) FILTER (WHERE still_pending) AS dpend,
               0::numeric AS cp, 0::numeric AS cpend
        FROM t GROUP BY debit_account_id
        UNION ALL
        SELECT credit_account_id, 0, 0,
               sum(amount) FILTER (WHERE NOT is_pending AND NOT is_void),
               sum(amount) FILTER (WHERE still_pending)
        FROM t GROUP BY credit_account_id
    ), derived AS (
        SELECT id, coalesce(sum(dp), 0) AS dp, coalesce(sum(dpend), 0) AS dpend,
               coalesce(sum(cp), 0) AS cp, coalesce(sum(cpend), 0) AS cpend
        FROM sides GROUP BY id
    )
    SELECT encode(a.id, 'hex') AS id, a.debits_posted, a.debits_pending, a.credits_posted,
           a.credits_pending, coalesce(d.dp, 0) AS dp, coalesce(d.dpend, 0) AS dpend,
           coalesce(d.cp, 0) AS cp, coalesce(d.cpend, 0) AS cpend
    FROM accounts a LEFT JOIN derived d ON d.id = a.id
    WHERE a.ledger = $1 AND (a.debits_posted <> coalesce(d.dp, 0)
        OR a.debits_pending <> coalesce(d.dpend, 0)
        OR a.credits_posted <> coalesce(d.cp, 0)
        OR a.credits_pending <> coalesce(d.cpend, 0))
    LIMIT $2
    """
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(query, store.ledger, limit)
        totals = await conn.fetchrow(
            "SELECT coalesce(sum(debits_posted), 0) AS d, coalesce(sum(credits_posted), 0) AS c,"
            " coalesce(sum(debits_pending), 0) AS dp, coalesce(sum(credits_pending), 0) AS cp"
            " FROM accounts WHERE ledger = $1", store.ledger)
    breaks = [
        f"account 0x{r['id']} stores debits {r['debits_posted']}/{r['debits_pending']} and "
        f"credits {r['credits_posted']}/{r['credits_pending']} (posted/pending) but its "
        f"transfers give {r['dp']}/{r['dpend']} and {r['cp']}/{r['cpend']}"
        for r in rows
    ]
    if totals["d"] != totals["c"] or totals["dp"] != totals["cp"]:
        breaks.append(f"debits ({totals['d']}) and credits ({totals['c']}) posted do not sum "
                      "to the same total")
    return breaks


# --------------------------------------------------------------------- export
def export_lines(ledger: int, public_key: VerifyingKey, blocks: Iterable[StoredBlock]
                 ) -> Iterator[str]:
    yield json.dumps({"format": EXPORT_FORMAT, "ledger": ledger,
                      "public_key": public_key.to_der().hex()})
    for block in blocks:
        yield json.dumps({
            "header": block.header.to_json(),
            "hash": block.hash.hex(),
            "signature": block.signature.hex(),
            "entries": [entry.hex() for entry in block.entries],
        })


def read_export(path: Path) -> tuple[int, VerifyingKey, list[StoredBlock]]:
    """Parse an exported chain; ValueError names the line that is not well formed."""
    with path.open(encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty")
    try:
        head = json.loads(lines[0])
        if head.get("format") != EXPORT_FORMAT:
            raise ValueError(f"the first line does not declare format {EXPORT_FORMAT}")
        ledger = int(head["ledger"])
        key = VerifyingKey.from_der(bytes.fromhex(head["public_key"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}:1: not a chain export header ({exc})") from None
    blocks = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            data: dict[str, Any] = json.loads(line)
            blocks.append(StoredBlock(
                header=BlockHeader.from_json(data["header"]),
                hash=bytes.fromhex(data["hash"]),
                signature=bytes.fromhex(data["signature"]),
                entries=[bytes.fromhex(e) for e in data["entries"]],
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a block ({exc})") from None
    return ledger, key, blocks


async def verify_file(path: Path, key: VerifyingKey | None = None) -> AuditReport:
    ledger, recorded_key, blocks = await asyncio.to_thread(read_export, path)
    return await verify_chain(ledger, _iterate(blocks), key or recorded_key)


# ------------------------------------------------------------------- commands
async def _key_file(path: str) -> VerifyingKey:
    try:
        pem = await asyncio.to_thread(Path(path).read_bytes)
        return VerifyingKey.from_pem(pem)
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot use public key {path}: {exc}") from None


async def _store_key(store: LedgerStore, public_key_path: str | None) -> VerifyingKey:
    if public_key_path:
        return await _key_file(public_key_path)
    async with store.pool.acquire() as conn:
        der = await conn.fetchval("SELECT public_key FROM ledgers WHERE ledger = $1",
                                  store.ledger)
    if der is None:
        raise AuditError(f"ledger {store.ledger} does not exist in this database")
    return VerifyingKey.from_der(bytes(der))


async def verify_command(args: Any, endpoints: Any, settings: Any) -> int:
    """`cbdc audit verify`: exit 0 when the chain holds, 1 naming the first bad block."""
    key = await _key_file(args.public_key) if args.public_key else None
    if args.file:
        try:
            report = await verify_file(Path(args.file), key)
        except (OSError, ValueError) as exc:
            raise AuditError(str(exc)) from None
        print(report.summary())
        return 0 if report.ok else 1
    pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    try:
        store = LedgerStore(pool, args.ledger, endpoints.database_url)
        report = await verify_store(store, await _store_key(store, args.public_key))
    finally:
        await pool.close()
    print(report.summary())
    for line in [*report.balance_breaks, *report.history_breaks][1:]:
        print(f"  also: {line}")
    return 0 if report.ok else 1


async def export_command(args: Any, endpoints: Any, settings: Any) -> int:
    """`cbdc audit export`: write the chain as JSON lines."""
    pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    try:
        store = LedgerStore(pool, args.ledger, endpoints.database_url)
        key = await _store_key(store, None)
        blocks = [block async for block in store.blocks()]
    finally:
        await pool.close()
    out = Path(args.out)
    text = "".join(line + "\n" for line in export_lines(args.ledger, key, blocks))
    await asyncio.to_thread(out.write_text, text, encoding="utf-8")
    print(f"ledger {args.ledger}: exported {len(blocks)} blocks to {out}")
    return 0
