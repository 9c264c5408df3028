"""Reading every bank's books straight from its database, each bank in one snapshot.

What is conserved across tiers while wallets pay each other (no top-up or redemption
running): the e-CNY the central bank has issued. At a commercial bank it is held by
wallets, the float and in_flight (posted balances: a pending debit still sits in the
payer's wallet). A payment to another bank leaves the payer bank's holdings when the
payer bank posts it (settled out, under the central bank's transfer id) and joins the
payee bank's when the payee bank books that id (INCOMING). Between the two it exists
only at the central bank. So, with each bank read in one snapshot, at any moments:

    total = sum of holdings + amounts settled out but not booked in
                            - amounts booked in but not yet settled out (in its snapshot)

is exactly the e-CNY outstanding, whatever order the snapshots were taken in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import asyncpg

from commercial_bank import accounts as chart
from settlement import TransferFlags

PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING_TRANSFER)
VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
HOLDERS = (chart.WALLET, chart.FLOAT, chart.IN_FLIGHT)

# Posted balance (credits - debits) and open pending debits of every account, from the
# journal alone (the checkpointed columns lag behind it by design).
_BALANCES = f"""
WITH moves AS (
    SELECT credit_account_id AS account, amount AS posted, 0::bigint AS held
      FROM transfers WHERE ledger = 1 AND flags & {PENDING | VOID} = 0
    UNION ALL
    SELECT debit_account_id, -amount, 0 FROM transfers
     WHERE ledger = 1 AND flags & {PENDING | VOID} = 0
    UNION ALL
    SELECT t.debit_account_id, 0, t.amount FROM transfers t
     WHERE t.ledger = 1 AND t.flags & {PENDING} <> 0
       AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.ledger = 1 AND r.pending_id = t.id)
       AND NOT EXISTS (SELECT 1 FROM expirations e
                        WHERE e.ledger = 1 AND e.pending_id = t.id)
)
SELECT a.id, a.code, coalesce(sum(m.posted), 0)::bigint AS posted,
       coalesce(sum(m.held), 0)::bigint AS held
  FROM accounts a LEFT JOIN moves m ON m.account = a.id
 WHERE a.ledger = 1 GROUP BY a.id, a.code
"""
_SETTLED_OUT = (f"SELECT pending_id AS id, amount FROM transfers WHERE ledger = 1 "
                f"AND code = {chart.OUTGOING} AND flags & {POST} <> 0")
_BOOKED_IN = f"SELECT id, amount FROM transfers WHERE ledger = 1 AND code = {chart.INCOMING}"


@dataclass
class BankBooks:
    code: str
    holdings: int  # wallets + float + in_flight, posted
    mirror: int  # the bank's mirror of its position at the central bank
    balances: dict[int, tuple[int, int]]  # wallet account id -> (posted, held)
    negative: list[str] = field(default_factory=list)  # holder accounts below zero
    settled_out: dict[int, int] = field(default_factory=dict)  # central bank id -> amount
    booked_in: dict[int, int] = field(default_factory=dict)
    # Fen in pending transfers neither posted, voided nor expired (payments to other
    # banks and float swaps still waiting for the central bank), in the same snapshot.
    pending: int = 0


async def read_books(pool: asyncpg.Pool, code: str) -> BankBooks:
    """One bank's books in one snapshot (a read-only repeatable-read transaction)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        rows = await conn.fetch(_BALANCES)
        out = await conn.fetch(_SETTLED_OUT)
        booked = await conn.fetch(_BOOKED_IN)
    holdings, mirror, balances, negative = 0, 0, {}, []
    position = chart.system_id(code, "cb_position")
    for row in rows:
        account = int.from_bytes(row["id"], "big")
        posted, held = row["posted"], row["held"]
        if row["code"] in HOLDERS:
            holdings += posted
            if posted < 0 or posted - held < 0:
                negative.append(f"{code} account {account:032x} (code {row['code']}): "
                                f"posted {posted}, held {held}")
        if row["code"] == chart.WALLET:
            balances[account] = (posted, held)
        if account == position:
            mirror = -posted
    return BankBooks(code, holdings, mirror, balances, negative,
                     {int.from_bytes(r["id"], "big"): r["amount"] for r in out},
                     {int.from_bytes(r["id"], "big"): r["amount"] for r in booked},
                     sum(row["held"] for row in rows))


def conserved_total(books: Iterable[BankBooks]) -> int:
    """E-CNY held across the banks, counting what is between two banks exactly once."""
    books = list(books)
    settled_out: dict[int, int] = {}
    booked_in: dict[int, int] = {}
    for bank in books:
        settled_out |= bank.settled_out
        booked_in |= bank.booked_in
    in_transit = sum(amount for id_, amount in settled_out.items() if id_ not in booked_in)
    counted_twice = sum(amount for id_, amount in booked_in.items() if id_ not in settled_out)
    return sum(bank.holdings for bank in books) + in_transit - counted_twice


def problems(books: Iterable[BankBooks]) -> list[str]:
    """What is wrong inside each snapshot: a negative balance, or holdings that differ
    from the bank's mirror of its central bank position."""
    found = []
    for bank in books:
        found += bank.negative
        if bank.holdings != bank.mirror:
            found.append(f"{bank.code}: wallets + float + in flight {bank.holdings} != "
                         f"position mirror {bank.mirror}")
    return found


async def read_all(pools: Mapping[str, asyncpg.Pool]) -> list[BankBooks]:
    """Every bank's books, each in its own snapshot, read side by side (the total does
    not depend on the order or the moments of the snapshots)."""
    return list(await asyncio.gather(*(read_books(pool, code)
                                       for code, pool in pools.items())))


async def outstanding(pool: asyncpg.Pool) -> int:
    """E-CNY outstanding at the central bank (its issuance account), from its journal."""
    from central_bank import accounts as cb_chart

    issuance = cb_chart.ISSUANCE_ID.to_bytes(16, "big")
    value = await pool.fetchval(
        f"SELECT coalesce(sum(CASE WHEN debit_account_id = $1 THEN amount ELSE -amount END), 0)"
        f" FROM transfers WHERE ledger = 1 AND flags & {PENDING | VOID} = 0"
        f" AND (debit_account_id = $1 OR credit_account_id = $1)", issuance)
    return int(value)


async def existing(pool: asyncpg.Pool, ids: Iterable[int]) -> set[int]:
    """Which of `ids` are transfers in this ledger."""
    rows = await pool.fetch("SELECT id FROM transfers WHERE ledger = 1 AND id = ANY($1)",
                            [i.to_bytes(16, "big") for i in ids])
    return {int.from_bytes(r["id"], "big") for r in rows}


async def float_swaps(pool: asyncpg.Pool) -> int:
    """Issuances and redemptions the bank settled with the central bank (posted holds)."""
    return int(await pool.fetchval(
        f"SELECT count(*) FROM transfers WHERE ledger = 1 AND flags & {POST} <> 0"
        f" AND code = ANY($1::int[])", [chart.ISSUANCE, chart.REDEMPTION]))
