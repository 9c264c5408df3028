"""Reconciliation across the tiers: `cbdc reconcile`, and the check after every load run.

Reads each service's database (never through its API, so it also works on a system
that is down) and rebuilds every ledger's current balances from its checkpoint and
journal, exactly as a restarting writer would. It checks:

- the central bank: e-CNY outstanding == sum of operator positions == reserves swapped
  in net, and reserves held + swapped == reserves funded;
- each commercial bank: its wallets + float + money in flight == its mirror of its
  position, and that mirror == the position the central bank holds for it, once the
  payments settled at the central bank but not yet booked by the bank are counted;
- every interbank transfer the central bank settled is booked at both banks (one that
  is younger than the grace period is reported as in flight, not as a break);
- each ledger's signed chain verifies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from cbdc.signing import VerifyingKey
from central_bank import accounts as cb_chart
from commercial_bank import accounts as bank_chart
from settlement.audit import verify_store
from settlement.core.state import OPEN, LedgerState
from settlement.store import LedgerStore

NS = 1_000_000_000


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)
    in_flight: int = 0

    def ok(self, text: str) -> None:
        self.lines.append(f"ok    {text}")

    def broken(self, text: str) -> None:
        self.lines.append(f"BREAK {text}")
        self.breaks.append(text)

    def note(self, text: str) -> None:
        self.lines.append(f"      {text}")

    @property
    def clean(self) -> bool:
        return not self.breaks

    def to_json(self) -> dict[str, Any]:
        return {"reconciled": self.clean, "breaks": self.breaks, "in_flight": self.in_flight,
                "report": self.lines}


async def _load(database_url: str) -> tuple[asyncpg.Pool, LedgerStore, LedgerState]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    store = LedgerStore(pool, 1, database_url)
    state = LedgerState(1)
    await store.load(state)
    return pool, store, state


def _credit(state: LedgerState, account_id: int) -> int:
    account = state.accounts.get(account_id)
    return account.cp - account.dp if account else 0


async def _chain(report: Report, name: str, store: LedgerStore) -> None:
    der = await store.pool.fetchval("SELECT public_key FROM ledgers WHERE ledger = 1")
    if der is None:
        report.note(f"{name}: no ledger yet")
        return
    audit = await verify_store(store, VerifyingKey.from_der(bytes(der)))
    if audit.ok:
        report.ok(f"{name}: chain of {audit.blocks_checked} blocks verifies")
    else:
        report.broken(f"{name}: {audit.summary()}")


async def reconcile(central_bank_url: str, bank_urls: dict[str, str], *,
                    grace_seconds: float = 30.0) -> Report:
    report = Report()
    cb_pool, cb_store, cb = await _load(central_bank_url)
    pools = [cb_pool]
    try:
        await _chain(report, "central bank", cb_store)
        codes = [r["code"] for r in await cb_pool.fetch("SELECT code FROM operators")]
        positions = {code: _credit(cb, cb_chart.position_id(code)) for code in codes}
        reserves = sum(_credit(cb, cb_chart.reserve_id(code)) for code in codes)
        outstanding = -_credit(cb, cb_chart.ISSUANCE_ID)
        backing = _credit(cb, cb_chart.BACKING_ID)
        funded = -_credit(cb, cb_chart.RTGS_ID)
        total = sum(positions.values())
        if outstanding == total == backing and reserves + backing == funded:
            report.ok(f"central bank: e-CNY outstanding {outstanding} == positions {total} "
                      f"== reserves swapped {backing}; reserves {reserves} + {backing} == "
                      f"funded {funded}")
        else:
            report.broken(f"central bank: outstanding {outstanding}, positions {total}, "
                          f"swapped {backing}, reserves {reserves}, funded {funded}")
        by_position = {cb_chart.position_id(code): code for code in codes}
        interbank = await cb_pool.fetch(
            "SELECT id, debit_account_id, credit_account_id, amount, timestamp "
            "FROM transfers WHERE ledger = 1 AND code = $1", cb_chart.INTERBANK)
        swaps = {int.from_bytes(r["id"], "big"): r["timestamp"] for r in await cb_pool.fetch(
            "SELECT id, timestamp FROM transfers WHERE ledger = 1 AND code = ANY($1::int[])",
            [cb_chart.ISSUE_RESERVES, cb_chart.REDEEM_ECNY])}
        now = time.time_ns()
        for code, url in bank_urls.items():
            pool, store, bank = await _load(url)
            pools.append(pool)
            await _chain(report, code, store)
            await _bank(report, code, bank, pool, positions.get(code, 0), interbank,
                        by_position, now, grace_seconds, swaps)
    finally:
        for pool in pools:
            await pool.close()
    return report


async def _bank(report: Report, code: str, bank: LedgerState, pool: asyncpg.Pool,
                cb_position: int, interbank: list[asyncpg.Record], by_position: dict[int, str],
                now: int, grace_seconds: float, swaps: dict[int, int]) -> None:
    holders = sum(a.cp - a.dp for a in bank.accounts.values()
                  if a.definition.code in (bank_chart.WALLET, bank_chart.FLOAT,
                                           bank_chart.IN_FLIGHT))
    mirror = -_credit(bank, bank_chart.system_id(code, "cb_position"))
    if holders == mirror:
        report.ok(f"{code}: wallets + float + in flight {holders} == position mirror {mirror}")
    else:
        report.broken(f"{code}: wallets + float + in flight {holders} != mirror {mirror}")
    booked = {int.from_bytes(r["id"], "big") for r in await pool.fetch(
        "SELECT id FROM transfers WHERE ledger = 1 AND code = ANY($1::int[])",
        [bank_chart.INCOMING, bank_chart.OUTGOING])}
    posted = {int.from_bytes(r["pending_id"], "big") for r in await pool.fetch(
        "SELECT pending_id FROM transfers WHERE ledger = 1 AND pending_id IS NOT NULL "
        "AND (flags & 4) <> 0")}
    out_settled_unposted = in_unbooked = 0
    for row in interbank:
        transfer_id = int.from_bytes(row["id"], "big")
        payer = by_position.get(int.from_bytes(row["debit_account_id"], "big"))
        payee = by_position.get(int.from_bytes(row["credit_account_id"], "big"))
        young = now - row["timestamp"] < grace_seconds * NS
        if payer == code and transfer_id not in posted:
            pending = bank.pendings.get(transfer_id)
            if pending is not None and pending.status == OPEN:
                out_settled_unposted += row["amount"]
                report.in_flight += 1
                if not young:
                    report.broken(f"{code}: payment {transfer_id:032x} settled at the central "
                                  "bank but is still pending here")
            elif transfer_id not in booked:
                # Sent by the operator itself (not from a wallet): nothing to book here.
                report.note(f"{code}: central bank transfer {transfer_id:032x} was not sent "
                            "from a wallet of this bank")
        if payee == code and transfer_id not in booked:
            in_unbooked += row["amount"]
            report.in_flight += 1
            if not young:
                report.broken(f"{code}: credit {transfer_id:032x} settled at the central bank "
                              "is not booked here")
    # Float swaps the central bank made while the bank still holds them pending (its
    # answer is awaited or was lost): in flight too, until the bank asks again.
    swapped_unposted = 0
    for swap_id, pending in bank.pendings.items():
        kind = pending.transfer.code
        if pending.status != OPEN or kind not in (bank_chart.ISSUANCE, bank_chart.REDEMPTION) \
                or swap_id not in swaps:
            continue
        amount = pending.transfer.amount
        swapped_unposted += amount if kind == bank_chart.ISSUANCE else -amount
        report.in_flight += 1
        if now - swaps[swap_id] >= grace_seconds * NS:
            report.broken(f"{code}: float swap {swap_id:032x} made at the central bank is "
                          "still pending here")
    expected = mirror - out_settled_unposted + in_unbooked + swapped_unposted
    if expected == cb_position:
        report.ok(f"{code}: position at the central bank {cb_position} == mirror {mirror} "
                  f"- settled out, not yet posted {out_settled_unposted} + in, not yet "
                  f"booked {in_unbooked} + float swaps not yet posted {swapped_unposted}")
    else:
        report.broken(f"{code}: central bank position {cb_position} != mirror {mirror} - "
                      f"{out_settled_unposted} + {in_unbooked} + {swapped_unposted}")
