"""Each result code of the ledger core, by example, at its boundaries.

Every test drives `LedgerState` the way the writer does (begin a batch at a time, submit,
finish) and checks what a user of the ledger would check: the answer, the balances, the
limit usage, and that a refused request changed nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.core.state import AccountState, Batch, LedgerState
from settlement.core.types import (
    Account,
    AccountBalance,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)

R = CreateTransferResult
A = CreateAccountResult
LEDGER = 1
NS = 1_000_000_000
SHANGHAI = timezone(timedelta(hours=8))
LINKED = int(TransferFlags.LINKED)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING_TRANSFER)
VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
NO_OVERDRAFT = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
NO_EXCESS_CREDIT = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
MINT, WALLET, SHOP, OTHER = 1, 2, 3, 4


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
          ns: int = 0) -> int:
    """Nanoseconds since the epoch of a wall-clock time in Asia/Shanghai."""
    moment = datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)
    return int(moment.timestamp()) * NS + ns


T0 = local(2025, 3, 10, 10, 0)


def account(account_id: int, **fields: Any) -> Account:
    fields.setdefault("code", 1)
    return Account(id=account_id, ledger=LEDGER, **fields)


def transfer(transfer_id: int, debit: int = MINT, credit: int = WALLET, amount: int = 100,
             **fields: Any) -> Transfer:
    fields.setdefault("ledger", LEDGER)
    fields.setdefault("code", 1)
    return Transfer(id=transfer_id, debit_account_id=debit, credit_account_id=credit,
                    amount=amount, **fields)


def resolution(kind: int, transfer_id: int, pending_id: int, amount: int = 0, *,
               debit: int = 0, credit: int = 0, ledger: int = 0, code: int = 0,
               flags: int = 0) -> Transfer:
    """A post or void; the fields a client may leave at zero default to zero."""
    return Transfer(id=transfer_id, debit_account_id=debit, credit_account_id=credit,
                    amount=amount, ledger=ledger, code=code, flags=kind | flags,
                    pending_id=pending_id)


def post(transfer_id: int, pending_id: int, amount: int = 0, **fields: Any) -> Transfer:
    return resolution(POST, transfer_id, pending_id, amount, **fields)


def void(transfer_id: int, pending_id: int, amount: int = 0, **fields: Any) -> Transfer:
    return resolution(VOID, transfer_id, pending_id, amount, **fields)


def entry_timestamp(entry: bytes) -> int:
    """The timestamp of a block entry (its last 8 bytes, see cbdc/receipts.py)."""
    return int.from_bytes(entry[-8:], "big")


def expired_ids(entries: list[bytes]) -> list[int]:
    """Pending ids whose expiry entries (kind 3) a block holds."""
    return [int.from_bytes(e[1:17], "big") for e in entries if e[0] == 3]


class Ledger:
    """A ledger's state, driven one batch per call as the single writer does."""

    last_batch: Batch

    def __init__(self, now: int = T0) -> None:
        self.state = LedgerState(ledger=LEDGER)
        self.now = now
        self.entries: list[bytes] = []  # every committed block entry, in order

    def run(self, accounts: Sequence[Account] = (), transfers: Sequence[Transfer] = ()
            ) -> tuple[list[A], list[R]]:
        batch = self.state.begin(self.now)
        account_results = self.state.create_accounts(batch, list(accounts))
        transfer_results = self.state.create_transfers(batch, list(transfers))
        self.state.finish(batch)
        self.entries += batch.entries
        self.last_batch = batch
        return account_results, transfer_results

    def create(self, *accounts: Account) -> list[A]:
        return self.run(accounts=accounts)[0]

    def submit(self, *transfers: Transfer) -> list[R]:
        return self.run(transfers=transfers)[1]

    def one(self, t: Transfer) -> R:
        [result] = self.submit(t)
        return result

    def tick(self) -> None:
        """An empty batch, as the writer's expiry timer runs one."""
        self.run()

    def at(self, now: int) -> Ledger:
        assert now >= self.now
        self.now = now
        return self

    def later(self, seconds: float = 0, ns: int = 0) -> Ledger:
        return self.at(self.now + int(seconds * NS) + ns)

    def balance(self, account_id: int) -> AccountBalance:
        [found] = self.state.balances([account_id], self.now)
        assert found is not None
        return found

    def book(self) -> list[tuple[int, ...] | None]:
        """Every account's balances and usage: what must not move on a refused request."""
        return [None if b is None else (b.debits_posted, b.debits_pending, b.credits_posted,
                                        b.credits_pending, b.debits_today, b.debits_this_year)
                for b in self.state.balances(range(1, 10), self.now)]

    def posted(self, account_id: int) -> tuple[int, int]:
        b = self.balance(account_id)
        return b.debits_posted, b.credits_posted

    def reserved(self, account_id: int) -> tuple[int, int]:
        b = self.balance(account_id)
        return b.debits_pending, b.credits_pending


def ledger_with(*accounts: Account, now: int = T0, fund: int = 0) -> Ledger:
    """A ledger with a mint (may go negative) and the given accounts; `fund` fen are
    paid from the mint to the wallet first."""
    ledger = Ledger(now)
    results = ledger.create(account(MINT), *accounts)
    assert set(results) == {A.OK}
    if fund:
        assert ledger.one(transfer(1, MINT, WALLET, fund)) is R.OK
    return ledger


def refused_without_effect(ledger: Ledger, *transfers: Transfer) -> list[R]:
    """Submit in a batch of its own; the block and every balance must stay as they were."""
    before = ledger.book()
    results = ledger.submit(*transfers)
    assert ledger.last_batch.entries == []
    assert ledger.book() == before
    return results


