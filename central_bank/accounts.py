"""The central bank's chart of accounts on its settlement ledger (pure, no I/O).

All amounts are CNY fen on one ledger. Per operator bank:
    reserve   the operator's reserves (credit balance), funded by the RTGS system
    position  the operator's e-CNY position (credit balance)
The central bank's own accounts:
    rtgs      where reserves come from (debit balance: reserves funded in)
    issuance  e-CNY issued (debit balance: e-CNY outstanding)
    backing   reserves swapped for e-CNY (credit balance: 100% backing)

Issuance is a linked pair: reserve -> backing, issuance -> position, the same amount,
so e-CNY outstanding == sum of positions == reserves swapped in net, always.
Redemption is the reverse pair. An interbank transfer is position -> position.
"""

from __future__ import annotations

from functools import cache
from hashlib import sha256

from settlement.core.types import Account, AccountFlags, Transfer, TransferFlags

LEDGER = 1

# Account codes.
RTGS, RESERVE, POSITION, ISSUANCE, BACKING = 1, 2, 3, 4, 5
# Transfer codes.
FUNDING = 10
ISSUE_RESERVES, ISSUE_ECNY = 11, 12
REDEEM_ECNY, REDEEM_RESERVES = 13, 14
INTERBANK = 20

TRANSFER_KINDS = {
    FUNDING: "funding",
    ISSUE_RESERVES: "issue",
    ISSUE_ECNY: "issue",
    REDEEM_ECNY: "redeem",
    REDEEM_RESERVES: "redeem",
    INTERBANK: "interbank",
}

_CREDIT_NORMAL = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
_DEBIT_NORMAL = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS


def derived_id(*parts: str | bytes) -> int:
    """A stable 128-bit id from names (never zero)."""
    digest = sha256(b"\x1f".join(p.encode() if isinstance(p, str) else p for p in parts))
    return int.from_bytes(digest.digest()[:16], "big") or 1


@cache  # on the hot path of every transfer; a bank's ids never change
def reserve_id(bank: str) -> int:
    return derived_id("cbdc/central-bank/reserve", bank)


@cache
def position_id(bank: str) -> int:
    return derived_id("cbdc/central-bank/position", bank)


RTGS_ID = derived_id("cbdc/central-bank/rtgs")
ISSUANCE_ID = derived_id("cbdc/central-bank/issuance")
BACKING_ID = derived_id("cbdc/central-bank/backing")


def system_accounts() -> list[Account]:
    return [
        Account(id=RTGS_ID, ledger=LEDGER, code=RTGS, flags=_DEBIT_NORMAL),
        Account(id=ISSUANCE_ID, ledger=LEDGER, code=ISSUANCE, flags=_DEBIT_NORMAL),
        Account(id=BACKING_ID, ledger=LEDGER, code=BACKING, flags=_CREDIT_NORMAL),
    ]


def operator_accounts(bank: str) -> list[Account]:
    return [
        Account(id=reserve_id(bank), ledger=LEDGER, code=RESERVE, flags=_CREDIT_NORMAL),
        Account(id=position_id(bank), ledger=LEDGER, code=POSITION, flags=_CREDIT_NORMAL),
    ]


def second_leg_id(transfer_id: int) -> int:
    """The id of the second transfer of an issuance or redemption pair."""
    return derived_id("cbdc/central-bank/second-leg", transfer_id.to_bytes(16, "big"))


def _transfer(id_: int, debit: int, credit: int, amount: int, code: int, flags: int = 0,
              user_data: int = 0) -> Transfer:
    return Transfer(id=id_, debit_account_id=debit, credit_account_id=credit, amount=amount,
                    ledger=LEDGER, code=code, flags=flags, user_data=user_data)


def funding(transfer_id: int, bank: str, amount: int) -> list[Transfer]:
    return [_transfer(transfer_id, RTGS_ID, reserve_id(bank), amount, FUNDING)]


def issuance(transfer_id: int, bank: str, amount: int) -> list[Transfer]:
    return [
        _transfer(transfer_id, reserve_id(bank), BACKING_ID, amount, ISSUE_RESERVES,
                  TransferFlags.LINKED),
        _transfer(second_leg_id(transfer_id), ISSUANCE_ID, position_id(bank), amount,
                  ISSUE_ECNY),
    ]


def redemption(transfer_id: int, bank: str, amount: int) -> list[Transfer]:
    return [
        _transfer(transfer_id, position_id(bank), ISSUANCE_ID, amount, REDEEM_ECNY,
                  TransferFlags.LINKED),
        _transfer(second_leg_id(transfer_id), BACKING_ID, reserve_id(bank), amount,
                  REDEEM_RESERVES),
    ]


def interbank(transfer_id: int, payer: str, payee: str, amount: int, note_hash: int
              ) -> Transfer:
    return _transfer(transfer_id, position_id(payer), position_id(payee), amount, INTERBANK,
                     user_data=note_hash)
