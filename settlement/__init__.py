"""The settlement engine: double-entry ledgers with TigerBeetle's semantics on PostgreSQL."""

from settlement.core.types import (
    Account,
    AccountBalance,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
    TransferRecord,
    UpdateAccountResult,
    first_failure,
    transfer_succeeded,
)
from settlement.engine import Engine
from settlement.writer import LedgerWriter

__all__ = [
    "Account",
    "AccountBalance",
    "AccountFlags",
    "CreateAccountResult",
    "CreateTransferResult",
    "Engine",
    "LedgerWriter",
    "Transfer",
    "TransferFlags",
    "TransferRecord",
    "UpdateAccountResult",
    "first_failure",
    "transfer_succeeded",
]