# ------------------------------------------------------------------------ accounts
def test_new_account_reads_zero_balances() -> None:
    """A new account exists and holds nothing."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT, balance_cap=500))
    b = ledger.balance(WALLET)
    assert (b.debits_posted, b.debits_pending, b.credits_posted, b.credits_pending) == (0, 0,
                                                                                        0, 0)
    assert b.account == account(WALLET, flags=NO_OVERDRAFT, balance_cap=500)


def test_same_account_again_is_exists() -> None:
    """Creating an account twice with the same fields answers EXISTS and adds no entry."""
    ledger = ledger_with(account(WALLET, balance_cap=500))
    assert ledger.create(account(WALLET, balance_cap=500)) == [A.EXISTS]
    assert ledger.last_batch.entries == []


@pytest.mark.parametrize("changed", [
    {"code": 2}, {"flags": NO_OVERDRAFT}, {"user_data": 7}, {"balance_cap": 501},
    {"balance_cap": None}, {"debit_limit_single": 1}, {"debit_limit_daily": 1},
    {"debit_limit_yearly": 1},
])
def test_account_id_reused_with_other_fields(changed: dict[str, Any]) -> None:
    """An account id reused with any field changed is EXISTS_WITH_DIFFERENT_FIELDS."""
    ledger = ledger_with(account(WALLET, balance_cap=500))
    fields = {"balance_cap": 500, **changed}
    assert ledger.create(account(WALLET, **fields)) == [A.EXISTS_WITH_DIFFERENT_FIELDS]
    assert ledger.balance(WALLET).account == account(WALLET, balance_cap=500)


def test_account_of_another_ledger_is_not_served() -> None:
    """An account for a ledger this state does not serve is LEDGER_NOT_SERVED."""
    ledger = Ledger()
    assert ledger.create(Account(id=5, ledger=2, code=1)) == [A.LEDGER_NOT_SERVED]
    assert ledger.state.balances([5], T0) == [None]


@pytest.mark.parametrize(("fields", "expected"), [
    ({"id": 0}, A.ID_MUST_NOT_BE_ZERO),
    ({"id": -1}, A.ID_INVALID),
    ({"id": 2**128}, A.ID_INVALID),
    ({"id": "5"}, A.ID_INVALID),
    ({"id": 5.0}, A.ID_INVALID),
    ({"id": True}, A.ID_INVALID),
    ({"flags": 1}, A.FLAGS_INVALID),
    ({"flags": 8}, A.FLAGS_INVALID),
    ({"flags": -2}, A.FLAGS_INVALID),
    ({"flags": 2.0}, A.FLAGS_INVALID),
    ({"flags": True}, A.FLAGS_INVALID),
    ({"flags": NO_OVERDRAFT | NO_EXCESS_CREDIT}, A.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ({"ledger": 0}, A.LEDGER_INVALID),
    ({"ledger": -1}, A.LEDGER_INVALID),
    ({"ledger": 2**32}, A.LEDGER_INVALID),
    ({"ledger": True}, A.LEDGER_INVALID),
    ({"code": 0}, A.CODE_INVALID),
    ({"code": 2**16}, A.CODE_INVALID),
    ({"user_data": -1}, A.USER_DATA_INVALID),
    ({"user_data": 2**128}, A.USER_DATA_INVALID),
    ({"balance_cap": -1}, A.BALANCE_CAP_INVALID),
    ({"balance_cap": 2**63}, A.BALANCE_CAP_INVALID),
    ({"balance_cap": 1.5}, A.BALANCE_CAP_INVALID),
    ({"balance_cap": True}, A.BALANCE_CAP_INVALID),
    ({"balance_cap": "500"}, A.BALANCE_CAP_INVALID),
    ({"debit_limit_single": -1}, A.DEBIT_LIMIT_INVALID),
    ({"debit_limit_daily": 2**63}, A.DEBIT_LIMIT_INVALID),
    ({"debit_limit_yearly": 100.0}, A.DEBIT_LIMIT_INVALID),
    ({"debit_limit_yearly": False}, A.DEBIT_LIMIT_INVALID),
])
def test_bad_account_fields(fields: dict[str, Any], expected: A) -> None:
    """A malformed account gets its precise code, and nothing is created or recorded."""
    ledger = Ledger()
    fields = {"id": 5, "ledger": LEDGER, "code": 1, **fields}
    assert ledger.create(Account(**fields)) == [expected]
    assert ledger.last_batch.entries == []
    assert ledger.state.balances([5], T0) == [None]


def test_cap_and_limits_may_be_zero_or_the_largest_amount() -> None:
    """0 and 2**63-1 are valid caps and limits (0 forbids any credit or debit)."""
    ledger = Ledger()
    assert ledger.create(
        account(5, balance_cap=0, debit_limit_single=0, debit_limit_daily=0,
                debit_limit_yearly=0),
        account(6, balance_cap=2**63 - 1, debit_limit_single=2**63 - 1,
                debit_limit_daily=2**63 - 1, debit_limit_yearly=2**63 - 1),
    ) == [A.OK, A.OK]


# ------------------------------------------------------------- plain transfers
def test_plain_transfer_moves_posted_balances() -> None:
    """A transfer debits one account and credits the other by the same amount."""
    ledger = ledger_with(account(WALLET))
    assert ledger.one(transfer(10, MINT, WALLET, 250)) is R.OK
    assert ledger.posted(MINT) == (250, 0)
    assert ledger.posted(WALLET) == (0, 250)
    assert ledger.state.total_balance() == (250, 250)


def test_same_transfer_again_is_exists_and_moves_nothing() -> None:
    """A retried transfer answers EXISTS and is not applied twice."""
    ledger = ledger_with(account(WALLET))
    assert ledger.one(transfer(10)) is R.OK
    assert refused_without_effect(ledger, transfer(10)) == [R.EXISTS]
    assert ledger.posted(WALLET) == (0, 100)


@pytest.mark.parametrize("changed", [
    {"debit": OTHER}, {"credit": OTHER}, {"amount": 101}, {"user_data": 1}, {"code": 2},
    {"flags": PENDING}, {"flags": LINKED},
])
def test_transfer_id_reused_with_other_fields(changed: dict[str, Any]) -> None:
    """A transfer id reused with any field changed is EXISTS_WITH_DIFFERENT_FIELDS."""
    ledger = ledger_with(account(WALLET), account(OTHER))
    assert ledger.one(transfer(10)) is R.OK
    reused = transfer(10, **changed)
    extra = [transfer(11)] if changed.get("flags") == LINKED else []  # close the chain
    results = refused_without_effect(ledger, reused, *extra)
    assert results[0] is R.EXISTS_WITH_DIFFERENT_FIELDS


def test_pending_id_reused_with_another_timeout() -> None:
    """A pending transfer's timeout is one of its fields: changed, it is another transfer."""
    ledger = ledger_with(account(WALLET))
    assert ledger.one(transfer(10, flags=PENDING, timeout=60)) is R.OK
    assert refused_without_effect(ledger, transfer(10, flags=PENDING, timeout=61)) == [
        R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert refused_without_effect(ledger, transfer(10, flags=PENDING, timeout=60)) == [
        R.EXISTS]


BAD_TRANSFERS = [
    ({"id": 0}, R.ID_MUST_NOT_BE_ZERO),
    ({"id": -1}, R.ID_INVALID),
    ({"id": 2**128}, R.ID_INVALID),
    ({"id": "50"}, R.ID_INVALID),
    ({"id": 50.0}, R.ID_INVALID),
    ({"id": True}, R.ID_INVALID),
    ({"flags": 1 << 4}, R.FLAGS_INVALID),
    ({"flags": 1 << 15}, R.FLAGS_INVALID),
    ({"flags": -2}, R.FLAGS_INVALID),
    ({"flags": 2.0}, R.FLAGS_INVALID),
    ({"flags": True}, R.FLAGS_INVALID),
    ({"flags": "2"}, R.FLAGS_INVALID),
    ({"flags": PENDING | POST, "pending_id": 9}, R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ({"flags": PENDING | VOID, "pending_id": 9}, R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ({"flags": POST | VOID, "pending_id": 9}, R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ({"debit_account_id": 0}, R.DEBIT_ACCOUNT_ID_INVALID),
    ({"debit_account_id": -1}, R.DEBIT_ACCOUNT_ID_INVALID),
    ({"debit_account_id": 2**128}, R.DEBIT_ACCOUNT_ID_INVALID),
    ({"debit_account_id": "1"}, R.DEBIT_ACCOUNT_ID_INVALID),
    ({"debit_account_id": True}, R.DEBIT_ACCOUNT_ID_INVALID),
    ({"credit_account_id": 0}, R.CREDIT_ACCOUNT_ID_INVALID),
    ({"credit_account_id": -2}, R.CREDIT_ACCOUNT_ID_INVALID),
    ({"credit_account_id": 2**128}, R.CREDIT_ACCOUNT_ID_INVALID),
    ({"credit_account_id": 2.0}, R.CREDIT_ACCOUNT_ID_INVALID),
    ({"credit_account_id": MINT}, R.ACCOUNTS_MUST_BE_DIFFERENT),
    ({"flags": POST, "pending_id": 9, "debit_account_id": 5, "credit_account_id": 5},
     R.ACCOUNTS_MUST_BE_DIFFERENT),
    ({"pending_id": 9}, R.PENDING_ID_MUST_BE_ZERO),
    ({"pending_id": -1}, R.PENDING_ID_INVALID),
    ({"pending_id": False}, R.PENDING_ID_INVALID),
    ({"flags": POST, "pending_id": 0}, R.PENDING_ID_MUST_NOT_BE_ZERO),
    ({"flags": VOID, "pending_id": 0}, R.PENDING_ID_MUST_NOT_BE_ZERO),
    ({"flags": POST, "pending_id": 50}, R.PENDING_ID_MUST_BE_DIFFERENT),
    ({"flags": VOID, "pending_id": 2**128}, R.PENDING_ID_INVALID),
    ({"timeout": 5}, R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
    ({"flags": POST, "pending_id": 9, "timeout": 5}, R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
    ({"flags": PENDING, "timeout": -1}, R.TIMEOUT_INVALID),
    ({"flags": PENDING, "timeout": 2**32}, R.TIMEOUT_INVALID),
    ({"flags": PENDING, "timeout": 1.5}, R.TIMEOUT_INVALID),
    ({"amount": 0}, R.AMOUNT_MUST_NOT_BE_ZERO),
    ({"flags": PENDING, "amount": 0}, R.AMOUNT_MUST_NOT_BE_ZERO),
    ({"amount": -1}, R.AMOUNT_INVALID),
    ({"amount": -100}, R.AMOUNT_INVALID),
    ({"amount": 2**63}, R.AMOUNT_INVALID),
    ({"amount": 2**64}, R.AMOUNT_INVALID),
    ({"amount": 100.0}, R.AMOUNT_INVALID),
    ({"amount": 0.5}, R.AMOUNT_INVALID),
    ({"amount": "100"}, R.AMOUNT_INVALID),
    ({"amount": True}, R.AMOUNT_INVALID),
    ({"amount": None}, R.AMOUNT_INVALID),
    ({"amount": Decimal(100)}, R.AMOUNT_INVALID),
    ({"flags": POST, "pending_id": 9, "amount": -1}, R.AMOUNT_INVALID),
    ({"ledger": 0}, R.LEDGER_INVALID),
    ({"ledger": -1}, R.LEDGER_INVALID),
    ({"ledger": 2**32}, R.LEDGER_INVALID),
    ({"ledger": "1"}, R.LEDGER_INVALID),
    ({"ledger": 2}, R.LEDGER_NOT_SERVED),
    ({"flags": POST, "pending_id": 9, "ledger": 2}, R.LEDGER_NOT_SERVED),
    ({"code": 0}, R.CODE_INVALID),
    ({"code": 2**16}, R.CODE_INVALID),
    ({"code": -1}, R.CODE_INVALID),
    ({"user_data": -1}, R.USER_DATA_INVALID),
    ({"user_data": 2**128}, R.USER_DATA_INVALID),
]


@pytest.mark.parametrize(("fields", "expected"), BAD_TRANSFERS,
                         ids=[",".join(f"{k}={v!r}" for k, v in f.items()) + f"-{r.name}"
                              for f, r in BAD_TRANSFERS])
def test_bad_transfer_fields(fields: dict[str, Any], expected: R) -> None:
    """Malformed input gets its precise code and changes nothing: balances, block, record."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT), fund=1000)
    values = {"id": 50, "debit_account_id": MINT, "credit_account_id": WALLET,
              "amount": 100, "ledger": LEDGER, "code": 1, **fields}
    assert refused_without_effect(ledger, Transfer(**values)) == [expected]
    assert ledger.last_batch.failures == []  # decided from the transfer alone: not stored
    if type(values["id"]) is int and 0 < values["id"] < 2**128:
        # Not stored, so the id is still free for a well-formed transfer.
        assert ledger.one(transfer(values["id"])) is R.OK


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), st.floats(),
                 st.text(max_size=5), st.booleans(), st.none(), st.decimals(allow_nan=False)))
def test_any_non_amount_is_amount_invalid(amount: object) -> None:
    """Negative, too large, float, string, bool, None or Decimal: AMOUNT_INVALID."""
    ledger = ledger_with(account(WALLET))
    assert refused_without_effect(ledger, transfer(50, amount=amount)) == [R.AMOUNT_INVALID]


def test_largest_amount_is_accepted() -> None:
    """2**63-1 fen is a valid amount; 2**63 is not."""
    ledger = ledger_with(account(WALLET))
    assert ledger.one(transfer(10, amount=2**63 - 1)) is R.OK
    assert ledger.posted(WALLET) == (0, 2**63 - 1)


def test_debit_account_not_found_is_stored() -> None:
    """An unknown debit account is DEBIT_ACCOUNT_NOT_FOUND, and stays the answer for that id."""
    ledger = ledger_with(account(WALLET))
    assert refused_without_effect(ledger, transfer(10, 5, WALLET)) == [R.DEBIT_ACCOUNT_NOT_FOUND]
    assert ledger.create(account(5)) == [A.OK]
    assert ledger.one(transfer(10, 5, WALLET)) is R.DEBIT_ACCOUNT_NOT_FOUND
    assert ledger.one(transfer(10, 5, WALLET, 101)) is R.ID_ALREADY_FAILED


def test_credit_account_not_found_is_stored() -> None:
    """An unknown credit account is CREDIT_ACCOUNT_NOT_FOUND."""
    ledger = ledger_with(account(WALLET))
    assert refused_without_effect(ledger, transfer(10, MINT, 5)) == [
        R.CREDIT_ACCOUNT_NOT_FOUND]
    assert ledger.one(transfer(10, MINT, 5)) is R.CREDIT_ACCOUNT_NOT_FOUND


def test_accounts_of_different_ledgers() -> None:
    """Accounts loaded from two ledgers cannot pay each other; nor can a transfer of
    another ledger move them (defensive: a state only creates its own ledger's accounts)."""
    ledger = ledger_with(account(WALLET))
    ledger.state.load_account(AccountState(Account(id=7, ledger=2, code=1), T0))
    ledger.state.load_account(AccountState(Account(id=8, ledger=2, code=1), T0))
    assert refused_without_effect(ledger, transfer(10, MINT, 7)) == [
        R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER]
    assert refused_without_effect(ledger, transfer(11, 7, 8)) == [
        R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS]


def test_stored_rejection_is_answered_again_after_the_state_changed() -> None:
    """A refused transfer retried with the same fields gets the first answer, even once it
    would now pass; with other fields the id is ID_ALREADY_FAILED."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT), account(SHOP))
    assert ledger.one(transfer(10, WALLET, SHOP, 100)) is R.EXCEEDS_CREDITS
    assert ledger.one(transfer(11, MINT, WALLET, 1000)) is R.OK
    assert refused_without_effect(ledger, transfer(10, WALLET, SHOP, 100)) == [
        R.EXCEEDS_CREDITS]
    assert refused_without_effect(ledger, transfer(10, WALLET, SHOP, 99)) == [
        R.ID_ALREADY_FAILED]
    assert ledger.posted(WALLET) == (0, 1000)


# ----------------------------------------------------- balance flags and the cap
def test_no_overdraft_exact_balance_passes_one_fen_more_fails() -> None:
    """A no-overdraft wallet can spend exactly what it holds, not one fen more."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT), account(SHOP), fund=1000)
    assert refused_without_effect(ledger, transfer(10, WALLET, SHOP, 1001)) == [
        R.EXCEEDS_CREDITS]
    assert ledger.one(transfer(11, WALLET, SHOP, 1000)) is R.OK
    assert ledger.one(transfer(12, WALLET, SHOP, 1)) is R.EXCEEDS_CREDITS
    assert ledger.posted(WALLET) == (1000, 1000)


def test_no_overdraft_counts_pending_debits() -> None:
    """Money reserved by a pending transfer cannot be spent again."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT), account(SHOP), fund=1000)
    assert ledger.one(transfer(10, WALLET, SHOP, 600, flags=PENDING)) is R.OK
    assert ledger.one(transfer(11, WALLET, SHOP, 401)) is R.EXCEEDS_CREDITS
    assert ledger.one(transfer(12, WALLET, SHOP, 400)) is R.OK


def test_no_overdraft_does_not_count_pending_credits() -> None:
    """Money on its way in (pending credit) cannot be spent yet."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT), account(SHOP))
    assert ledger.one(transfer(10, MINT, WALLET, 500, flags=PENDING)) is R.OK
    assert ledger.one(transfer(11, WALLET, SHOP, 1)) is R.EXCEEDS_CREDITS
    assert ledger.one(post(12, 10)) is R.OK
    assert ledger.one(transfer(13, WALLET, SHOP, 500)) is R.OK


def test_credits_must_not_exceed_debits_boundary() -> None:
    """An account whose credits must not exceed its debits takes back exactly what it
    lent, not one fen more (EXCEEDS_DEBITS)."""
    ledger = ledger_with(account(OTHER, flags=NO_EXCESS_CREDIT), account(WALLET))
    assert ledger.one(transfer(10, OTHER, WALLET, 300)) is R.OK
    assert refused_without_effect(ledger, transfer(11, WALLET, OTHER, 301)) == [
        R.EXCEEDS_DEBITS]
    assert ledger.one(transfer(12, WALLET, OTHER, 300)) is R.OK
    assert ledger.one(transfer(13, WALLET, OTHER, 1)) is R.EXCEEDS_DEBITS


def test_balance_cap_exact_passes_one_fen_over_fails() -> None:
    """A wallet can be filled exactly to its cap; one fen over is EXCEEDS_BALANCE_CAP."""
    ledger = ledger_with(account(WALLET, balance_cap=100_000))
    assert refused_without_effect(ledger, transfer(10, amount=100_001)) == [
        R.EXCEEDS_BALANCE_CAP]
    assert ledger.one(transfer(11, amount=100_000)) is R.OK
    assert ledger.one(transfer(12, amount=1)) is R.EXCEEDS_BALANCE_CAP
    assert ledger.posted(WALLET) == (0, 100_000)


def test_balance_cap_counts_pending_credits_and_spending_makes_room() -> None:
    """Pending credits fill the cap; money spent frees it again."""
    ledger = ledger_with(account(WALLET, balance_cap=1000), account(SHOP))
    assert ledger.one(transfer(10, amount=400, flags=PENDING)) is R.OK
    assert ledger.one(transfer(11, amount=601)) is R.EXCEEDS_BALANCE_CAP
    assert ledger.one(transfer(12, amount=600)) is R.OK
    assert ledger.one(transfer(13, WALLET, SHOP, 250)) is R.OK
    assert ledger.one(transfer(14, amount=251)) is R.EXCEEDS_BALANCE_CAP
    assert ledger.one(transfer(15, amount=250)) is R.OK


def test_balance_cap_zero_refuses_any_credit() -> None:
    """A cap of 0 refuses even one fen."""
    ledger = ledger_with(account(WALLET, balance_cap=0))
    assert ledger.one(transfer(10, amount=1)) is R.EXCEEDS_BALANCE_CAP


def test_overflows_debits() -> None:
    """Debits that would reach 2**63 are OVERFLOWS_DEBITS, pending ones included."""
    ledger = ledger_with(account(WALLET), account(SHOP))
    assert ledger.one(transfer(10, MINT, WALLET, 2**62)) is R.OK
    assert ledger.one(transfer(11, MINT, SHOP, 2**62 - 1, flags=PENDING)) is R.OK
    assert refused_without_effect(ledger, transfer(12, MINT, SHOP, 1)) == [R.OVERFLOWS_DEBITS]


def test_overflows_credits() -> None:
    """Credits that would reach 2**63 are OVERFLOWS_CREDITS."""
    ledger = ledger_with(account(WALLET), account(SHOP))
    assert ledger.one(transfer(10, MINT, WALLET, 2**63 - 1)) is R.OK
    assert refused_without_effect(ledger, transfer(11, SHOP, WALLET, 1)) == [
        R.OVERFLOWS_CREDITS]


# ------------------------------------------------------------------- limits
def limited(**limits: int) -> Ledger:
    """A funded wallet with debit limits, paying a shop."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT, **limits), account(SHOP),
                         now=local(2025, 3, 10, 9, 0))
    assert ledger.one(transfer(1, MINT, WALLET, 10**7)) is R.OK
    return ledger


def pay(ledger: Ledger, transfer_id: int, amount: int, **fields: Any) -> R:
    return ledger.one(transfer(transfer_id, WALLET, SHOP, amount, **fields))


def test_single_limit_exact_passes_one_fen_over_fails() -> None:
    """One payment of exactly the single limit passes; one fen more is EXCEEDS_SINGLE_LIMIT."""
    ledger = limited(debit_limit_single=5000)
    assert refused_without_effect(ledger, transfer(10, WALLET, SHOP, 5001)) == [
        R.EXCEEDS_SINGLE_LIMIT]
    assert pay(ledger, 11, 5000) is R.OK
    assert pay(ledger, 12, 5000) is R.OK  # a limit per payment, not per day


def test_single_limit_applies_to_pending_transfers() -> None:
    """A reservation above the single limit is refused too."""
    ledger = limited(debit_limit_single=5000)
    assert pay(ledger, 10, 5001, flags=PENDING) is R.EXCEEDS_SINGLE_LIMIT
    assert pay(ledger, 11, 5000, flags=PENDING) is R.OK


def test_daily_limit_exact_passes_one_fen_over_fails() -> None:
    """Payments add up to exactly the daily limit; one fen more is EXCEEDS_DAILY_LIMIT."""
    ledger = limited(debit_limit_daily=10_000)
    assert pay(ledger, 10, 6000) is R.OK
    assert refused_without_effect(ledger, transfer(11, WALLET, SHOP, 4001)) == [
        R.EXCEEDS_DAILY_LIMIT]
    assert pay(ledger, 12, 4000) is R.OK
    assert ledger.balance(WALLET).debits_today == 10_000
    assert pay(ledger, 13, 1) is R.EXCEEDS_DAILY_LIMIT


def test_daily_usage_resets_at_local_midnight_in_shanghai() -> None:
    """At 23:59:59.999999999 the day's usage still counts; at 00:00:00 it starts over."""
    ledger = limited(debit_limit_daily=10_000)
    assert pay(ledger.at(local(2025, 3, 10, 23, 59, 59)), 10, 10_000) is R.OK
    assert pay(ledger.at(local(2025, 3, 10, 23, 59, 59, ns=NS - 1)), 11, 1) is (
        R.EXCEEDS_DAILY_LIMIT)
    ledger.at(local(2025, 3, 11))
    assert ledger.balance(WALLET).debits_today == 0
    assert pay(ledger, 12, 10_000) is R.OK
    assert pay(ledger, 13, 1) is R.EXCEEDS_DAILY_LIMIT


def test_daily_usage_does_not_reset_at_utc_midnight() -> None:
    """UTC midnight is 08:00 in Shanghai: the local day goes on."""
    ledger = limited(debit_limit_daily=10_000)
    ledger.at(local(2025, 3, 11, 7, 59, 59))
    assert pay(ledger, 10, 10_000) is R.OK
    assert pay(ledger.at(local(2025, 3, 11, 8, 0, 0)), 11, 1) is R.EXCEEDS_DAILY_LIMIT


def test_yearly_limit_exact_passes_one_fen_over_fails_across_days() -> None:
    """Usage adds up over the days of a year; exactly the limit passes, one fen more fails."""
    ledger = limited(debit_limit_yearly=30_000)
    assert pay(ledger.at(local(2025, 3, 10, 10)), 10, 20_000) is R.OK
    assert pay(ledger.at(local(2025, 7, 1, 10)), 11, 10_001) is R.EXCEEDS_YEARLY_LIMIT
    assert pay(ledger, 12, 10_000) is R.OK
    assert ledger.balance(WALLET).debits_this_year == 30_000
    assert pay(ledger.at(local(2025, 7, 2, 10)), 13, 1) is R.EXCEEDS_YEARLY_LIMIT


def test_yearly_usage_resets_at_local_new_year() -> None:
    """At 23:59:59.999999999 on 31 December the year's usage counts; at 00:00 on 1 January
    (16:00 UTC the day before) it starts over."""
    ledger = limited(debit_limit_yearly=30_000)
    assert pay(ledger.at(local(2025, 12, 31, 12)), 10, 30_000) is R.OK
    assert pay(ledger.at(local(2025, 12, 31, 23, 59, 59, ns=NS - 1)), 11, 1) is (
        R.EXCEEDS_YEARLY_LIMIT)
    ledger.at(local(2026, 1, 1))
    assert ledger.now == int(datetime(2025, 12, 31, 16, tzinfo=UTC).timestamp()) * NS
    assert ledger.balance(WALLET).debits_this_year == 0
    assert pay(ledger, 12, 30_000) is R.OK


def test_limits_are_checked_in_order_single_daily_yearly() -> None:
    """When several limits are broken the narrowest one is reported."""
    ledger = limited(debit_limit_single=100, debit_limit_daily=100, debit_limit_yearly=100)
    assert pay(ledger, 10, 101) is R.EXCEEDS_SINGLE_LIMIT
    assert pay(ledger, 11, 100) is R.OK
    assert pay(ledger, 12, 1) is R.EXCEEDS_DAILY_LIMIT
    assert pay(ledger.at(local(2025, 3, 11, 10)), 13, 1) is R.EXCEEDS_YEARLY_LIMIT


def test_zero_limit_refuses_any_debit() -> None:
    """A daily limit of 0 refuses even one fen."""
    ledger = limited(debit_limit_daily=0)
    assert pay(ledger, 10, 1) is R.EXCEEDS_DAILY_LIMIT


# -------------------------------------------------------- pending transfers
def test_pending_reserves_both_sides_and_counts_against_limits() -> None:
    """A pending transfer reserves its amount on both accounts and uses up limits."""
    ledger = limited(debit_limit_daily=10_000)
    assert pay(ledger, 10, 7000, flags=PENDING) is R.OK
    assert ledger.reserved(WALLET) == (7000, 0)
    assert ledger.reserved(SHOP) == (0, 7000)
    assert ledger.posted(SHOP) == (0, 0)
    assert ledger.balance(WALLET).debits_today == 7000
    assert pay(ledger, 11, 3001) is R.EXCEEDS_DAILY_LIMIT


@pytest.mark.parametrize("amount", [0, 7000])
def test_post_in_full(amount: int) -> None:
    """Posting with amount 0 or the full amount moves the whole reservation to posted."""
    ledger = limited(debit_limit_daily=10_000)
    assert pay(ledger, 10, 7000, flags=PENDING) is R.OK
    assert ledger.one(post(11, 10, amount)) is R.OK
    assert ledger.reserved(WALLET) == (0, 0)
    assert ledger.reserved(SHOP) == (0, 0)
    assert ledger.posted(SHOP) == (0, 7000)
    assert ledger.balance(WALLET).debits_today == 7000


def test_partial_post_refunds_the_rest_of_the_reservation() -> None:
    """Posting part of a reservation releases the rest, balance and limit usage alike."""
    ledger = limited(debit_limit_daily=10_000, debit_limit_yearly=50_000)
    assert pay(ledger, 10, 7000, flags=PENDING) is R.OK
    assert ledger.one(post(11, 10, 2500)) is R.OK
    assert ledger.reserved(WALLET) == (0, 0)
    assert ledger.posted(SHOP) == (0, 2500)
    assert ledger.posted(WALLET) == (2500, 10**7)
    b = ledger.balance(WALLET)
    assert (b.debits_today, b.debits_this_year) == (2500, 2500)
    assert pay(ledger, 12, 7501) is R.EXCEEDS_DAILY_LIMIT
    assert pay(ledger, 13, 7500) is R.OK


def test_post_with_explicit_fields_of_the_pending_transfer() -> None:
    """A post may repeat the pending transfer's accounts, ledger and code."""
    ledger = limited()
    assert pay(ledger, 10, 700, flags=PENDING, code=7) is R.OK
    assert ledger.one(post(11, 10, 700, debit=WALLET, credit=SHOP, ledger=LEDGER,
                           code=7)) is R.OK


def test_void_releases_the_reservation_and_gives_usage_back() -> None:
    """A voided pending transfer moves nothing and frees its daily and yearly usage."""
    ledger = limited(debit_limit_daily=10_000, debit_limit_yearly=10_000)
    assert pay(ledger, 10, 10_000, flags=PENDING) is R.OK
    assert pay(ledger, 11, 1) is R.EXCEEDS_DAILY_LIMIT
    assert ledger.one(void(12, 10)) is R.OK
    assert ledger.reserved(WALLET) == (0, 0)
    assert ledger.reserved(SHOP) == (0, 0)
    assert ledger.posted(SHOP) == (0, 0)
    b = ledger.balance(WALLET)
    assert (b.debits_today, b.debits_this_year) == (0, 0)
    assert pay(ledger, 13, 10_000) is R.OK


def test_void_with_the_full_amount() -> None:
    """A void may name the pending amount itself."""
    ledger = limited()
    assert pay(ledger, 10, 700, flags=PENDING) is R.OK
    assert ledger.one(void(11, 10, 700)) is R.OK


def test_pending_expires_exactly_at_its_timeout_and_gives_usage_back() -> None:
    """A pending transfer with a timeout still holds one nanosecond before it runs out and
    is released by the first batch at or after it; its usage comes back."""
    ledger = limited(debit_limit_daily=10_000)
    assert pay(ledger, 10, 10_000, flags=PENDING, timeout=60) is R.OK
    created = entry_timestamp(ledger.last_batch.entries[-1])
    expires_at = created + 60 * NS
    assert ledger.state.next_expiry() == expires_at
    ledger.at(expires_at - 1).tick()
    assert ledger.reserved(WALLET) == (10_000, 0)
    assert pay(ledger, 11, 1) is R.EXCEEDS_DAILY_LIMIT
    ledger.at(expires_at).tick()
    assert expired_ids(ledger.last_batch.entries) == [10]
    assert entry_timestamp(ledger.last_batch.entries[0]) == expires_at
    assert ledger.reserved(WALLET) == (0, 0)
    assert ledger.reserved(SHOP) == (0, 0)
    assert ledger.balance(WALLET).debits_today == 0
    assert ledger.state.next_expiry() is None
    assert pay(ledger, 12, 10_000) is R.OK


def test_pending_without_timeout_never_expires() -> None:
    """Timeout 0 means the reservation holds until posted or voided."""
    ledger = limited()
    assert pay(ledger, 10, 700, flags=PENDING) is R.OK
    assert ledger.state.next_expiry() is None
    ledger.later(seconds=400 * 86400).tick()
    assert ledger.reserved(WALLET) == (700, 0)
    assert ledger.one(post(11, 10)) is R.OK


def test_void_on_a_later_day_does_not_lower_that_days_usage() -> None:
    """A reservation counted on Monday, voided on Tuesday, leaves Tuesday's usage alone."""
    ledger = limited(debit_limit_daily=10_000)
    assert pay(ledger, 10, 6000, flags=PENDING) is R.OK
    ledger.at(local(2025, 3, 11, 9))
    assert pay(ledger, 11, 3000) is R.OK
    assert ledger.one(void(12, 10)) is R.OK
    assert ledger.balance(WALLET).debits_today == 3000
    assert pay(ledger, 13, 7001) is R.EXCEEDS_DAILY_LIMIT
    assert pay(ledger, 14, 7000) is R.OK


def test_expiry_on_a_later_day_gives_back_yearly_usage_only() -> None:
    """A reservation that expires the next day frees the year's usage, not the new day's."""
    ledger = limited(debit_limit_daily=10_000, debit_limit_yearly=12_000)
    assert pay(ledger.at(local(2025, 3, 10, 23, 59)), 10, 6000, flags=PENDING,
               timeout=120) is R.OK
    ledger.at(local(2025, 3, 11, 0, 0, 30))
    assert pay(ledger, 11, 4000) is R.OK
    ledger.at(local(2025, 3, 11, 0, 5)).tick()
    b = ledger.balance(WALLET)
    assert (b.debits_today, b.debits_this_year) == (4000, 4000)
    assert pay(ledger, 12, 6001) is R.EXCEEDS_DAILY_LIMIT
    assert pay(ledger, 13, 6000) is R.OK


# ------------------------------------------------------- resolving pendings
def pending_ledger() -> Ledger:
    ledger = limited()
    assert pay(ledger, 10, 700, flags=PENDING, code=7) is R.OK
    return ledger


@pytest.mark.parametrize(("resolution", "expected"), [
    (post(20, 99), R.PENDING_TRANSFER_NOT_FOUND),
    (void(20, 99), R.PENDING_TRANSFER_NOT_FOUND),
    (post(20, 1), R.PENDING_TRANSFER_NOT_PENDING),  # transfer 1 is a plain transfer
    (post(20, 10, debit=MINT), R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID),
    (post(20, 10, credit=OTHER), R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID),
    (post(20, 10, code=8), R.PENDING_TRANSFER_HAS_DIFFERENT_CODE),
    (post(20, 10, 701), R.EXCEEDS_PENDING_TRANSFER_AMOUNT),
    (void(20, 10, 699), R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT),
    (void(20, 10, 701), R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT),
])
def test_resolution_refused(resolution: Transfer, expected: R) -> None:
    """A post or void that does not match its pending transfer gets the precise code,
    leaves the reservation as it was, and keeps that answer on retry."""
    ledger = pending_ledger()
    assert refused_without_effect(ledger, resolution) == [expected]
    assert ledger.one(resolution) is expected
    assert ledger.one(post(21, 10)) is R.OK


def test_post_of_a_post_is_not_pending() -> None:
    """A post or void is itself not a pending transfer."""
    ledger = pending_ledger()
    assert ledger.one(post(11, 10, 300)) is R.OK
    assert ledger.one(void(12, 11)) is R.PENDING_TRANSFER_NOT_PENDING


@pytest.mark.parametrize(("first", "second", "expected"), [
    (post(11, 10), post(12, 10), R.PENDING_TRANSFER_ALREADY_POSTED),
    (post(11, 10, 300), void(12, 10), R.PENDING_TRANSFER_ALREADY_POSTED),
    (void(11, 10), post(12, 10), R.PENDING_TRANSFER_ALREADY_VOIDED),
    (void(11, 10), void(12, 10), R.PENDING_TRANSFER_ALREADY_VOIDED),
])
def test_pending_is_resolved_once(first: Transfer, second: Transfer, expected: R) -> None:
    """A second post or void of the same pending transfer (another id) is refused."""
    ledger = pending_ledger()
    assert ledger.one(first) is R.OK
    assert refused_without_effect(ledger, second) == [expected]


def test_resolving_an_expired_pending_is_refused() -> None:
    """After its timeout a pending transfer can be neither posted nor voided."""
    ledger = limited()
    assert pay(ledger, 10, 700, flags=PENDING, timeout=1) is R.OK
    ledger.later(seconds=2).tick()
    assert refused_without_effect(ledger, post(11, 10)) == [R.PENDING_TRANSFER_EXPIRED]
    assert refused_without_effect(ledger, void(12, 10)) == [R.PENDING_TRANSFER_EXPIRED]


def test_post_retried_is_exists() -> None:
    """A retried post answers EXISTS, whether it spells the pending's fields out or not."""
    ledger = pending_ledger()
    assert ledger.one(post(11, 10)) is R.OK
    assert refused_without_effect(ledger, post(11, 10)) == [R.EXISTS]
    assert refused_without_effect(ledger, post(11, 10, 700, debit=WALLET, credit=SHOP,
                                               ledger=LEDGER, code=7)) == [R.EXISTS]
    assert refused_without_effect(ledger, post(11, 10, 300)) == [
        R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert refused_without_effect(ledger, void(11, 10)) == [R.EXISTS_WITH_DIFFERENT_FIELDS]


# ------------------------------------------------------------ linked chains
def test_linked_chain_succeeds_together() -> None:
    """All members of a chain that can pass are applied."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT), account(SHOP))
    assert ledger.submit(transfer(10, MINT, WALLET, 500, flags=LINKED),
                         transfer(11, WALLET, SHOP, 500)) == [R.OK, R.OK]
    assert ledger.posted(SHOP) == (0, 500)


def test_chain_failing_in_the_middle_applies_nothing() -> None:
    """One failing member undoes the whole chain; only its own rejection is stored."""
    ledger = ledger_with(account(WALLET, flags=NO_OVERDRAFT), account(SHOP))
    chain = [transfer(10, MINT, WALLET, 500, flags=LINKED),
             transfer(11, WALLET, SHOP, 501, flags=LINKED),
             transfer(12, MINT, SHOP, 5)]
    assert refused_without_effect(ledger, *chain) == [
        R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS, R.LINKED_EVENT_FAILED]
    # The others were never applied, so their ids are free; the failing one is stored.
    assert ledger.one(msgspec.structs.replace(chain[0], flags=0)) is R.OK
    assert ledger.one(chain[2]) is R.OK
    assert ledger.submit(chain[1], transfer(13)) == [R.EXCEEDS_CREDITS, R.LINKED_EVENT_FAILED]


def test_chain_with_a_malformed_member_stores_nothing() -> None:
    """A field error inside a chain fails the chain and is not stored."""
    ledger = ledger_with(account(WALLET))
    assert refused_without_effect(ledger, transfer(10, flags=LINKED),
                                  transfer(11, amount=0, flags=LINKED),
                                  transfer(12)) == [
        R.LINKED_EVENT_FAILED, R.AMOUNT_MUST_NOT_BE_ZERO, R.LINKED_EVENT_FAILED]
    assert ledger.submit(transfer(10), transfer(11), transfer(12)) == [R.OK] * 3


def test_chain_left_open_at_the_end_of_a_request_applies_nothing() -> None:
    """A request whose last transfer is linked leaves its chain open: nothing applies."""
    ledger = ledger_with(account(WALLET))
    assert refused_without_effect(ledger, transfer(10, flags=LINKED),
                                  transfer(11, flags=LINKED)) == [
        R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]
    assert refused_without_effect(ledger, transfer(12, flags=LINKED)) == [
        R.LINKED_EVENT_CHAIN_OPEN]
    # Nothing was stored: the same ids pass once the chain is closed.
    assert ledger.submit(transfer(10, flags=LINKED), transfer(11)) == [R.OK, R.OK]


def test_open_chain_after_independent_transfers_spares_them() -> None:
    """Transfers before an open chain in the same request are applied on their own."""
    ledger = ledger_with(account(WALLET))
    assert ledger.submit(transfer(9), transfer(10, flags=LINKED),
                         transfer(11, flags=LINKED)) == [
        R.OK, R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]
    assert ledger.posted(WALLET) == (0, 100)


def test_failed_chain_restores_a_pending_it_posted() -> None:
    """A post undone with its chain leaves the pending transfer open and postable."""
    ledger = pending_ledger()
    assert refused_without_effect(ledger, post(11, 10, flags=LINKED),
                                  transfer(12, WALLET, 9, 1)) == [
        R.LINKED_EVENT_FAILED, R.CREDIT_ACCOUNT_NOT_FOUND]
    assert ledger.reserved(WALLET) == (700, 0)
    assert ledger.one(post(13, 10)) is R.OK
    assert ledger.posted(SHOP) == (0, 700)


def test_chain_can_create_and_post_a_pending() -> None:
    """A chain may reserve and post in one go."""
    ledger = limited()
    assert ledger.submit(transfer(10, WALLET, SHOP, 300, flags=LINKED | PENDING),
                         post(11, 10)) == [R.OK, R.OK]
    assert ledger.posted(SHOP) == (0, 300)
    assert ledger.reserved(WALLET) == (0, 0)


def test_whole_chain_retried_is_exists() -> None:
    """Retrying a committed chain answers EXISTS for every member and applies nothing."""
    ledger = ledger_with(account(WALLET))
    chain = [transfer(10, flags=LINKED), transfer(11, flags=LINKED), transfer(12)]
    assert ledger.submit(*chain) == [R.OK] * 3
    assert refused_without_effect(ledger, *chain) == [R.EXISTS] * 3


# ------------------------------------------------------------- timestamps
def test_entry_timestamps_increase_and_are_not_before_the_batch() -> None:
    """Block entries carry strictly increasing timestamps, never before their batch's time."""
    ledger = ledger_with(account(WALLET))
    ledger.submit(*(transfer(10 + i) for i in range(5)))
    ledger.submit(transfer(20, flags=PENDING, timeout=1))
    ledger.later(seconds=2).tick()
    stamps = [entry_timestamp(e) for e in ledger.entries]
    assert stamps == sorted(set(stamps))
    assert stamps[0] >= T0


# ---------------------------------------------------------- bugs found here
def test_post_reusing_a_committed_id_without_a_pending_is_exists_with_different_fields() -> None:
    """A committed transfer's id reused by a post of an unknown pending must not turn the
    id into a failure: the reuse is EXISTS_WITH_DIFFERENT_FIELDS, the original's retry
    still EXISTS."""
    ledger = ledger_with(account(WALLET))
    assert ledger.one(transfer(10)) is R.OK
    assert ledger.one(post(10, 99)) is R.EXISTS_WITH_DIFFERENT_FIELDS
    assert ledger.last_batch.failures == []
    assert ledger.one(transfer(10)) is R.EXISTS


@pytest.mark.parametrize("changed", [
    {"amount": 1 + (2**61 - 1)},
    {"user_data": 2**61 - 1},
    {"credit": WALLET + (2**61 - 1)},
])
def test_reused_id_with_a_field_larger_by_2_61_minus_1_is_another_transfer(
        changed: dict[str, Any]) -> None:
    """Fields that differ are different, even when Python's hash() of them is equal."""
    ledger = ledger_with(account(WALLET))
    assert ledger.one(transfer(10, amount=1)) is R.OK
    fields = {"amount": 1, **changed}
    assert ledger.one(transfer(10, **fields)) is R.EXISTS_WITH_DIFFERENT_FIELDS


def test_failed_chain_with_a_timed_pending_leaves_nothing_to_expire() -> None:
    """A timed pending transfer undone with its chain must not be waited for or expired."""
    ledger = ledger_with(account(WALLET))
    assert ledger.submit(transfer(10, flags=LINKED | PENDING, timeout=1),
                         transfer(11, amount=0)) == [
        R.LINKED_EVENT_FAILED, R.AMOUNT_MUST_NOT_BE_ZERO]
    assert ledger.state.next_expiry() is None
    ledger.later(seconds=2).tick()
    assert expired_ids(ledger.last_batch.entries) == []


def test_pending_resubmitted_after_a_failed_chain_runs_its_own_timeout() -> None:
    """A pending transfer that failed with its chain and was submitted again later expires
    at its own timeout, not at the undone one's."""
    ledger = ledger_with(account(WALLET))
    assert ledger.submit(transfer(10, flags=LINKED | PENDING, timeout=10),
                         transfer(11, MINT, 9, 1)) == [
        R.LINKED_EVENT_FAILED, R.CREDIT_ACCOUNT_NOT_FOUND]
    assert ledger.later(seconds=5).one(transfer(10, flags=PENDING, timeout=10)) is R.OK
    ledger.later(seconds=6).tick()  # 11 s after the undone one, 6 s after this one
    assert expired_ids(ledger.last_batch.entries) == []
    assert ledger.reserved(WALLET) == (0, 100)


def test_rejection_timestamps_are_unique_within_the_ledger() -> None:
    """The stored rejection of a failed chain keeps a timestamp no later event reuses
    (migrations/0001_ledger.sql: timestamps are unique within a ledger)."""
    ledger = ledger_with(account(WALLET))
    ledger.at(T0 + NS)
    batch = ledger.state.begin(ledger.now)
    results = ledger.state.create_transfers(batch, [
        transfer(10, flags=LINKED), transfer(11, MINT, 9, 1),
        transfer(12), transfer(13), transfer(14)])
    ledger.state.finish(batch)
    assert results == [R.LINKED_EVENT_FAILED, R.CREDIT_ACCOUNT_NOT_FOUND, R.OK, R.OK, R.OK]
    # The rows the store writes to rejected_transfers; column 10 is the timestamp.
    rejected_at = {row[10] for row in batch.failures}
    assert not rejected_at & {entry_timestamp(e) for e in batch.entries}
