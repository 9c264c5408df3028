"""Values of the ledger: accounts, transfers, their flags and result codes.

Amounts are integer fen. Ids are unsigned 128-bit integers chosen by the client
(`cbdc.ids.new_id`). Names and numbering follow TigerBeetle where it has the concept.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum, IntFlag

import msgspec

AMOUNT_LIMIT = 1 << 63  # amounts and balances fit PostgreSQL's bigint
U32_LIMIT = 1 << 32
U16_LIMIT = 1 << 16


class AccountFlags(IntFlag):
    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    # No new debits or credits (a frozen or lost wallet); pending transfers may still be
    # voided or expire, releasing what they hold.
    FROZEN = 1 << 5


ACCOUNT_FLAGS_KNOWN = int(
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.FROZEN
)


class TransferFlags(IntFlag):
    NONE = 0
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3


TRANSFER_FLAGS_KNOWN = int(
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
)


class Account(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """An account as a client creates it. `None` means no cap or no limit.

    `balance_cap` bounds the credit balance (credits posted + pending - debits posted);
    the three limits bound the account's debits: one transfer, one calendar day and one
    calendar year in the ledger's time zone.
    """

    id: int
    ledger: int
    code: int
    flags: int = 0
    user_data: int = 0
    balance_cap: int | None = None
    debit_limit_single: int | None = None
    debit_limit_daily: int | None = None
    debit_limit_yearly: int | None = None


class Transfer(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A transfer as a client submits it.

    For post_pending / void_pending transfers, `debit_account_id`, `credit_account_id`,
    `ledger` and `code` may be 0 (taken from the pending transfer) and `amount` 0 means
    the full pending amount. `timeout` (seconds) applies to pending transfers only.
    """

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: int
    code: int
    flags: int = 0
    pending_id: int = 0
    timeout: int = 0
    user_data: int = 0


class CreateAccountResult(IntEnum):
    OK = 0
    LINKED_EVENT_FAILED = 1
    ID_MUST_NOT_BE_ZERO = 2
    ID_INVALID = 3
    FLAGS_INVALID = 4
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 5
    LEDGER_INVALID = 6
    CODE_INVALID = 7
    USER_DATA_INVALID = 8
    BALANCE_CAP_INVALID = 9
    DEBIT_LIMIT_INVALID = 10
    EXISTS_WITH_DIFFERENT_FIELDS = 20
    EXISTS = 21
    LEDGER_NOT_SERVED = 22


class UpdateAccountResult(IntEnum):
    """Result of changing an account's flags, cap or limits (its ledger and code stay)."""

    OK = 0
    ID_INVALID = 3
    FLAGS_INVALID = 4
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 5
    USER_DATA_INVALID = 8
    BALANCE_CAP_INVALID = 9
    DEBIT_LIMIT_INVALID = 10
    ACCOUNT_NOT_FOUND = 30
    LEDGER_MUST_NOT_CHANGE = 31
    CODE_MUST_NOT_CHANGE = 32


class CreateTransferResult(IntEnum):
    OK = 0
    LINKED_EVENT_FAILED = 1
    LINKED_EVENT_CHAIN_OPEN = 2
    # Field validation: decided from the transfer alone, never stored.
    ID_MUST_NOT_BE_ZERO = 3
    ID_INVALID = 4
    FLAGS_INVALID = 5
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 6
    DEBIT_ACCOUNT_ID_INVALID = 7
    CREDIT_ACCOUNT_ID_INVALID = 8
    ACCOUNTS_MUST_BE_DIFFERENT = 9
    PENDING_ID_MUST_BE_ZERO = 10
    PENDING_ID_MUST_NOT_BE_ZERO = 11
    PENDING_ID_INVALID = 12
    PENDING_ID_MUST_BE_DIFFERENT = 13
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = 14
    TIMEOUT_INVALID = 15
    AMOUNT_MUST_NOT_BE_ZERO = 16
    AMOUNT_INVALID = 17
    LEDGER_INVALID = 18
    CODE_INVALID = 19
    USER_DATA_INVALID = 20
    LEDGER_NOT_SERVED = 21
    # Idempotency.
    EXISTS_WITH_DIFFERENT_FIELDS = 30
    ID_ALREADY_FAILED = 31
    EXISTS = 32
    # State: decided against the ledger, stored so a retry gets the same answer.
    DEBIT_ACCOUNT_NOT_FOUND = 40
    CREDIT_ACCOUNT_NOT_FOUND = 41
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = 42
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = 43
    PENDING_TRANSFER_NOT_FOUND = 44
    PENDING_TRANSFER_NOT_PENDING = 45
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = 46
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = 47
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = 48
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = 49
    EXCEEDS_PENDING_TRANSFER_AMOUNT = 50
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = 51
    PENDING_TRANSFER_ALREADY_POSTED = 52
    PENDING_TRANSFER_ALREADY_VOIDED = 53
    PENDING_TRANSFER_EXPIRED = 54
    OVERFLOWS_DEBITS = 55
    OVERFLOWS_CREDITS = 56
    EXCEEDS_CREDITS = 57
    EXCEEDS_DEBITS = 58
    EXCEEDS_BALANCE_CAP = 59
    EXCEEDS_SINGLE_LIMIT = 60
    EXCEEDS_DAILY_LIMIT = 61
    EXCEEDS_YEARLY_LIMIT = 62
    DEBIT_ACCOUNT_FROZEN = 63
    CREDIT_ACCOUNT_FROZEN = 64


# Codes at or above this are decided against ledger state and are stored.
FIRST_STATE_RESULT = CreateTransferResult.DEBIT_ACCOUNT_NOT_FOUND


def transfer_succeeded(result: CreateTransferResult) -> bool:
    """OK and EXISTS both mean the transfer is in the ledger."""
    return result is CreateTransferResult.OK or result is CreateTransferResult.EXISTS


def first_failure(results: Sequence[CreateTransferResult]) -> CreateTransferResult | None:
    """Why a request (a linked chain, say) failed: its first result that is neither a
    success nor the mere echo of another member's failure; None when all succeeded."""
    echo = CreateTransferResult.LINKED_EVENT_FAILED
    for result in results:
        if not transfer_succeeded(result) and result is not echo:
            return result
    return None


class AccountBalance(msgspec.Struct, frozen=True, kw_only=True):
    """An account's definition and balances as of its last committed batch."""

    account: Account
    debits_posted: int
    debits_pending: int
    credits_posted: int
    credits_pending: int
    timestamp: int
    day: int
    debits_today: int
    year: int
    debits_this_year: int

    @property
    def credit_balance(self) -> int:
        return self.credits_posted - self.debits_posted


class TransferRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A transfer as the ledger stored it (post/void transfers with fields resolved)."""

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: int
    code: int
    flags: int
    pending_id: int
    timeout: int
    user_data: int
    timestamp: int
    block_height: int
