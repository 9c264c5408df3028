"""What a commercial bank does for its wallet holders, on its own settlement ledger.

Opening wallets and changing their class (the limits change inside the ledger's single
writer, so no payment slips past them), freezing, reporting lost, closing, deposits,
top-up and redemption against a target e-CNY float kept with the central bank, and
same-bank payments by signed payment order. Handlers call these; nothing here knows
about HTTP beyond raising problem errors.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any
from zoneinfo import ZoneInfo

from cbdc.addresses import AddressError, WalletAddress, address_for, parse_address
from cbdc.bank_client import CentralBankClient
from cbdc.kyc import KycError, validate_name, validate_phone, validate_resident_id
from cbdc.money import format_fen
from cbdc.payment_orders import OrderRejected, SignedOrder, verify
from cbdc.problems import ProblemError, conflict, forbidden, rejected, validation
from cbdc.signing import VerifyingKey
from commercial_bank import accounts as chart
from commercial_bank.float_swaps import FloatSwaps, SwapStatus
from commercial_bank.wallet_classes import LimitPreset, WalletClass, limits
from commercial_bank.wallets import Wallet, Wallets
from settlement import (
    AccountBalance,
    CreateAccountResult,
    CreateTransferResult,
    LedgerWriter,
    TransferFlags,
    TransferRecord,
    UpdateAccountResult,
    first_failure,
)

R = CreateTransferResult
_SUCCESS = (R.OK, R.EXISTS)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FloatPolicy:
    """Keep about `target` fen of e-CNY in hand: ask the central bank to issue when a
    top-up would not be covered, and redeem what rises above twice the target."""

    target: int = 10_000_000  # 100,000 CNY

    def to_issue(self, float_balance: int, needed: int) -> int:
        if float_balance >= needed:
            return 0
        return self.target + needed - float_balance

    def to_redeem(self, float_balance: int) -> int:
        return float_balance - self.target if float_balance > 2 * self.target else 0


def _kyc_problem(exc: KycError) -> ProblemError:
    return validation(exc.field, "kyc", str(exc))


class Bank:
    def __init__(self, code: str, ledger: LedgerWriter, wallets: Wallets,
                 central_bank: CentralBankClient, preset: LimitPreset,
                 float_policy: FloatPolicy, timezone: str = "Asia/Shanghai",
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.code = code
        self.ledger = ledger
        self.wallets = wallets
        self.central_bank = central_bank
        self.preset = preset
        self.float_policy = float_policy
        self.zone = ZoneInfo(timezone)
        self.clock = clock
        self._float_lock = asyncio.Lock()
        self.interbank: Any = None  # commercial_bank.interbank.Interbank, set by the app
        self.swaps = FloatSwaps(code, ledger, central_bank)
        # Told of every payment in or out, after it is durable: (wallet address, event).
        # Live delivery to wallets hangs here; a failure in it never fails a payment.
        self.notify: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None

    async def announce(self, address: str, event: dict[str, Any]) -> None:
        if self.notify is None:
            return
        try:
            await self.notify(address, event)
        except Exception as exc:  # live events wait; money never does
            log.warning("live event for %s not delivered: %s", address, exc)

    # ---------------------------------------------------------------- helpers
    def address(self, number: int) -> str:
        return address_for(self.code, number)

    def parse_own(self, text: str, field: str = "address") -> WalletAddress:
        try:
            address = parse_address(text)
        except AddressError as exc:
            raise validation(field, "address", str(exc)) from None
        if address.bank != self.code:
            raise validation(field, "this-bank",
                             f"{address} is a wallet of {address.bank}, not of {self.code}")
        return address

    def wallet_account(self, wallet: Wallet, *, wallet_class: int | None = None,
                       frozen: bool | None = None) -> Any:
        cls = wallet.wallet_class if wallet_class is None else wallet_class
        lim = limits(self.preset, WalletClass(cls))
        is_frozen = wallet.status in ("frozen", "lost", "closed") if frozen is None else frozen
        return chart.wallet_account(self.code, wallet.number, cap=lim.balance_cap,
                                    single=lim.single, daily=lim.daily, yearly=lim.yearly,
                                    frozen=is_frozen)

    async def open_books(self) -> None:
        results = await self.ledger.create_accounts(chart.system_accounts(self.code))
        if any(r not in (CreateAccountResult.OK, CreateAccountResult.EXISTS) for r in results):
            raise RuntimeError(f"cannot open the bank's accounts: {results}")

    async def _redefine(self, wallet: Wallet, **changes: Any) -> None:
        [result] = await self.ledger.update_accounts([self.wallet_account(wallet, **changes)])
        if result is not UpdateAccountResult.OK:
            raise RuntimeError(f"wallet {wallet.number}: account update refused: {result.name}")

    # ---------------------------------------------------------------- wallets
    async def open_wallet(self, public_key: VerifyingKey, phone: str) -> Wallet:
        try:
            phone = validate_phone(phone)
        except KycError as exc:
            raise _kyc_problem(exc) from None
        wallet = await self.wallets.open(public_key, phone)
        [result] = await self.ledger.create_accounts([self.wallet_account(wallet)])
        if result not in (CreateAccountResult.OK, CreateAccountResult.EXISTS):
            raise RuntimeError(f"wallet {wallet.number}: ledger account refused: {result.name}")
        return wallet

    async def change_class(self, wallet: Wallet, wallet_class: int, *, name: str | None = None,
                           resident_id: str | None = None, bank_card: bool = False,
                           in_person: bool = False, by_teller: bool = False) -> Wallet:
        """Upgrade with KYC evidence, or downgrade (evidence kept). Class 1 needs a teller
        who saw the customer in person."""
        if wallet.status == "closed":
            raise rejected("wallet_closed", "the wallet is closed")
        if wallet_class == 1 and not by_teller:
            raise forbidden("class 1 needs identification in person at a branch")
        name_held, id_held = wallet.name, wallet.resident_id
        card_held = wallet.bank_card or bank_card
        seen_in_person = wallet.in_person or (in_person and by_teller)
        try:
            if name is not None:
                name_held = validate_name(name)
            if resident_id is not None:
                id_held = validate_resident_id(resident_id)
        except KycError as exc:
            raise _kyc_problem(exc) from None
        needs = WalletClass(wallet_class).kyc
        if "resident_id" in needs and not (id_held and name_held):
            raise validation("resident_id", "required",
                             f"class {wallet_class} needs a name and a resident ID number")
        if "bank_card" in needs and not card_held:
            raise validation("bank_card", "required",
                             f"class {wallet_class} needs a linked bank card")
        if "in_person" in needs and not seen_in_person:
            raise validation("in_person", "required",
                             f"class {wallet_class} needs identification in person")
        await self._redefine(wallet, wallet_class=wallet_class)
        return await self.wallets.set_kyc(
            wallet, wallet_class=wallet_class, name=name_held, resident_id=id_held,
            bank_card=card_held, in_person=seen_in_person)

    async def set_status(self, wallet: Wallet, status: str) -> Wallet:
        if wallet.status == "closed":
            raise rejected("wallet_closed", "the wallet is closed")
        if status == "active" and wallet.status == "lost":
            raise forbidden("a wallet reported lost cannot be unfrozen; close it instead")
        await self._redefine(wallet, frozen=status != "active")
        return await self.wallets.set_status(wallet, status)

    async def link_deposit(self, wallet: Wallet) -> Wallet:
        """Open (or find) the customer's deposit account and link it to the wallet."""
        linked = await self.wallets.link_deposit(wallet)
        assert linked.deposit_number is not None
        [result] = await self.ledger.create_accounts(
            [chart.deposit_account(self.code, linked.deposit_number)])
        if result not in (CreateAccountResult.OK, CreateAccountResult.EXISTS):
            raise RuntimeError(f"deposit account refused by the ledger: {result.name}")
        return linked

    async def close(self, wallet: Wallet) -> Wallet:
        """Move the balance to the linked deposit account, then close the wallet."""
        if wallet.status == "closed":
            return wallet
        wallet = await self.link_deposit(wallet)
        await self._redefine(wallet, frozen=False)  # let the balance out
        balance = await self.balance(wallet)
        if balance.credits_pending or balance.debits_pending:
            await self._redefine(wallet)
            raise rejected("payments_pending", "the wallet has payments in progress")
        amount = balance.credit_balance
        if amount:
            assert wallet.deposit_number is not None
            results = await self.ledger.create_transfers(chart.redeem(
                chart.derived_id("cbdc/bank/closing", wallet.number), self.code, wallet.number,
                wallet.deposit_number, amount))
            if any(r not in _SUCCESS for r in results):
                await self._redefine(wallet)
                raise rejected(results[0].name.lower(), "the balance could not be moved")
        await self._redefine(wallet, frozen=True)
        return await self.wallets.set_status(wallet, "closed")

    # -------------------------------------------------------------- balances
    async def balance(self, wallet: Wallet) -> AccountBalance:
        [balance] = await self.ledger.lookup_accounts([chart.wallet_id(self.code,
                                                                        wallet.number)])
        if balance is None:
            raise RuntimeError(f"wallet {wallet.number} has no ledger account")
        return balance

    def _next_midnight(self, now: datetime.datetime) -> datetime.datetime:
        local = now.astimezone(self.zone)
        tomorrow = local.date() + datetime.timedelta(days=1)
        return datetime.datetime.combine(tomorrow, datetime.time(), self.zone)

    async def summary(self, wallet: Wallet) -> dict[str, Any]:
        balance = await self.balance(wallet)
        lim = limits(self.preset, WalletClass(wallet.wallet_class))
        now = datetime.datetime.fromtimestamp(self.clock() / 1e9, self.zone)
        new_year = datetime.datetime(now.year + 1, 1, 1, tzinfo=self.zone)
        deposit = None
        if wallet.deposit_number is not None:
            [account] = await self.ledger.lookup_accounts(
                [chart.deposit_id(self.code, wallet.deposit_number)])
            deposit = {"number": wallet.deposit_number,
                       "balance": account.credit_balance if account else 0}
        return {
            "address": self.address(wallet.number),
            "class": wallet.wallet_class,
            "status": wallet.status,
            "balance": balance.credit_balance,
            "available": balance.credit_balance - balance.debits_pending,
            "limits": {
                "balance_cap": lim.balance_cap,
                "single": lim.single,
                "daily": {"limit": lim.daily, "used": balance.debits_today,
                          "left": max(0, lim.daily - balance.debits_today),
                          "resets_at": self._next_midnight(now).isoformat()},
                "yearly": {"limit": lim.yearly, "used": balance.debits_this_year,
                           "left": max(0, lim.yearly - balance.debits_this_year),
                           "resets_at": new_year.isoformat()},
            },
            "deposit_account": deposit,
        }

    # ---------------------------------------------------------- float, deposits
    async def _float_balance(self) -> int:
        [account] = await self.ledger.lookup_accounts([chart.system_id(self.code, "float")])
        return account.credit_balance if account else 0

    async def ensure_float(self, needed: int) -> None:
        """Ask the central bank for e-CNY against our reserves if the float is short."""
        async with self._float_lock:
            amount = self.float_policy.to_issue(await self._float_balance(), needed)
            if not amount:
                return
            outcome = await self.swaps.swap(chart.ISSUANCE, amount)
            if outcome.status is SwapStatus.PENDING:
                raise ProblemError(503, "https://cbdc.example/problems/central-bank-unavailable",
                                   "Service Unavailable", "the bank cannot reach the central "
                                   "bank for e-CNY right now; try again shortly")
            if outcome.status is SwapStatus.REJECTED:
                raise ProblemError(503, "https://cbdc.example/problems/float-unavailable",
                                   "Service Unavailable", "the bank cannot get more e-CNY "
                                   f"right now: {outcome.reason}")

    async def return_surplus(self) -> None:
        async with self._float_lock:
            amount = self.float_policy.to_redeem(await self._float_balance())
            if amount:
                outcome = await self.swaps.swap(chart.REDEMPTION, amount)
                if outcome.status is not SwapStatus.SETTLED:
                    log.warning("returning %d fen of float to the central bank: %s", amount,
                                outcome)

    async def cash_in(self, deposit_number: int, transfer_id: int, amount: int) -> None:
        results = await self.ledger.create_transfers([chart.transfer(
            transfer_id, chart.system_id(self.code, "cash"),
            chart.deposit_id(self.code, deposit_number), amount, chart.CASH_IN)])
        self._raise_for(results, "the deposit")

    async def top_up(self, wallet: Wallet, transfer_id: int, amount: int) -> None:
        self._require_active(wallet)
        if wallet.deposit_number is None:
            raise rejected("no_deposit_account", "link a deposit account before topping up",
                           field="deposit_account")
        if await self._booked(transfer_id) is None:
            refusal = await self._top_up_refusal(wallet, wallet.deposit_number, amount)
            if refusal is None:
                await self.ensure_float(amount)
            elif await self._booked(transfer_id) is None:
                raise refusal
        # A retry of a top-up already booked (its answer was lost, or a concurrent copy
        # won; which is why the deposit or the cap may no longer allow it) asks for no
        # float: the ledger answers it with the first result, or a 409 if it differs.
        results = await self.ledger.create_transfers(chart.top_up(
            transfer_id, self.code, wallet.number, wallet.deposit_number, amount))
        await self._raise_with_limits(results, wallet, "the deposit account")

    async def _booked(self, transfer_id: int) -> TransferRecord | None:
        """The ledger's transfer with this id, if there is one (no I/O for a new id)."""
        if not self.ledger.may_have_transfer(transfer_id):
            return None
        return (await self.ledger.lookup_transfers([transfer_id]))[0]

    async def _top_up_refusal(self, wallet: Wallet, deposit_number: int, amount: int
                              ) -> ProblemError | None:
        """Why a top-up of `amount` cannot be done now: checked before the bank asks the
        central bank for e-CNY to cover it."""
        [deposit] = await self.ledger.lookup_accounts(
            [chart.deposit_id(self.code, deposit_number)])
        if deposit is None or deposit.credit_balance - deposit.debits_pending < amount:
            return rejected("insufficient_funds", "the deposit account does not hold enough",
                            field="amount")
        lim = limits(self.preset, WalletClass(wallet.wallet_class))
        balance = await self.balance(wallet)
        if balance.credits_posted + balance.credits_pending - balance.debits_posted + amount \
                > lim.balance_cap:
            return rejected("exceeds_balance_cap", f"the wallet would go over its balance cap "
                            f"of {format_fen(lim.balance_cap)}", field="amount")
        return None

    async def redeem(self, wallet: Wallet, transfer_id: int, amount: int) -> None:
        self._require_active(wallet)
        if wallet.deposit_number is None:
            raise rejected("no_deposit_account", "link a deposit account before redeeming",
                           field="deposit_account")
        results = await self.ledger.create_transfers(chart.redeem(
            transfer_id, self.code, wallet.number, wallet.deposit_number, amount))
        await self._raise_with_limits(results, wallet, "the wallet")
        await self.return_surplus()

    # ---------------------------------------------------------------- payments
    def now_seconds(self) -> int:
        return self.clock() // 1_000_000_000

    async def pay(self, signed: SignedOrder, now: int) -> dict[str, Any]:
        order = signed.order
        payer_address = order.payer
        if payer_address.bank != self.code:
            raise validation("order.payer", "this-bank",
                             f"{payer_address} is a wallet of {payer_address.bank}; send the "
                             "order to that bank")
        payer = await self.wallets.get(payer_address.number)
        if payer is None:
            raise validation("order.payer", "known-wallet", f"no wallet {order.payer} here")
        try:
            verify(signed, payer.public_key, now=now)
        except OrderRejected as exc:
            raise validation(f"order.{exc.field}" if exc.field else "signature", exc.reason,
                             str(exc)) from None
        # The payer's full address (bank included) makes ids unique across banks too:
        # they travel to the central bank and into the payee bank's ledger.
        transfer_id = chart.derived_id("cbdc/bank/payment", str(order.payer), order.sequence)
        note = signed.to_json_bytes()
        earlier = await self._booked(transfer_id)
        if earlier is not None:
            # A retry (its answer was lost, or the bank restarted): answer from the ledger,
            # before any check that could have changed since (the payee's bank may be
            # down now, the wallet frozen), so it is answered as the first time was.
            return await self._replayed(earlier, signed, note)
        self._require_active(payer)
        payee_address = order.payee
        if payee_address.bank != self.code:
            if self.interbank is None:
                raise rejected("other_bank", f"this bank cannot pay {payee_address.bank}",
                               field="order.payee")
            outcome = await self.interbank.send(signed, transfer_id, note)
            result = outcome["result"]
            if result is R.EXISTS:  # a replayed order: report where the first one is
                status = await self.outgoing_status(transfer_id)
            elif result is R.OK:
                status = outcome["status"]
            else:
                status = ""
                await self._raise_with_limits([result], payer, "the wallet")
            if status.startswith("rejected"):
                raise rejected(status.removeprefix("rejected: ") or "rejected",
                               "the central bank refused the payment; nothing was taken",
                               field="order.payee")
            payment = {"id": str(uuid.UUID(int=transfer_id)),
                       "status": "settled" if status == "settled" else "pending",
                       "amount": order.amount, "payer": str(order.payer),
                       "payee": str(order.payee)}
            if result is R.OK:
                await self.announce(str(order.payer), {"type": "payment_out", **payment,
                                                       "memo": order.memo})
            return payment
        payee = await self.wallets.get(payee_address.number)
        if payee is None:
            raise rejected("payee_unknown", f"no wallet {order.payee} exists",
                           field="order.payee")
        if payee.status != "active":
            raise rejected("payee_cannot_receive",
                           f"the payee's wallet is {payee.status} and cannot receive",
                           field="order.payee")
        results = await self.ledger.create_transfers([chart.transfer(
            transfer_id, chart.wallet_id(self.code, payer.number),
            chart.wallet_id(self.code, payee.number), order.amount, chart.PAYMENT,
            user_data=int.from_bytes(sha256(note).digest()[:16], "big"))], [note])
        if results[0] is R.EXISTS_WITH_DIFFERENT_FIELDS:
            raise conflict(f"sequence {order.sequence} was already used for another order")
        if results[0] is R.CREDIT_ACCOUNT_FROZEN:
            raise rejected("payee_cannot_receive", "the payee's wallet cannot receive",
                           field="order.payee")
        if results[0] is R.EXCEEDS_BALANCE_CAP:
            raise rejected("exceeds_balance_cap", "the payee's wallet would go over its "
                           "balance cap", field="order.payee")
        await self._raise_with_limits(results, payer, "the wallet")
        payment = {"id": str(uuid.UUID(int=transfer_id)), "status": "settled",
                   "amount": order.amount, "payer": str(order.payer),
                   "payee": str(order.payee)}
        if results[0] is R.OK:
            await self.announce(str(order.payer), {"type": "payment_out", **payment,
                                                   "memo": order.memo})
            await self.announce(str(order.payee), {"type": "payment_in", **payment,
                                                   "memo": order.memo})
        return payment

    async def _replayed(self, earlier: TransferRecord, signed: SignedOrder, note: bytes
                        ) -> dict[str, Any]:
        order = signed.order
        if earlier.user_data != int.from_bytes(sha256(note).digest()[:16], "big"):
            raise conflict(f"sequence {order.sequence} was already used for another order")
        status = "settled"
        if earlier.code == chart.OUTGOING:
            status = await self.outgoing_status(earlier.id)
            if status == "rejected":
                raise rejected("rejected", "the central bank refused the payment; nothing "
                               "was taken", field="order.payee")
        return {"id": str(uuid.UUID(int=earlier.id)), "status": status,
                "amount": order.amount, "payer": str(order.payer), "payee": str(order.payee)}

    async def outgoing_status(self, transfer_id: int) -> str:
        """'settled', 'rejected' or 'pending' for a payment to another bank."""
        rows = await self.ledger.store.pool.fetch(
            "SELECT flags FROM transfers WHERE ledger = $1 AND pending_id = $2",
            chart.LEDGER, transfer_id.to_bytes(16, "big"))
        if not rows:
            return "pending"
        posted = any(r["flags"] & int(TransferFlags.POST_PENDING_TRANSFER) for r in rows)
        return "settled" if posted else "rejected"

    async def receivable(self, address: WalletAddress, amount: int) -> str | None:
        """Why `address` cannot receive `amount` now (None: it can)."""
        [reason] = await self.receivable_many([(address, amount)])
        return reason

    async def receivable_many(self, checks: Sequence[tuple[WalletAddress, int]]
                              ) -> list[str | None]:
        """`receivable` for each (address, amount).

        The balances are those the ledger has decided so far, read without waiting for
        its writer's turn and commit (`LedgerWriter.decided_balances`): the check only
        advises, since the credit itself is decided again when it is booked (one that no
        longer fits is sent back), and waiting put a commit or two of this bank into
        every payment another bank sends here."""
        wallets = [await self.wallets.get(address.number) if address.bank == self.code
                   else None for address, _ in checks]
        active = [w for w in wallets if w is not None and w.status == "active"]
        balances = self.ledger.decided_balances(
            [chart.wallet_id(self.code, w.number) for w in active]) if active else []
        balance_of = dict(zip((w.number for w in active), balances, strict=True))
        reasons: list[str | None] = []
        for (address, amount), wallet in zip(checks, wallets, strict=True):
            if wallet is None:
                reasons.append(f"no wallet {address} exists")
                continue
            if wallet.status != "active":
                reasons.append(f"the payee's wallet is {wallet.status} and cannot receive")
                continue
            balance = balance_of[wallet.number]
            if balance is None:
                raise RuntimeError(f"wallet {wallet.number} has no ledger account")
            cap = limits(self.preset, WalletClass(wallet.wallet_class)).balance_cap
            if balance.credits_posted + balance.credits_pending - balance.debits_posted \
                    + amount > cap:
                reasons.append("the payee's wallet would go over its balance cap of "
                               f"{format_fen(cap)}")
                continue
            reasons.append(None)
        return reasons

    # ----------------------------------------------------------------- history
    async def history(self, wallet: Wallet, *, after: int, limit: int, direction: str,
                      since: int | None, until: int | None) -> dict[str, Any]:
        account = chart.wallet_id(self.code, wallet.number)
        records = await self.ledger.account_history(
            account, after_timestamp=max(after, (since or 0) - 1), limit=limit,
            direction={"in": "credits", "out": "debits"}.get(direction, "both"))
        notes = await self.ledger.lookup_notes([r.id for r in records])
        resolving = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)
        # A payment to another bank is one entry: its pending debit, with the outcome.
        shown = [r for r in records if not r.flags & resolving
                 and (until is None or r.timestamp <= until)]
        outcomes = await self._outcomes([r.id for r in shown
                                         if r.flags & int(TransferFlags.PENDING)])
        entries = []
        for record in shown:
            entry = self._entry(record, account, notes.get(record.id))
            if record.flags & int(TransferFlags.PENDING):
                entry["status"] = outcomes.get(record.id, "pending")
            else:
                entry["status"] = "settled"
            entries.append(entry)
        next_after = str(records[-1].timestamp) if len(records) == limit else None
        return {"entries": entries, "next_after": next_after}

    async def _outcomes(self, pending_ids: list[int]) -> dict[int, str]:
        if not pending_ids:
            return {}
        rows = await self.ledger.store.pool.fetch(
            "SELECT pending_id, flags FROM transfers WHERE ledger = $1 "
            "AND pending_id = ANY($2::bytea[])", chart.LEDGER,
            [i.to_bytes(16, "big") for i in pending_ids])
        post = int(TransferFlags.POST_PENDING_TRANSFER)
        return {int.from_bytes(r["pending_id"], "big"):
                "settled" if r["flags"] & post else "rejected" for r in rows}

    def _entry(self, record: TransferRecord, account: int, note: bytes | None
               ) -> dict[str, Any]:
        outgoing = record.debit_account_id == account
        kinds = {chart.PAYMENT: "payment", chart.TOP_UP: "top_up", chart.REDEEM: "redeem",
                 chart.OUTGOING: "payment", chart.INCOMING: "payment"}
        entry: dict[str, Any] = {
            "id": str(uuid.UUID(int=record.id)),
            "kind": kinds.get(record.code, "other"),
            "direction": "out" if outgoing else "in",
            "amount": record.amount,
            "timestamp": record.timestamp,
            "block": record.block_height,
        }
        if note and record.code == chart.INCOMING:
            details = json.loads(note)
            entry["counterparty"] = details.get("payer")
            entry["memo"] = details.get("memo", "")
        elif note:
            order = SignedOrder.from_json(note).order
            entry["counterparty"] = str(order.payee if outgoing else order.payer)
            entry["memo"] = order.memo
        return entry

    # ------------------------------------------------------------------ errors
    def _require_active(self, wallet: Wallet) -> None:
        if wallet.status != "active":
            raise rejected(f"wallet_{wallet.status}", f"the wallet is {wallet.status}; "
                           "it can neither pay nor top up", field="address")

    @staticmethod
    def _raise_for(results: Sequence[CreateTransferResult], what: str) -> None:
        failure = first_failure(results)
        if failure in (R.EXISTS_WITH_DIFFERENT_FIELDS, R.ID_ALREADY_FAILED):
            raise conflict("this id was already used for a different request")
        if failure is not None:
            raise rejected(failure.name.lower(), f"{what}: {failure.name.lower()}")

    async def _raise_with_limits(self, results: Sequence[CreateTransferResult],
                                 wallet: Wallet, what: str) -> None:
        failure = first_failure(results)
        if failure is None:
            return
        lim = limits(self.preset, WalletClass(wallet.wallet_class))
        if failure in (R.EXCEEDS_SINGLE_LIMIT, R.EXCEEDS_DAILY_LIMIT, R.EXCEEDS_YEARLY_LIMIT):
            summary = await self.summary(wallet)
            if failure is R.EXCEEDS_SINGLE_LIMIT:
                detail = (f"over the single-payment limit of {format_fen(lim.single)} for a "
                          f"class {wallet.wallet_class} wallet")
            else:
                period = "daily" if failure is R.EXCEEDS_DAILY_LIMIT else "yearly"
                usage = summary["limits"][period]
                detail = (f"over the {period} limit of {format_fen(usage['limit'])}: "
                          f"{format_fen(usage['left'])} left, resets at {usage['resets_at']}")
            raise rejected(failure.name.lower(), detail, field="amount")
        if failure is R.EXCEEDS_CREDITS:
            raise rejected("insufficient_funds", f"{what} does not hold enough",
                           field="amount")
        if failure is R.EXCEEDS_BALANCE_CAP:
            raise rejected("exceeds_balance_cap",
                           f"the wallet would go over its balance cap of "
                           f"{format_fen(lim.balance_cap)}", field="amount")
        if failure in (R.EXISTS_WITH_DIFFERENT_FIELDS, R.ID_ALREADY_FAILED):
            raise conflict("this id was already used for a different request")
        raise rejected(failure.name.lower(), f"{what}: {failure.name.lower().replace('_', ' ')}")
