"""The seeded demo `cbdc up` shows: a small ledger answering, end to end.

It opens ledger 1, creates a few accounts (an issuer, two wallets with class-4-style
limits), makes an idempotent transfer, a pending transfer that is posted and one that is
voided, a rejected payment over a limit, then prints balances, a receipt check and the
audit of the whole chain.
"""

from __future__ import annotations

from typing import Any

from cbdc.ids import new_id
from cbdc.keyfiles import load_or_create_key
from cbdc.money import format_fen
from settlement.audit import verify_store
from settlement.core.types import (
    Account,
    AccountFlags,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)
from settlement.engine import Engine

DEMO_LEDGER = 1
ISSUER_CODE, WALLET_CODE, PAYMENT_CODE = 1, 2, 1


async def run_demo(endpoints: Any, settings: Any) -> None:
    key = load_or_create_key(settings.data_dir / "keys" / "settlement-ledger.pem")
    engine = await Engine.open(endpoints.database_url, key=key, timezone=settings.timezone)
    try:
        ledger = await engine.ledger(DEMO_LEDGER)
        issuer, alice, bob = new_id(), new_id(), new_id()
        await ledger.create_accounts([
            Account(id=issuer, ledger=DEMO_LEDGER, code=ISSUER_CODE,
                    flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
            # Class-4-like wallets: 1,000 CNY cap, 500 a payment, 1,000 a day.
            *(Account(id=w, ledger=DEMO_LEDGER, code=WALLET_CODE,
                      flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                      balance_cap=100_000, debit_limit_single=50_000,
                      debit_limit_daily=100_000, debit_limit_yearly=1_000_000)
              for w in (alice, bob)),
        ])
        print(f"ledger {DEMO_LEDGER}: 3 accounts (issuer, alice, bob)")

        def transfer(debit: int, credit: int, amount: int, flags: int = 0,
                     pending_id: int = 0, id_: int | None = None) -> Transfer:
            return Transfer(id=id_ or new_id(), debit_account_id=debit,
                            credit_account_id=credit, amount=amount, ledger=DEMO_LEDGER,
                            code=PAYMENT_CODE, flags=flags, pending_id=pending_id)

        issue = transfer(issuer, alice, 80_000)
        first = await ledger.create_transfers([issue])
        retry = await ledger.create_transfers([issue])
        print(f"issue {format_fen(80_000)} to alice: {first[0].name}; "
              f"the same request retried: {retry[0].name}")
        pay = transfer(alice, bob, 12_345)
        held = transfer(alice, bob, 5_000, flags=TransferFlags.PENDING)
        await ledger.create_transfers([pay, held])
        post = transfer(0, 0, 0, flags=TransferFlags.POST_PENDING_TRANSFER, pending_id=held.id)
        held2 = transfer(alice, bob, 7_000, flags=TransferFlags.PENDING)
        await ledger.create_transfers([post, held2])
        void = transfer(0, 0, 0, flags=TransferFlags.VOID_PENDING_TRANSFER,
                        pending_id=held2.id)
        too_big = transfer(alice, bob, 50_001)
        results = await ledger.create_transfers([void, too_big])
        print(f"alice pays bob {format_fen(12_345)}, holds {format_fen(5_000)} then posts it, "
              f"holds {format_fen(7_000)} then voids it: {results[0].name}")
        print(f"alice pays bob {format_fen(50_001)} (over the single-payment limit): "
              f"{CreateTransferResult(results[1]).name}")
        for name, balance in zip(("issuer", "alice", "bob"),
                                 await ledger.lookup_accounts([issuer, alice, bob]),
                                 strict=True):
            assert balance is not None
            print(f"  {name:6} balance {format_fen(balance.credit_balance):>14}")
        receipt = await ledger.receipt(pay.id)
        assert receipt is not None
        verdict = receipt.verify(key.public) or "verified"
        print(f"receipt for alice's payment: block {receipt.header.height}, "
              f"proof of {len(receipt.proof.path)} hashes: {verdict}")
        report = await verify_store(ledger.store, key.public)
        print(f"audit: {report.summary()}")
    finally:
        await engine.close()
