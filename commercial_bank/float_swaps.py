"""Issuance and redemption with the central bank, safe against crashes and lost answers.

A swap is first held in the bank's own ledger as a pending transfer under a fresh id
(issuance: cb_position -> float; redemption: float -> cb_position), then sent to the
central bank under that same id, then posted (the central bank swapped) or voided (it
refused). If no answer comes back (the central bank is down, or its answer was lost
after it committed) the hold stays pending, and `resolve_open` sends the swap again under
the same id until a definite answer: the central bank applies an id at most once, so the
retry either finds the first swap or makes it. A crash at any point leaves either
nothing (before the hold committed) or an open hold that `resolve_open` settles.
So the bank's mirror of its position never drifts from the central bank's figure.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass

from cbdc.bank_client import CentralBankClient, CentralBankError, CentralBankUnreachable
from commercial_bank import accounts as chart
from settlement import CreateTransferResult, LedgerWriter, TransferFlags

log = logging.getLogger(__name__)

R = CreateTransferResult
_SUCCESS = (R.OK, R.EXISTS)
KINDS = (chart.ISSUANCE, chart.REDEMPTION)


class SwapStatus(enum.Enum):
    SETTLED = "settled"  # the central bank swapped; the hold is posted
    PENDING = "pending"  # no definite answer yet; `resolve_open` asks again
    REJECTED = "rejected"  # refused (by our ledger or the central bank); hold voided


@dataclass(frozen=True, slots=True)
class SwapOutcome:
    status: SwapStatus
    reason: str = ""  # why it was refused, for REJECTED

    def __str__(self) -> str:
        return f"{self.status.value}: {self.reason}" if self.reason else self.status.value


SETTLED, PENDING = SwapOutcome(SwapStatus.SETTLED), SwapOutcome(SwapStatus.PENDING)


def rejected(reason: str) -> SwapOutcome:
    return SwapOutcome(SwapStatus.REJECTED, reason)


class FloatSwaps:
    def __init__(self, code: str, ledger: LedgerWriter, central_bank: CentralBankClient
                 ) -> None:
        self.code = code
        self.ledger = ledger
        self.central_bank = central_bank
        self._sending: set[int] = set()  # swaps whose first request is still out

    async def swap(self, kind: int, amount: int) -> SwapOutcome:
        """Issue (`chart.ISSUANCE`) or redeem (`chart.REDEMPTION`) `amount` fen."""
        transfer_id = uuid.uuid4().int
        position, float_ = (chart.system_id(self.code, "cb_position"),
                            chart.system_id(self.code, "float"))
        debit, credit = (position, float_) if kind == chart.ISSUANCE else (float_, position)
        self._sending.add(transfer_id)
        try:
            [result] = await self.ledger.create_transfers([chart.transfer(
                transfer_id, debit, credit, amount, kind, flags=TransferFlags.PENDING)])
            if result not in _SUCCESS:
                return rejected(result.name.lower())
            return await self._settle(kind, transfer_id, amount)
        finally:
            self._sending.discard(transfer_id)

    async def _settle(self, kind: int, transfer_id: int, amount: int) -> SwapOutcome:
        send = self.central_bank.issue if kind == chart.ISSUANCE else self.central_bank.redeem
        try:
            await send(transfer_id, amount)
        except CentralBankUnreachable as exc:
            log.warning("float swap %s: no answer from the central bank, will ask again: %s",
                        uuid.UUID(int=transfer_id), exc)
            return PENDING
        except CentralBankError as exc:
            if exc.status >= 500 or exc.status == 429:
                return PENDING
            log.warning("float swap %s: the central bank refused it (%s); voiding the hold",
                        uuid.UUID(int=transfer_id), exc)
            await self._resolve(transfer_id, post=False)
            return rejected(str(exc.problem.get("detail") or exc))
        await self._resolve(transfer_id, post=True)
        return SETTLED

    async def _resolve(self, transfer_id: int, *, post: bool) -> None:
        [result] = await self.ledger.create_transfers(
            [chart.resolve_pending(transfer_id, post=post)])
        if result not in _SUCCESS:
            raise RuntimeError(f"float swap {uuid.UUID(int=transfer_id)}: "
                               f"{'posting' if post else 'voiding'} refused: {result.name}")

    async def resolve_open(self) -> int:
        """Send every open swap again (after a restart, or a lost answer); how many are
        still open."""
        rows = await self.ledger.store.pool.fetch(
            "SELECT t.id, t.amount, t.code FROM transfers t "
            "WHERE t.ledger = $1 AND t.code = ANY($2::int[]) AND (t.flags & $3) <> 0 "
            "AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.ledger = t.ledger "
            "                AND r.pending_id = t.id)",
            chart.LEDGER, list(KINDS), int(TransferFlags.PENDING))
        still = 0
        for row in rows:
            transfer_id = int.from_bytes(row["id"], "big")
            if transfer_id in self._sending:
                continue
            outcome = await self._settle(row["code"], transfer_id, row["amount"])
            still += outcome.status is SwapStatus.PENDING
        return still
