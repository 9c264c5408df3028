"""Receipts a wallet checks itself: proof that one of its payments is in a signed block.

    GET /v1/wallets/{address}/receipts/{id}        (session of that wallet)
     -> 200 {"id", "amount", "bank": "<code>", "bank_receipt": Receipt,
             "central_bank_receipt": Receipt | null, "central_bank_note": str | null}
    GET /v1/ledger-keys                            (anyone)
     -> 200 {"bank": "<code>", "bank_key_pem": PEM, "central_bank_key_pem": PEM | null}

`bank_receipt` proves the entry is in a block of this bank's ledger (signed by the bank's
ledger key). A payment between banks is also a transfer at the central bank, under the
same id: `central_bank_receipt` proves it is in a block of the ledger of record, signed by
the central bank's key, which the central bank publishes at its `GET /v1/ledger-key` and
this bank passes on. A payment within one bank never reaches the central bank: its
central receipt is null and `central_bank_note` says why (also when the central bank has
not settled it yet, or cannot be reached). Receipts are `cbdc.receipts.Receipt.to_json()`;
a wallet checks them with `cbdc.receipts.verify_transfer_receipt`.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from cbdc.bank_client import CentralBankError, CentralBankUnreachable
from cbdc.problems import json_response, not_found, validation
from commercial_bank import accounts as chart
from commercial_bank.handlers import session_wallet
from commercial_bank.keys import BANK
from commercial_bank.service import Bank
from commercial_bank.wallets import Wallet

__all__ = ["ledger_keys", "receipt", "wallet_receipts"]

_INTERBANK_CODES = (chart.OUTGOING, chart.INCOMING)


async def wallet_receipts(bank: Bank, wallet: Wallet, transfer_id: int) -> dict[str, Any]:
    """The receipts of one entry of `wallet`'s history (404 if it is not one)."""
    account = chart.wallet_id(bank.code, wallet.number)
    [record] = await bank.ledger.lookup_transfers([transfer_id])
    text_id = str(uuid.UUID(int=transfer_id))
    if record is None or account not in (record.debit_account_id, record.credit_account_id):
        raise not_found(f"no payment {text_id} in this wallet's history")
    own = await bank.ledger.receipt(transfer_id)
    if own is None:
        raise not_found(f"no receipt for {text_id} yet")
    central, note = None, None
    if record.code not in _INTERBANK_CODES:
        note = "a payment within this bank, not settled at the central bank"
    else:
        try:
            central = (await bank.central_bank.receipt(transfer_id))["receipt"]
        except CentralBankUnreachable:
            note = "the central bank cannot be reached right now; try again shortly"
        except CentralBankError as exc:
            note = ("not settled at the central bank yet" if exc.status == 404
                    else f"the central bank refused: {exc.problem.get('detail', exc)}")
    return {"id": text_id, "amount": record.amount, "bank": bank.code,
            "bank_receipt": own.to_json(), "central_bank_receipt": central,
            "central_bank_note": note}


async def receipt(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    try:
        transfer_id = uuid.UUID(request.match_info["id"]).int
    except ValueError:
        raise validation("id", "uuid", "the payment id is a UUID from the history") from None
    return json_response(await wallet_receipts(request.app[BANK], wallet, transfer_id))


async def ledger_keys(request: web.Request) -> web.StreamResponse:
    """This bank's ledger key, and the central bank's as the central bank publishes it
    (null while the central bank cannot be reached)."""
    bank = request.app[BANK]
    try:
        central: str | None = str((await bank.central_bank.ledger_key())["public_key_pem"])
    except (CentralBankUnreachable, CentralBankError):
        central = None
    return json_response({"bank": bank.code,
                          "bank_key_pem": bank.ledger.key.public.to_pem().decode("ascii"),
                          "central_bank_key_pem": central})
