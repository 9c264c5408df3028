"""What the central bank does, on its settlement ledger: fund reserves, issue and redeem
e-CNY one to one against reserves, settle interbank transfers, and report on them.

Handlers call these; nothing here knows about HTTP beyond raising problem errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from hashlib import sha256
from typing import Any

import msgspec

from cbdc import wire
from cbdc.problems import conflict, not_found, rejected
from cbdc.problems import transfer_id as checked_id
from central_bank import accounts as chart
from central_bank.operators import OperatorBank, OperatorRegistry
from central_bank.request_log import Claim
from settlement import (
    CreateAccountResult,
    CreateTransferResult,
    LedgerWriter,
    TransferRecord,
    first_failure,
)

R = CreateTransferResult
_SUCCESS = (R.OK, R.EXISTS)
EVENTS_PAGE = 500


class TransferNote(msgspec.Struct, array_like=True):
    """What the ledger keeps beside an interbank transfer; its hash is the transfer's
    user_data, so the signed block commits to it."""

    payer_ref: str
    payee_ref: str
    memo_ref: str | None


_encode_note = msgspec.msgpack.Encoder().encode
_decode_note = msgspec.msgpack.Decoder(TransferNote).decode


def note_hash(note: bytes) -> int:
    return int.from_bytes(sha256(note).digest()[:16], "big")


_REASONS = {
    R.EXCEEDS_CREDITS: "the balance does not cover the amount",
    R.EXISTS_WITH_DIFFERENT_FIELDS: "this id was already used for a different transfer",
    R.ID_ALREADY_FAILED: "this id was already used for a transfer that was rejected",
    R.OVERFLOWS_CREDITS: "the amount would overflow the receiving balance",
    R.OVERFLOWS_DEBITS: "the amount would overflow the paying balance",
}


def describe(code: CreateTransferResult, what: str) -> str:
    if code is R.EXCEEDS_CREDITS:
        return f"{what} does not cover the amount"
    return _REASONS.get(code, code.name.lower().replace("_", " "))


class CentralBank:
    def __init__(self, ledger: LedgerWriter, registry: OperatorRegistry) -> None:
        self.ledger = ledger
        self.registry = registry
        self.closing = asyncio.Event()  # set at shutdown: long polls answer at once

    async def open_books(self) -> None:
        """Create the system accounts and every registered operator's accounts."""
        wanted = chart.system_accounts()
        for bank in self.registry.all():
            wanted.extend(chart.operator_accounts(bank.code))
        for start in range(0, len(wanted), 8000):
            results = await self.ledger.create_accounts(wanted[start:start + 8000])
            bad = [r for r in results if r not in (CreateAccountResult.OK,
                                                   CreateAccountResult.EXISTS)]
            if bad:
                raise RuntimeError(f"cannot open the central bank's accounts: {bad[0].name}")

    async def register(self, code: str, name: str, key_id: str, pem: str) -> OperatorBank:
        bank = await self.registry.register(code, name, key_id, pem)
        await self.ledger.create_accounts(chart.operator_accounts(code))
        return bank

    # ------------------------------------------------------------ money moves
    async def _create(self, transfers: list[Any], notes: Sequence[bytes | None] | None,
                      claim: Claim | None) -> list[CreateTransferResult]:
        """The ledger's results; the request's claim, if any, is written in the same
        transaction as the batch that decided them."""
        results = await self.ledger.create_transfers(transfers, notes, attachment=claim)
        if claim is not None:
            claim.written = True
        return results

    async def _settle(self, transfers: list[Any], what: str, transfer_id: int,
                      notes: list[bytes | None] | None = None, claim: Claim | None = None
                      ) -> wire.TransferResult:
        results = await self._create(transfers, notes, claim)
        failure = first_failure(results)
        if failure is None:
            return wire.TransferResult(id=wire.id_to_text(transfer_id), status="settled")
        if failure in (R.EXISTS_WITH_DIFFERENT_FIELDS, R.ID_ALREADY_FAILED):
            problem = conflict(describe(failure, what))
            problem.code = failure.name.lower()
            raise problem
        raise rejected(failure.name.lower(), describe(failure, what),
                       field="amount" if failure is R.EXCEEDS_CREDITS else None)

    async def fund_reserves(self, bank: str, transfer_id: int, amount: int
                            ) -> wire.TransferResult:
        self.registry.require(bank)
        return await self._settle(chart.funding(transfer_id, bank, amount),
                                  "the RTGS funding", transfer_id)

    async def issue(self, bank: str, transfer_id: int, amount: int,
                    claim: Claim | None = None) -> wire.TransferResult:
        return await self._settle(chart.issuance(transfer_id, bank, amount),
                                  f"{bank}'s reserve account", transfer_id, claim=claim)

    async def redeem(self, bank: str, transfer_id: int, amount: int,
                     claim: Claim | None = None) -> wire.TransferResult:
        return await self._settle(chart.redemption(transfer_id, bank, amount),
                                  f"{bank}'s e-CNY position", transfer_id, claim=claim)

    def _payee_problem(self, payer: str, payee: str) -> tuple[str, str] | None:
        bank = self.registry.get(payee)
        if bank is None:
            return "payee_bank_unknown", f"no operator bank with code {payee}"
        if bank.status != "active":
            return "payee_bank_suspended", f"operator bank {payee} is suspended"
        if payee == payer:
            return "payee_is_payer", "an interbank transfer needs two different banks"
        return None

    async def transfer(self, payer: str, item: wire.InterbankTransfer,
                       claim: Claim | None = None) -> wire.TransferResult:
        problem = self._payee_problem(payer, item.payee_bank)
        if problem is not None:
            raise rejected(problem[0], problem[1], field="payee_bank")
        transfer_id = checked_id(item.id, "$.id")
        note = _encode_note(TransferNote(item.payer_ref, item.payee_ref, item.memo_ref))
        return await self._settle(
            [chart.interbank(transfer_id, payer, item.payee_bank, item.amount, note_hash(note))],
            f"{payer}'s e-CNY position", transfer_id, [note], claim)

    async def transfer_batch(self, payer: str, items: Sequence[wire.TransferItem],
                             claim: Claim | None = None) -> wire.BatchResult:
        results: list[wire.TransferResult | None] = [None] * len(items)
        transfers, notes, positions = [], [], []
        for index, item in enumerate(items):
            problem = self._payee_problem(payer, item.payee_bank)
            if problem is not None:
                results[index] = wire.TransferResult(id=item.id, status="rejected",
                                                     code=problem[0], detail=problem[1])
                continue
            transfer_id = wire.id_from_text(item.id, allow_zero=True)
            if transfer_id == 0:
                results[index] = wire.TransferResult(
                    id=item.id, status="rejected", code="id_must_not_be_zero",
                    detail="the nil UUID is not an id")
                continue
            note = _encode_note(TransferNote(item.payer_ref, item.payee_ref, item.memo_ref))
            transfers.append(chart.interbank(transfer_id, payer, item.payee_bank, item.amount,
                                             note_hash(note)))
            notes.append(note)
            positions.append(index)
        if transfers:
            outcomes = await self._create(transfers, notes, claim)
            for index, outcome in zip(positions, outcomes, strict=True):
                item = items[index]
                if outcome in _SUCCESS:
                    results[index] = wire.TransferResult(id=item.id, status="settled")
                else:
                    results[index] = wire.TransferResult(
                        id=item.id, status="rejected", code=outcome.name.lower(),
                        detail=describe(outcome, f"{payer}'s e-CNY position"))
        final = [r for r in results if r is not None]
        settled = sum(r.status == "settled" for r in final)
        return wire.BatchResult(results=final, settled=settled, rejected=len(final) - settled)

    # ---------------------------------------------------------------- reading
    def view(self, record: TransferRecord, note: bytes | None) -> wire.TransferView:
        code = record.code
        if code in (chart.ISSUE_RESERVES, chart.REDEEM_RESERVES, chart.FUNDING):
            account = (record.debit_account_id if code == chart.ISSUE_RESERVES
                       else record.credit_account_id)
            payer = self.registry.bank_of_account(account) if code == chart.ISSUE_RESERVES \
                else None
            payee = None if code == chart.ISSUE_RESERVES else self.registry.bank_of_account(
                account)
        else:
            payer = self.registry.bank_of_account(record.debit_account_id)
            payee = self.registry.bank_of_account(record.credit_account_id)
        decoded = _decode_note(note) if note else None
        return wire.TransferView(
            id=wire.id_to_text(record.id),
            kind=chart.TRANSFER_KINDS.get(code, "other"),  # type: ignore[arg-type]
            payer_bank=payer,
            payee_bank=payee,
            amount=record.amount,
            timestamp=record.timestamp,
            block=record.block_height,
            payer_ref=decoded.payer_ref if decoded else None,
            payee_ref=decoded.payee_ref if decoded else None,
            memo_ref=decoded.memo_ref if decoded else None,
        )

    async def views(self, records: Sequence[TransferRecord]) -> list[wire.TransferView]:
        notes = await self.ledger.lookup_notes([r.id for r in records]) if records else {}
        return [self.view(r, notes.get(r.id)) for r in records]

    def involves(self, bank: str, record: TransferRecord) -> bool:
        mine = (chart.reserve_id(bank), chart.position_id(bank))
        return record.debit_account_id in mine or record.credit_account_id in mine

    async def transfer_view(self, bank: str, transfer_id: int) -> wire.TransferView:
        [record] = await self.ledger.lookup_transfers([transfer_id])
        if record is None or not self.involves(bank, record):
            raise not_found(f"no transfer {wire.id_to_text(transfer_id)} involving {bank}")
        [view] = await self.views([record])
        return view

    async def receipt(self, bank: str, transfer_id: int) -> dict[str, Any]:
        view = await self.transfer_view(bank, transfer_id)
        receipt = await self.ledger.receipt(transfer_id)
        if receipt is None:
            raise not_found(f"no receipt for transfer {view.id}")
        return {"transfer": msgspec.to_builtins(view), "receipt": receipt.to_json()}

    async def positions(self, bank: str) -> wire.Positions:
        reserve, position = await self.ledger.lookup_accounts(
            [chart.reserve_id(bank), chart.position_id(bank)])
        return wire.Positions(
            bank=bank,
            reserves=reserve.credit_balance if reserve else 0,
            ecny=position.credit_balance if position else 0,
        )

    async def statement(self, bank: str, after: int, limit: int) -> wire.Statement:
        records = await self.ledger.account_history(
            chart.position_id(bank), after_timestamp=after, limit=limit)
        entries = await self.views(records)
        next_after = str(records[-1].timestamp) if len(records) == limit else None
        return wire.Statement(bank=bank, entries=entries, next_after=next_after)

    async def events(self, bank: str, after: int, wait: float) -> wire.Events:
        """Interbank credits to `bank` after the cursor, waiting up to `wait` seconds
        for the first one to commit.

        The answer's cursor is as far as the feed was read: past the credits delivered,
        and past what was read and had nothing to deliver (other credits, or none up to
        the newest committed transfer). A bank that nobody pays still moves its cursor
        on, so its next poll reads only what commits after it (nothing, with no query,
        until its position is credited: `LedgerWriter.account_history`), instead of its
        whole position on every commit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        position = chart.position_id(bank)
        while True:
            committed = self.ledger.next_commit()  # before the read, so none is missed
            horizon = self.ledger.history_horizon()  # the read below sees all up to it
            page = await self.ledger.account_history(
                position, after_timestamp=after, limit=EVENTS_PAGE, direction="credits")
            records = [r for r in page if r.code == chart.INTERBANK]
            if len(page) == EVENTS_PAGE:  # more may follow the page
                after = page[-1].timestamp
            else:
                after = max(after, horizon, page[-1].timestamp if page else 0)
            remaining = deadline - loop.time()
            if records or remaining <= 0 or self.closing.is_set():
                committed.cancel()
                break
            closing = asyncio.ensure_future(self.closing.wait())
            await asyncio.wait((closing, committed), timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in (closing, committed):
                waiter.cancel()
        views = await self.views(records)
        return wire.Events(events=[wire.Event(cursor=str(v.timestamp), transfer=v)
                                   for v in views], cursor=str(after))

    async def supply(self) -> wire.Supply:
        banks = [bank.code for bank in self.registry.all()]
        ids = [chart.ISSUANCE_ID, chart.BACKING_ID, chart.RTGS_ID]
        ids += [chart.position_id(b) for b in banks] + [chart.reserve_id(b) for b in banks]
        balances = await self.ledger.lookup_accounts(ids)
        credit = [b.credit_balance if b else 0 for b in balances]
        issuance, backing, rtgs = -credit[0], credit[1], -credit[2]
        positions = sum(credit[3:3 + len(banks)])
        reserves = sum(credit[3 + len(banks):])
        return wire.Supply(
            ecny_outstanding=issuance,
            sum_of_positions=positions,
            reserves_swapped_in_net=backing,
            reserves_held=reserves,
            reserves_funded=rtgs,
            balanced=issuance == positions == backing and reserves + backing == rtgs,
        )

