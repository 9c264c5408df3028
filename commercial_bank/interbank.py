"""Payments between banks, through the central bank.

Out: the payer bank asks the payee's bank whether the payee can receive, reserves the
amount with a pending transfer (wallet -> in_flight, no timeout: it must never expire
while the central bank's outcome is unknown), and asks the central bank to settle with
the same id. Settled: post it, and book in_flight -> cb_position. Refused: void it.
Unreachable: the payment stays pending, and `resend_open` keeps retrying with the same
id (the central bank answers a retry the same way, never settling twice) until a
definite answer. The outbox is the ledger itself: open pending OUTGOING transfers.

In: the payee bank follows the central bank's events feed and books each credit
(cb_position -> wallet) under the central bank's transfer id, so a credit delivered
twice is booked once. A credit that can no longer be applied (the wallet was frozen or
filled up in between) is sent back to the payer's bank.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from hashlib import sha256
from typing import Any

import aiohttp
from prometheus_client import Histogram
from yarl import URL

from cbdc.addresses import AddressError, WalletAddress, parse_address
from cbdc.bank_client import CentralBankClient, CentralBankError, CentralBankUnreachable
from cbdc.payment_orders import SignedOrder
from cbdc.problems import rejected
from cbdc.wire import MAX_BATCH, InterbankTransfer, id_to_text
from commercial_bank import accounts as chart
from commercial_bank.coalesce import Coalescer, SendAlone
from settlement import CreateTransferResult, LedgerWriter, TransferFlags

log = logging.getLogger(__name__)

R = CreateTransferResult
_SUCCESS = (R.OK, R.EXISTS)
RETURN_PREFIX = "return:"
_PEER_TIMEOUT = aiohttp.ClientTimeout(total=5)


class SettlementCalls:
    """Sends the central bank the transfers `settle` asks for, several in one call when
    they queue up (`commercial_bank.coalesce`).

    A transfer asked for while a slot is free goes at once, alone, to
    ``POST /v1/transfers``: a lone payment waits no longer than it did. Transfers asked
    for while every slot is busy go together to ``POST /v1/transfers/batch``: one
    signature, one request and one ledger request at the central bank for all of them,
    where signing and sending a request each was about half of a bank's CPU per payment
    between banks.

    `transfer` answers as `CentralBankClient.transfer` does: it returns when the transfer
    settled, raises `CentralBankError` when it was refused (422, with the ledger's
    ``code``; 409 for an id reused with other fields), and raises that error or
    `CentralBankUnreachable` for the whole call's failure (5xx, 429, no answer). When the
    central bank refuses a batch as a whole with another 4xx (one malformed item makes
    it refuse the request), each of its transfers is sent again alone, so each gets the
    answer it would have had.
    """

    def __init__(self, client: CentralBankClient, *, max_in_flight: int = 2,
                 max_items: int = 1000) -> None:
        if not 1 <= max_items <= MAX_BATCH:
            raise ValueError("max_items must be from 1 to MAX_BATCH")
        self.client = client
        self._calls: Coalescer[InterbankTransfer, None] = Coalescer(
            self._alone, self._together, max_in_flight=max_in_flight, max_items=max_items,
            name="central-bank-settle")

    async def transfer(self, item: InterbankTransfer) -> None:
        await self._calls(item)

    async def _alone(self, item: InterbankTransfer) -> None:
        await self.client.transfer(item.id, item.payee_bank, item.amount, item.payer_ref,
                                   item.payee_ref, item.memo_ref)

    async def _together(self, items: Sequence[InterbankTransfer]) -> list[Exception | None]:
        try:
            answer = await self.client.transfer_batch(items)
        except CentralBankError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise
            raise SendAlone from exc
        results = {result.get("id"): result for result in answer.get("results", [])
                   if isinstance(result, Mapping)}
        outcomes: list[Exception | None] = []
        for item in items:
            result = results.get(item.id)
            if result is None:
                outcomes.append(CentralBankError(
                    502, {"title": "Bad Gateway",
                          "detail": "the batch answer has no result for this transfer"}))
            elif result.get("status") == "settled":
                outcomes.append(None)
            else:
                code = result.get("code")
                status = 409 if code in _CONFLICTS else 422
                outcomes.append(CentralBankError(status, {
                    "title": "Rejected by the ledger", "status": status, "code": code,
                    "detail": result.get("detail")}))
        return outcomes

    async def close(self) -> None:
        await self._calls.close()


# Result codes of an id reused with other fields: the single endpoint answers them 409.
_CONFLICTS = frozenset({"exists_with_different_fields", "id_already_failed"})

STAGES = ("payee_check", "hold", "settlement", "post")


class StageTimes:
    """How long each stage of the payments this bank sends to other banks takes, in turn:
    the payee's bank answering whether the payee can receive (`payee_check`), the
    pending debit becoming durable here (`hold`), the central bank's answer
    (`settlement`) and the settled debit becoming durable here (`post`).

    Served at /metrics as ``cbdc_interbank_stage_seconds{stage=...}``, so whoever finds a
    payment between banks slow sees which stage the time went to (the payee's bank
    books the credit from the central bank's feed, beside `post`).
    """

    def __init__(self) -> None:
        # Not registered here: the app adds it to the registry its /metrics serves.
        self.histogram = Histogram(
            "cbdc_interbank_stage_seconds",
            "Time each stage of a payment to another bank takes at the payer's bank",
            ["stage"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=None)
        self._stages = {stage: self.histogram.labels(stage) for stage in STAGES}

    def observe(self, stage: str, started: float) -> float:
        """Record `stage` as having run from `started` (a perf_counter reading) until now;
        return now, the next stage's start."""
        now = time.perf_counter()
        self._stages[stage].observe(now - started)
        return now


class Interbank:
    def __init__(self, code: str, ledger: LedgerWriter, central_bank: CentralBankClient,
                 peers: Mapping[str, str], session: aiohttp.ClientSession) -> None:
        self.code = code
        self.ledger = ledger
        self.central_bank = central_bank
        self.calls = SettlementCalls(central_bank)
        self.stages = StageTimes()
        self.peers = dict(peers)
        self.session = session
        self._checks: dict[str, Coalescer[tuple[WalletAddress, int], str | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Payments being settled by `send` right now, set when their outcome is booked.
        self._sending: dict[int, asyncio.Event] = {}

    # ------------------------------------------------------------------- out
    async def payee_problem(self, payee: WalletAddress, amount: int) -> str | None:
        """Why the payee cannot receive `amount`, asked of the payee's bank (None: it can).

        Checks asked while others are on their way go to the payee's bank together
        (`POST /v1/receivable`, `commercial_bank.coalesce`); a lone one goes at once."""
        url = self.peers.get(payee.bank)
        if url is None:
            return f"{payee.bank} is not a bank this bank can pay"
        checks = self._checks.get(payee.bank)
        if checks is None:
            checks = self._checks[payee.bank] = Coalescer(
                functools.partial(self._check_alone, url),
                functools.partial(self._check_together, url),
                name=f"receivable-{payee.bank}")
        return await checks((payee, amount))

    async def _check_alone(self, url: str, check: tuple[WalletAddress, int]) -> str | None:
        payee, amount = check
        try:
            # Built as text: a canonical address and a number need no escaping, and
            # yarl's query building was a twentieth of the CPU of a payment between banks.
            async with self.session.get(
                URL(f"{url}/v1/receivable/{payee}?amount={int(amount)}", encoded=True),
                timeout=_PEER_TIMEOUT,
            ) as response:
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError):
            return f"{payee.bank} cannot be reached to check the payee; try again shortly"
        if not isinstance(data, dict) or response.status != 200:
            return "the payee's bank did not confirm the payee"
        return None if data.get("receivable") else str(data.get("reason"))

    async def _check_together(self, url: str, checks: Sequence[tuple[WalletAddress, int]]
                              ) -> list[str | Exception | None]:
        """The checks in one request; anything but a full answer sends each alone, so
        each gets the answer (or the failure) its own request would have had."""
        body = {"checks": [{"address": str(payee), "amount": amount}
                           for payee, amount in checks]}
        try:
            async with self.session.post(f"{url}/v1/receivable", json=body,
                                         timeout=_PEER_TIMEOUT) as response:
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise SendAlone from None
        results = data.get("results") if isinstance(data, dict) else None
        if response.status != 200 or not isinstance(results, list) \
                or len(results) != len(checks) \
                or not all(isinstance(result, dict) for result in results):
            raise SendAlone
        return [None if result.get("receivable") else str(result.get("reason"))
                for result in results]

    async def send(self, signed: SignedOrder, transfer_id: int, note: bytes) -> dict[str, Any]:
        order = signed.order
        stages = self.stages
        started = time.perf_counter()
        problem = await self.payee_problem(order.payee, order.amount)
        started = stages.observe("payee_check", started)
        if problem is not None:
            raise rejected("payee_cannot_receive", problem, field="order.payee")
        hold = chart.transfer(
            transfer_id, chart.wallet_id(self.code, order.payer.number),
            chart.system_id(self.code, "in_flight"), order.amount, chart.OUTGOING,
            flags=TransferFlags.PENDING,
            user_data=int.from_bytes(sha256(note).digest()[:16], "big"))
        first = transfer_id not in self._sending
        if first:
            self._sending[transfer_id] = asyncio.Event()
        done = self._sending[transfer_id]
        try:
            [result] = await self.ledger.create_transfers([hold], [note])
            stages.observe("hold", started)
            if not first:
                # A copy of a payment this bank is settling right now: answer with the
                # outcome of the first, not with "pending" while it is on its way.
                await done.wait()
                return {"result": result}
            if result not in _SUCCESS:
                return {"result": result}
            status = await self.settle(transfer_id, order.payee.bank, order.amount,
                                       str(order.payer), str(order.payee), order.memo)
        finally:
            if first:
                del self._sending[transfer_id]
                done.set()
        return {"result": result, "status": status}

    async def settle(self, transfer_id: int, payee_bank: str, amount: int, payer_ref: str,
                     payee_ref: str, memo: str) -> str:
        """Ask the central bank to settle an outgoing pending transfer and book the
        answer: 'settled', 'rejected: <code>' or 'pending' (no answer yet)."""
        stages = self.stages
        started = time.perf_counter()
        try:
            await self.calls.transfer(InterbankTransfer(
                id=id_to_text(transfer_id), payee_bank=payee_bank, amount=amount,
                payer_ref=payer_ref, payee_ref=payee_ref, memo_ref=memo[:128] or None))
        except CentralBankUnreachable as exc:
            log.warning("payment %s: central bank unreachable, will retry: %s",
                        uuid.UUID(int=transfer_id), exc)
            return "pending"
        except CentralBankError as exc:
            if exc.status >= 500 or exc.status == 429:
                return "pending"
            stages.observe("settlement", started)
            await self._void(transfer_id)
            return f"rejected: {exc.problem.get('code') or exc.problem.get('detail')}"
        started = stages.observe("settlement", started)
        await self._post(transfer_id, amount)
        stages.observe("post", started)
        return "settled"

    async def _post(self, transfer_id: int, amount: int) -> None:
        results = await self.ledger.create_transfers([
            chart.resolve_pending(transfer_id, post=True, linked=True),
            chart.transfer(chart.second_leg(transfer_id), chart.system_id(self.code, "in_flight"),
                           chart.system_id(self.code, "cb_position"), amount,
                           chart.SETTLED_OUT),
        ])
        if any(r not in _SUCCESS for r in results):
            raise RuntimeError(f"posting settled payment failed: {results}")

    async def _void(self, transfer_id: int) -> None:
        [result] = await self.ledger.create_transfers(
            [chart.resolve_pending(transfer_id, post=False)])
        if result not in _SUCCESS:
            raise RuntimeError(f"voiding refused payment failed: {result.name}")

    async def resend_open(self) -> int:
        """Settle every outgoing payment still pending (after a restart, or after the
        central bank was unreachable). Returns how many are still pending."""
        rows = await self.ledger.store.pool.fetch(
            "SELECT t.id, t.amount, n.note FROM transfers t "
            "JOIN transfer_notes n ON n.ledger = t.ledger AND n.id = t.id "
            "WHERE t.ledger = $1 AND t.code = $2 AND (t.flags & $3) <> 0 "
            "AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.ledger = t.ledger "
            "                AND r.pending_id = t.id)",
            chart.LEDGER, chart.OUTGOING, int(TransferFlags.PENDING))
        still = 0
        for row in rows:
            transfer_id = int.from_bytes(row["id"], "big")
            if transfer_id in self._sending:
                continue  # its own request is still waiting for the central bank
            order = _outgoing_order(bytes(row["note"]))
            status = await self.settle(transfer_id, order["payee_bank"],
                                       row["amount"], order["payer"], order["payee"],
                                       order["memo"])
            still += status == "pending"
        return still

    # -------------------------------------------------------------------- in
    async def apply_credits(self, bank: Any, events: list[Mapping[str, Any]]) -> None:
        """Book a page of credits from the central bank's feed to their wallets, in one
        ledger request (one commit); each is booked under the central bank's transfer
        id, so a page delivered again books nothing twice."""
        transfers, notes, booked = [], [], []
        for event in events:
            view = event["transfer"]
            try:
                payee = parse_address(view.get("payee_ref") or "")
                problem = None if payee.bank == self.code else "the payee is not ours"
            except AddressError as exc:
                problem = str(exc)
            if problem is not None:
                await self._send_back(uuid.UUID(view["id"]).int, view, int(view["amount"]),
                                      problem)
                continue
            transfers.append(chart.transfer(
                uuid.UUID(view["id"]).int, chart.system_id(self.code, "cb_position"),
                chart.wallet_id(self.code, payee.number), int(view["amount"]),
                chart.INCOMING))
            notes.append(json.dumps({"payer": view.get("payer_ref"),
                                     "memo": view.get("memo_ref") or "",
                                     "payer_bank": view.get("payer_bank")}).encode())
            booked.append((view, payee))
        if not transfers:
            return
        results = await self.ledger.create_transfers(transfers, notes)
        for (view, payee), result in zip(booked, results, strict=True):
            if result is R.OK:
                await bank.announce(str(payee), {
                    "type": "payment_in", "id": view["id"], "status": "settled",
                    "amount": int(view["amount"]), "payer": view.get("payer_ref"),
                    "payee": str(payee), "memo": view.get("memo_ref") or ""})
            elif result is not R.EXISTS:
                await self._send_back(uuid.UUID(view["id"]).int, view, int(view["amount"]),
                                      result.name.lower())

    async def _send_back(self, transfer_id: int, view: Mapping[str, Any], amount: int,
                         problem: str) -> None:
        memo = str(view.get("memo_ref") or "")
        payer_bank = view.get("payer_bank")
        if memo.startswith(RETURN_PREFIX) or not payer_bank:
            # A returned payment that cannot be returned again stays with the bank.
            await self.ledger.create_transfers([chart.transfer(
                transfer_id, chart.system_id(self.code, "cb_position"),
                chart.system_id(self.code, "float"), amount, chart.INCOMING)])
            log.error("credit %s could not be applied (%s); kept in the float", view["id"],
                      problem)
            return
        return_id = chart.derived_id("cbdc/bank/return", transfer_id.to_bytes(16, "big"))
        note = json.dumps({"returning": view["id"], "reason": problem}).encode()
        [result] = await self.ledger.create_transfers([
            chart.transfer(transfer_id, chart.system_id(self.code, "cb_position"),
                           chart.system_id(self.code, "in_flight"), amount, chart.INCOMING),
        ], [note])
        if result not in _SUCCESS:
            raise RuntimeError(f"booking a credit to return failed: {result.name}")
        hold = chart.transfer(return_id, chart.system_id(self.code, "in_flight"),
                              chart.system_id(self.code, "cb_position"), amount,
                              chart.SETTLED_OUT)
        try:
            await self.central_bank.transfer(
                return_id, str(payer_bank), amount, str(view.get("payee_ref") or "unknown"),
                str(view.get("payer_ref")), f"{RETURN_PREFIX}{view['id']}")
        except (CentralBankUnreachable, CentralBankError) as exc:
            log.error("returning credit %s failed (%s); retried on the next delivery",
                      view["id"], exc)
            raise
        await self.ledger.create_transfers([hold])

    async def follow_feed(self, bank: Any) -> None:
        """Book credits from the central bank's feed, forever (one task per bank)."""
        cursor: str | None = None
        delay = 0.2
        while True:
            try:
                page = await self.central_bank.events(after=cursor, wait=20)
                if page["events"]:
                    await self.apply_credits(bank, page["events"])
                cursor = page["cursor"]
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the feed resumes from the acknowledged cursor
                log.warning("events feed: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def retry_forever(self, bank: Any, every: float = 2.0) -> None:
        """The outbox: payments to other banks and float swaps still waiting for the
        central bank's answer, asked again every `every` seconds (at once on start)."""
        while True:
            with contextlib.suppress(Exception):
                await self.resend_open()
            with contextlib.suppress(Exception):
                await bank.swaps.resolve_open()
            await asyncio.sleep(every)

    def start(self, bank: Any) -> None:
        self._tasks = [asyncio.create_task(self.follow_feed(bank), name="events-feed"),
                       asyncio.create_task(self.retry_forever(bank), name="outbox")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.calls.close()
        for checks in self._checks.values():
            await checks.close()


def _outgoing_order(note: bytes) -> dict[str, str]:
    order = SignedOrder.from_json(note).order
    return {"payer": str(order.payer), "payee": str(order.payee),
            "payee_bank": order.payee.bank, "memo": order.memo}
