"""Checking a payment's receipts here, in the wallet, with the published ledger keys.

A receipt is believed only when `cbdc.receipts.verify_transfer_receipt` passes: the entry
is this payment (id and amount), its Merkle proof leads to the block's root, and the
block's signature verifies with the ledger key. The bank's receipt is checked with the
bank's ledger key; a payment between banks also has the central bank's receipt, checked
with the key the central bank publishes. Anything else is shown as not verified, with
the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cbdc.receipts import Receipt, verify_transfer_receipt
from cbdc.signing import VerifyingKey


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    bank_line: str
    central_line: str
    bank_verified: bool
    central_verified: bool | None  # None: no central bank receipt to check

    @property
    def lines(self) -> list[str]:
        return [self.bank_line, self.central_line]


def _check(data: Any, pem: str | None, transfer_id: int, amount: int) -> tuple[bool, str]:
    """(verified, how it went) for one receipt in its JSON form."""
    if not pem:
        return False, "NOT verified: the ledger key is not published right now"
    try:
        receipt = Receipt.from_json(data)
        key = VerifyingKey.from_pem(pem.encode("ascii"))
    except (KeyError, TypeError, ValueError) as exc:
        return False, f"NOT verified: the receipt cannot be read ({exc})"
    problem = verify_transfer_receipt(receipt, key, transfer_id, amount)
    if problem is not None:
        return False, f"NOT verified: {problem}"
    return True, (f"verified: block {receipt.header.height}, leaf {receipt.proof.index + 1} "
                  f"of {receipt.proof.size}")


def judge(receipts: dict[str, Any], keys: dict[str, Any], entry_id: str,
          amount: int) -> ReceiptCheck:
    """Check the bank's answer to GET /v1/wallets/{address}/receipts/{id} against the keys
    of GET /v1/ledger-keys, for the payment the history showed (`entry_id`, `amount`)."""
    transfer_id = uuid.UUID(entry_id).int
    bank = str(keys.get("bank", "the bank"))
    bank_ok, bank_how = _check(receipts.get("bank_receipt"), keys.get("bank_key_pem"),
                               transfer_id, amount)
    central = receipts.get("central_bank_receipt")
    if central is None:
        note = receipts.get("central_bank_note") or "no central bank receipt"
        return ReceiptCheck(f"{bank} ledger: {bank_how}", f"Central bank: {note}.",
                            bank_ok, None)
    central_ok, central_how = _check(central, keys.get("central_bank_key_pem"), transfer_id,
                                     amount)
    return ReceiptCheck(f"{bank} ledger: {bank_how}",
                        f"Central bank (published key): {central_how}", bank_ok, central_ok)
