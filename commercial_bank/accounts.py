"""A commercial bank's chart of accounts on its own settlement ledger (pure, no I/O).

One ledger of CNY fen holds both what customers keep in e-CNY and their deposits:
    wallet        a customer's e-CNY wallet (credit balance; cap and limits by class)
    deposit       a customer's deposit account (credit balance)
    float         e-CNY the bank holds and has not handed out (credit balance)
    in_flight     e-CNY on its way to another bank (credit balance while pending)
    cb_position   mirror of the bank's e-CNY position at the central bank (debit balance)
    deposit_pool  the bank's side of deposits turned into e-CNY and back (debit balance)
    cash          where deposits come from (tellers, the demo; debit balance)

So: sum of wallets + float + in flight == cb_position == the position the central bank
reports for this bank (once settled transfers are posted). Top-up is a linked pair,
deposit -> deposit_pool and float -> wallet; redemption is its reverse.
"""

from __future__ import annotations

import functools
from hashlib import sha256

from settlement.core.types import Account, AccountFlags, Transfer, TransferFlags

LEDGER = 1

WALLET, DEPOSIT, FLOAT, IN_FLIGHT, CB_POSITION, DEPOSIT_POOL, CASH = 1, 2, 3, 4, 5, 6, 7
# Transfer codes.
PAYMENT = 1          # wallet -> wallet, same bank
TOP_UP = 2           # deposit -> pool and float -> wallet
REDEEM = 3           # wallet -> float and pool -> deposit
ISSUANCE = 4         # cb_position -> float (the central bank issued e-CNY to us)
REDEMPTION = 5       # float -> cb_position
OUTGOING = 6         # wallet -> in_flight (pending until the central bank settles)
SETTLED_OUT = 7      # in_flight -> cb_position
INCOMING = 8         # cb_position -> wallet (a credit from the central bank's feed)
CASH_IN = 9          # cash -> deposit
CLOSING = 10         # a closed wallet's balance to the customer's deposit

_CREDIT_NORMAL = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
_DEBIT_NORMAL = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS


def derived_id(*parts: str | bytes | int) -> int:
    raw = [p if isinstance(p, bytes) else str(p).encode() for p in parts]
    return int.from_bytes(sha256(b"\x1f".join(raw)).digest()[:16], "big") or 1


@functools.lru_cache(maxsize=1 << 16)
def wallet_id(bank: str, number: int) -> int:
    """A wallet's ledger account id (cached: a payment asks for its wallets' ids several
    times, and a hash each time was about a fortieth of a bank's CPU)."""
    return derived_id("cbdc/bank/wallet", bank, number)


def deposit_id(bank: str, number: int) -> int:
    return derived_id("cbdc/bank/deposit", bank, number)


def system_id(bank: str, name: str) -> int:
    return derived_id("cbdc/bank/system", bank, name)


def system_accounts(bank: str) -> list[Account]:
    return [
        Account(id=system_id(bank, "float"), ledger=LEDGER, code=FLOAT, flags=_CREDIT_NORMAL),
        Account(id=system_id(bank, "in_flight"), ledger=LEDGER, code=IN_FLIGHT,
                flags=_CREDIT_NORMAL),
        Account(id=system_id(bank, "cb_position"), ledger=LEDGER, code=CB_POSITION,
                flags=_DEBIT_NORMAL),
        Account(id=system_id(bank, "deposit_pool"), ledger=LEDGER, code=DEPOSIT_POOL),
        Account(id=system_id(bank, "cash"), ledger=LEDGER, code=CASH, flags=_DEBIT_NORMAL),
    ]


def wallet_account(bank: str, number: int, *, cap: int, single: int, daily: int,
                   yearly: int, frozen: bool = False) -> Account:
    flags = _CREDIT_NORMAL | (AccountFlags.FROZEN if frozen else 0)
    return Account(id=wallet_id(bank, number), ledger=LEDGER, code=WALLET, flags=flags,
                   balance_cap=cap, debit_limit_single=single, debit_limit_daily=daily,
                   debit_limit_yearly=yearly)


def deposit_account(bank: str, number: int) -> Account:
    return Account(id=deposit_id(bank, number), ledger=LEDGER, code=DEPOSIT,
                   flags=_CREDIT_NORMAL)


def transfer(id_: int, debit: int, credit: int, amount: int, code: int, *,
             flags: int = 0, user_data: int = 0, pending_id: int = 0, timeout: int = 0
             ) -> Transfer:
    return Transfer(id=id_, debit_account_id=debit, credit_account_id=credit, amount=amount,
                    ledger=LEDGER, code=code, flags=flags, user_data=user_data,
                    pending_id=pending_id, timeout=timeout)


def second_leg(transfer_id: int) -> int:
    return derived_id("cbdc/bank/second-leg", transfer_id.to_bytes(16, "big"))


def resolve_pending(pending_id: int, *, post: bool, linked: bool = False) -> Transfer:
    """Post or void the pending transfer `pending_id` (its accounts, amount and code are
    inherited); its id is derived from the pending one, so a retry is idempotent."""
    flags = TransferFlags.POST_PENDING_TRANSFER if post else TransferFlags.VOID_PENDING_TRANSFER
    kind = "cbdc/bank/post" if post else "cbdc/bank/void"
    return transfer(derived_id(kind, pending_id.to_bytes(16, "big")), 0, 0, 0, 0,
                    pending_id=pending_id,
                    flags=flags | (TransferFlags.LINKED if linked else 0))


def top_up(transfer_id: int, bank: str, wallet: int, deposit: int, amount: int
           ) -> list[Transfer]:
    return [
        transfer(transfer_id, deposit_id(bank, deposit), system_id(bank, "deposit_pool"),
                 amount, TOP_UP, flags=TransferFlags.LINKED),
        transfer(second_leg(transfer_id), system_id(bank, "float"), wallet_id(bank, wallet),
                 amount, TOP_UP),
    ]


def redeem(transfer_id: int, bank: str, wallet: int, deposit: int, amount: int
           ) -> list[Transfer]:
    return [
        transfer(transfer_id, wallet_id(bank, wallet), system_id(bank, "float"), amount,
                 REDEEM, flags=TransferFlags.LINKED),
        transfer(second_leg(transfer_id), system_id(bank, "deposit_pool"),
                 deposit_id(bank, deposit), amount, REDEEM),
    ]
