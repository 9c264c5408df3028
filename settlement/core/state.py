"""The ledger's state machine: validates accounts and transfers against in-memory state.

Pure: no I/O and no clock. The single writer of a ledger owns one `LedgerState`, opens a
`Batch` with the batch's time, feeds it requests, and hands the batch to the store to be
committed. When a commit fails the writer throws the state away and loads it again from
the database, so nothing here needs to be undone across batches; inside a batch, a
failed chain of linked events is undone with a small journal.

Checkpoints of balances are copy-on-write, so taking one never stalls the writer for
longer than a step: `begin_checkpoint` only closes the current epoch (the accounts
changed in it are the checkpoint's), `save_some` copies them a few thousand at a time
between batches, and an account about to change before its turn is copied first. The
rows are the balances as of the moment the checkpoint began, whatever changed after.

Each account also heads two history chains, its debits and its credits: every transfer
row names the previous transfer on the same side of each of its accounts and its own
position there (`Batch.transfers`), so the store can walk an account's history back
without an index entry per transfer. The heads move with each transfer decided (and are
undone with a failed linked chain); a history query starts from them once the batch
that wrote them is durable.

Balances follow TigerBeetle: every account has debits/credits posted and pending. A
pending transfer reserves its amount on both sides until it is posted (in full or in
part), voided, or expires.
"""

from __future__ import annotations

import heapq
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, Final, cast

from msgspec.structs import astuple

from cbdc.receipts import (
    ENTRY_ACCOUNT_UPDATE,
    encode_account,
    encode_expiry,
    encode_transfer_b16,
)
from settlement.core.calendar import LimitCalendar
from settlement.core.idmap import SHARD_MASK, SHARD_SHIFT, IdMap
from settlement.core.types import (
    ACCOUNT_FLAGS_KNOWN,
    AMOUNT_LIMIT,
    TRANSFER_FLAGS_KNOWN,
    U16_LIMIT,
    U32_LIMIT,
    Account,
    AccountBalance,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
    UpdateAccountResult,
)

R = CreateTransferResult
# Final: compiled, each use is a constant or a C static, not a lookup in the module's
# globals (17 of them per transfer before, a tenth of deciding one).
U128_LIMIT: Final = 1 << 128
NS_PER_SECOND: Final = 1_000_000_000
_AMOUNT_LIMIT: Final = AMOUNT_LIMIT
_U32_LIMIT: Final = U32_LIMIT
_U16_LIMIT: Final = U16_LIMIT
_SHARD_SHIFT: Final = SHARD_SHIFT
_SHARD_MASK: Final = SHARD_MASK
_OK: Final = R.OK
_astuple: Final = astuple

_LINKED: Final = int(TransferFlags.LINKED)
_PENDING: Final = int(TransferFlags.PENDING)
_POST: Final = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID: Final = int(TransferFlags.VOID_PENDING_TRANSFER)
_DEBITS_LE_CREDITS: Final = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CREDITS_LE_DEBITS: Final = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
_FROZEN: Final = int(AccountFlags.FROZEN)

# `LedgerState._apply` takes a transfer's fields in one tuple (`astuple`), in this order.
_TRANSFER_FIELDS = ("id", "debit_account_id", "credit_account_id", "amount", "ledger", "code",
                    "flags", "pending_id", "timeout", "user_data")
if Transfer.__struct_fields__ != _TRANSFER_FIELDS:
    raise ImportError("Transfer's fields changed order: update LedgerState._apply")
# Those fields once `_validate_fields` passed them: ints, read as such from here on.
_CheckedFields = tuple[int, int, int, int, int, int, int, int, int, int]

# An id of 0 (no pending transfer, no user data) as 16 bytes.
NO_ID: Final = bytes(16)
# An accepted transfer as the batch holds it for the store: id, debit and credit account,
# amount, pending_id, user_data (ids as 16 big-endian bytes), timeout, ledger, code,
# flags, timestamp, then its history links (see `Batch`).
TransferRow = tuple[bytes, bytes, bytes, int, bytes, bytes, int, int, int, int, int, int, int,
                    int, int]

# Status of a pending transfer.
OPEN: Final = 0
POSTED: Final = 1
VOIDED: Final = 2
EXPIRED: Final = 3


class AccountState:
    """An account's definition and running balances (mutable, owned by the writer)."""

    __slots__ = (
        "cap",
        "cp",
        "cpend",
        "credit_count",
        "credit_head",
        "day",
        "day_used",
        "debit_count",
        "debit_head",
        "definition",
        "dp",
        "dpend",
        "epoch",
        "flags",
        "ledger",
        "limit_daily",
        "limit_single",
        "limit_yearly",
        "timestamp",
        "year",
        "year_used",
    )

    def __init__(self, definition: Account, timestamp: int) -> None:
        self.definition = definition
        self.ledger = definition.ledger
        # A plain int: the checks below test bits on every transfer, and an IntFlag's
        # `&` builds a new enum member each time (a fifth of a big batch's CPU).
        self.flags = int(definition.flags)
        self.cap = definition.balance_cap
        self.limit_single = definition.debit_limit_single
        self.limit_daily = definition.debit_limit_daily
        self.limit_yearly = definition.debit_limit_yearly
        self.timestamp = timestamp
        self.dp = self.dpend = self.cp = self.cpend = 0
        self.day = self.day_used = self.year = self.year_used = 0
        # History chains: the timestamp of the newest transfer on each side (0: none)
        # and how many there are.
        self.debit_head = self.debit_count = self.credit_head = self.credit_count = 0
        # The checkpoint epoch of the account's last change (`LedgerState.epoch`); 0: none
        # since it was loaded or last copied into a checkpoint.
        self.epoch = 0

    def redefine(self, definition: Account) -> None:
        """Take new flags, cap and limits (ledger and code never change)."""
        self.definition = definition
        self.flags = int(definition.flags)
        self.cap = definition.balance_cap
        self.limit_single = definition.debit_limit_single
        self.limit_daily = definition.debit_limit_daily
        self.limit_yearly = definition.debit_limit_yearly

    def snapshot(self) -> tuple[int, ...]:
        return (self.dp, self.dpend, self.cp, self.cpend, self.day, self.day_used, self.year,
                self.year_used)

    def restore(self, saved: tuple[int, ...]) -> None:
        (self.dp, self.dpend, self.cp, self.cpend, self.day, self.day_used, self.year,
         self.year_used) = saved

    def heads(self) -> tuple[int, int, int, int]:
        return self.debit_head, self.debit_count, self.credit_head, self.credit_count

    def restore_heads(self, saved: tuple[int, int, int, int]) -> None:
        self.debit_head, self.debit_count, self.credit_head, self.credit_count = saved

    def balance(self, day: int | None = None, year: int | None = None) -> AccountBalance:
        """The account's balances; usage of a day or year other than the given reads 0."""
        current_day = self.day if day is None else day
        current_year = self.year if year is None else year
        return AccountBalance(
            account=self.definition,
            debits_posted=self.dp,
            debits_pending=self.dpend,
            credits_posted=self.cp,
            credits_pending=self.cpend,
            timestamp=self.timestamp,
            day=current_day,
            debits_today=self.day_used if self.day == current_day else 0,
            year=current_year,
            debits_this_year=self.year_used if self.year == current_year else 0,
        )


class PendingState:
    """A pending transfer, open or resolved, with what its reservation counted against."""

    __slots__ = ("expires_at", "status", "transfer", "usage_day", "usage_year")

    def __init__(self, transfer: Transfer, expires_at: int, usage_day: int,
                 usage_year: int, status: int = OPEN) -> None:
        self.transfer = transfer
        self.expires_at = expires_at
        self.usage_day = usage_day
        self.usage_year = usage_year
        self.status = status


@dataclass(slots=True)
class Batch:
    """What one batch changed: the rows to store and the entries to seal into a block.

    `entries` are the encoded leaves of the block in order; `transfers` and `accounts`
    rows carry the same fields as plain tuples for the store (a transfer's ids as the 16
    bytes its entry holds, `TransferRow`). A transfer row ends with its history links:
    the timestamp of the previous transfer on the debit side of its debit account (0:
    none) and its position there, then the same for the credit side of its credit
    account.
    """

    now: int
    day: int
    year: int
    entries: list[bytes] = field(default_factory=list)
    accounts: list[tuple[Account, int]] = field(default_factory=list)
    # (new definition, timestamp, the definition it replaced)
    account_updates: list[tuple[Account, int, Account]] = field(default_factory=list)
    transfers: list[TransferRow] = field(default_factory=list)
    failures: list[tuple[int, ...]] = field(default_factory=list)
    expirations: list[tuple[int, int]] = field(default_factory=list)
    notes: list[tuple[int, bytes]] = field(default_factory=list)  # accepted id, note
    last_timestamp: int = 0

    @property
    def empty(self) -> bool:
        return not (self.entries or self.failures)



# Keyed per process: fingerprints are never stored (recovery recomputes them from the
# stored fields), so nobody can aim a collision at them. The key is a secret prefix of
# the hashed bytes rather than BLAKE2's key parameter, which takes a 128-byte block of its
# own: one compression a transfer instead of two (245 against 390 ns). BLAKE2 has no
# length extension and every input here is one fixed length, so the prefix keys it as
# well.
_FINGERPRINT: Final = blake2b(os.urandom(16), digest_size=16)
_FIELDS: Final = struct.Struct(">16s16sQ16s16sIIHH")


def fingerprint(t: Transfer) -> bytes:
    """Identity of a transfer's fields, to tell a retry from a reused id (128 bits)."""
    return _fingerprint_b16(_b16(t.debit_account_id), _b16(t.credit_account_id), t.amount,
                            _b16(t.pending_id), _b16(t.user_data), t.timeout, t.ledger,
                            t.code, int(t.flags))


def _b16(value: int) -> bytes:
    """An id as 16 big-endian bytes (as entries, fingerprints and rows hold it)."""
    return value.to_bytes(16, "big") if value else NO_ID


def _fingerprint_b16(debit_id: bytes, credit_id: bytes, amount: int, pending_id: bytes,
                     user_data: bytes, timeout: int, ledger: int, code: int,
                     flags: int) -> bytes:
    h = _FINGERPRINT.copy()
    h.update(_FIELDS.pack(debit_id, credit_id, amount, pending_id, user_data, timeout, ledger,
                          code, flags))
    return h.digest()


@dataclass(slots=True)
class _Saving:
    """A checkpoint being copied out: the accounts changed in `epoch`, as of its end."""

    epoch: int
    accounts: list[AccountState]
    rows: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    copied_upto: int = 0  # accounts[:copied_upto] are done (copied here or on change)


class _Journal:
    """Undo log for one chain of linked events."""

    __slots__ = ("accounts", "failed", "fingerprints", "pendings", "rows")

    def __init__(self) -> None:
        self.accounts: dict[int, tuple[AccountState, tuple[int, ...],
                                       tuple[int, int, int, int]]] = {}
        self.fingerprints: list[int] = []
        self.failed: list[int] = []
        self.pendings: list[tuple[int, PendingState | None, int]] = []
        self.rows: tuple[int, int, int, int] = (0, 0, 0, 0)

    def save(self, *accounts: AccountState) -> None:
        for account in accounts:
            key = id(account)
            if key not in self.accounts:
                self.accounts[key] = (account, account.snapshot(), account.heads())


class LedgerState:
    """Everything one ledger's writer needs to decide a transfer without I/O."""

    def __init__(self, ledger: int, calendar: LimitCalendar | None = None) -> None:
        self.ledger = ledger
        self.calendar = calendar or LimitCalendar()
        # Every id the ledger has seen, for as long as it runs: sharded, so growing
        # never rebuilds a whole table at once (`settlement.core.idmap`).
        self.accounts: IdMap[AccountState] = IdMap()
        self.fingerprints: IdMap[bytes] = IdMap()  # accepted transfer id -> fingerprint
        self.failed: IdMap[tuple[bytes, int]] = IdMap()  # failed id -> (fingerprint, result)
        self.pendings: IdMap[PendingState] = IdMap()  # pending transfer id -> state
        self.expiry_queue: list[tuple[int, int]] = []  # (expires_at, pending id)
        self.last_timestamp = 0
        # Checkpoints: the accounts changed in the current epoch, and the copy under way.
        self.epoch = 1
        self._changed: list[AccountState] = []
        self._saving: _Saving | None = None

    # ----------------------------------------------------------------- loading
    def load_account(self, state: AccountState) -> None:
        self.accounts[state.definition.id] = state
        self.last_timestamp = max(self.last_timestamp, state.timestamp)

    def load_transfer(self, t: Transfer, timestamp: int) -> None:
        """Register a committed transfer (in any order): its fingerprint, and its place
        at the head of its accounts' history chains if it is their newest so far."""
        self.fingerprints[t.id] = fingerprint(t)
        self.last_timestamp = max(self.last_timestamp, timestamp)
        dr = self.accounts.get(t.debit_account_id)
        if dr is not None:
            dr.debit_count += 1
            dr.debit_head = max(dr.debit_head, timestamp)
        cr = self.accounts.get(t.credit_account_id)
        if cr is not None:
            cr.credit_count += 1
            cr.credit_head = max(cr.credit_head, timestamp)

    def load_failure(self, t: Transfer, result: int, timestamp: int) -> None:
        self.failed[t.id] = (fingerprint(t), result)
        self.last_timestamp = max(self.last_timestamp, timestamp)

    def load_pending(self, t: Transfer, timestamp: int, status: int, batch_time: int) -> None:
        """Register a pending transfer; `batch_time` is its block's time (for limits)."""
        day, year = self.calendar.day_and_year(batch_time)
        expires_at = timestamp + t.timeout * NS_PER_SECOND if t.timeout else 0
        self.pendings[t.id] = PendingState(t, expires_at, day, year, status)
        if status == OPEN and expires_at:
            heapq.heappush(self.expiry_queue, (expires_at, t.id))

    def note_timestamp(self, timestamp: int) -> None:
        self.last_timestamp = max(self.last_timestamp, timestamp)

    def replay_transfer(self, t: Transfer, batch_time: int) -> None:
        """Re-apply a committed transfer's effects on balances (recovery after a
        checkpoint). Pending transfers must all be loaded first."""
        flags = t.flags
        if flags & (_POST | _VOID):
            self._settle(self.pendings[t.pending_id], t.amount, posting=bool(flags & _POST))
            return
        day, year = self.calendar.day_and_year(batch_time)
        self._move(self.accounts[t.debit_account_id], self.accounts[t.credit_account_id],
                   t.amount, bool(flags & _PENDING), day, year)

    def replay_expiry(self, pending_id: int) -> None:
        self._settle(self.pendings[pending_id], 0, posting=False)

    # ----------------------------------------------------------------- batches
    def begin(self, now: int) -> Batch:
        """Open a batch at `now` (ns since the epoch) and expire what is due by then."""
        day, year = self.calendar.day_and_year(now)
        batch = Batch(now=now, day=day, year=year, last_timestamp=self.last_timestamp)
        self._expire_due(batch)
        return batch

    def finish(self, batch: Batch) -> None:
        self.last_timestamp = batch.last_timestamp

    def _next_timestamp(self, batch: Batch) -> int:
        ts = max(batch.last_timestamp + 1, batch.now)
        batch.last_timestamp = ts
        return ts

    def next_expiry(self) -> int | None:
        """When the earliest open pending transfer expires (ns), if any."""
        queue = self.expiry_queue
        pendings = self.pendings
        while queue and not _due_entry_is_live(pendings, *queue[0]):
            heapq.heappop(queue)  # resolved, or undone with a failed linked chain
        return queue[0][0] if queue else None

    def _expire_due(self, batch: Batch) -> None:
        queue = self.expiry_queue
        while queue and queue[0][0] <= batch.now:
            expires_at, pending_id = heapq.heappop(queue)
            if not _due_entry_is_live(self.pendings, expires_at, pending_id):
                continue
            pending = self.pendings[pending_id]
            self._settle(pending, 0, posting=False)
            pending.status = EXPIRED
            ts = self._next_timestamp(batch)
            batch.expirations.append((pending_id, ts))
            batch.entries.append(encode_expiry(pending_id, self.ledger, ts))

    # ---------------------------------------------------------------- accounts
    def create_accounts(self, batch: Batch, accounts: Sequence[Account]
                        ) -> list[CreateAccountResult]:
        results = []
        for account in accounts:
            result = self._validate_account(account)
            if result is CreateAccountResult.OK:
                ts = self._next_timestamp(batch)
                state = AccountState(account, ts)
                self.accounts[account.id] = state
                batch.accounts.append((account, ts))
                batch.entries.append(encode_account(
                    account.id, account.user_data, account.ledger, account.code,
                    account.flags, account.balance_cap, account.debit_limit_single,
                    account.debit_limit_daily, account.debit_limit_yearly, ts))
            results.append(result)
        return results

    def update_accounts(self, batch: Batch, accounts: Sequence[Account]
                        ) -> list[UpdateAccountResult]:
        """Give existing accounts new flags, caps or limits (a wallet changing class, a
        frozen wallet). Each change is an entry of the block; asking for the definition
        an account already has is OK and changes nothing."""
        results = []
        for account in accounts:
            result = self._validate_update(account)
            if result is UpdateAccountResult.OK:
                state = self.accounts[account.id]
                if state.definition != account:
                    previous = state.definition
                    state.redefine(account)
                    ts = self._next_timestamp(batch)
                    batch.account_updates.append((account, ts, previous))
                    batch.entries.append(encode_account(
                        account.id, account.user_data, account.ledger, account.code,
                        int(account.flags), account.balance_cap, account.debit_limit_single,
                        account.debit_limit_daily, account.debit_limit_yearly, ts,
                        kind=ENTRY_ACCOUNT_UPDATE))
            results.append(result)
        return results

    def _validate_update(self, a: Account) -> UpdateAccountResult:
        U = UpdateAccountResult  # noqa: N806 - a short alias keeps the ladder readable
        created = self._validate_account(a, for_update=True)
        if created is not CreateAccountResult.OK:
            return {
                CreateAccountResult.ID_INVALID: U.ID_INVALID,
                CreateAccountResult.ID_MUST_NOT_BE_ZERO: U.ID_INVALID,
                CreateAccountResult.FLAGS_INVALID: U.FLAGS_INVALID,
                CreateAccountResult.FLAGS_ARE_MUTUALLY_EXCLUSIVE: U.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
                CreateAccountResult.USER_DATA_INVALID: U.USER_DATA_INVALID,
                CreateAccountResult.BALANCE_CAP_INVALID: U.BALANCE_CAP_INVALID,
                CreateAccountResult.DEBIT_LIMIT_INVALID: U.DEBIT_LIMIT_INVALID,
                CreateAccountResult.LEDGER_INVALID: U.LEDGER_MUST_NOT_CHANGE,
                CreateAccountResult.CODE_INVALID: U.CODE_MUST_NOT_CHANGE,
            }.get(created, U.ACCOUNT_NOT_FOUND)
        existing = self.accounts.get(a.id)
        if existing is None:
            return U.ACCOUNT_NOT_FOUND
        if existing.definition.ledger != a.ledger:
            return U.LEDGER_MUST_NOT_CHANGE
        if existing.definition.code != a.code:
            return U.CODE_MUST_NOT_CHANGE
        return U.OK

    def _validate_account(self, a: Any, for_update: bool = False) -> CreateAccountResult:
        # `a` is Any: its fields are checked as they came, not as the annotations say
        # (compiled, a field read as an int would turn True into 1 and reject "1" with a
        # TypeError instead of a result code).
        if not _is_int(a.id) or a.id < 0 or a.id >= U128_LIMIT:
            return CreateAccountResult.ID_INVALID
        if a.id == 0:
            return CreateAccountResult.ID_MUST_NOT_BE_ZERO
        if not _is_int(a.flags) or a.flags & ~ACCOUNT_FLAGS_KNOWN or a.flags < 0:
            return CreateAccountResult.FLAGS_INVALID
        if a.flags & _DEBITS_LE_CREDITS and a.flags & _CREDITS_LE_DEBITS:
            return CreateAccountResult.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if not _is_int(a.ledger) or not 0 < a.ledger < U32_LIMIT:
            return CreateAccountResult.LEDGER_INVALID
        if not _is_int(a.code) or not 0 < a.code < U16_LIMIT:
            return CreateAccountResult.CODE_INVALID
        if not _is_int(a.user_data) or not 0 <= a.user_data < U128_LIMIT:
            return CreateAccountResult.USER_DATA_INVALID
        if a.balance_cap is not None and not _is_amount(a.balance_cap, allow_zero=True):
            return CreateAccountResult.BALANCE_CAP_INVALID
        for limit in (a.debit_limit_single, a.debit_limit_daily, a.debit_limit_yearly):
            if limit is not None and not _is_amount(limit, allow_zero=True):
                return CreateAccountResult.DEBIT_LIMIT_INVALID
        if for_update:
            return CreateAccountResult.OK
        existing = self.accounts.get(a.id)
        if existing is not None:
            if existing.definition == a:
                return CreateAccountResult.EXISTS
            return CreateAccountResult.EXISTS_WITH_DIFFERENT_FIELDS
        if a.ledger != self.ledger:
            return CreateAccountResult.LEDGER_NOT_SERVED
        return CreateAccountResult.OK

    # --------------------------------------------------------------- transfers
    def create_transfers(self, batch: Batch, transfers: Sequence[Transfer]
                         ) -> list[CreateTransferResult]:
        """Decide each transfer in order; linked chains succeed or fail together."""
        results: list[CreateTransferResult] = []
        count = len(transfers)
        index = 0
        while index < count:
            t = transfers[index]
            if _is_linked(t):
                end = index
                while end < count and _is_linked(transfers[end]):
                    end += 1
                results.extend(self._apply_chain(batch, transfers[index:end + 1],
                                                 open_chain=end == count))
                index = end + 1
                continue
            results.append(self._apply(batch, t, None))
            index += 1
        return results

    def _apply_chain(self, batch: Batch, chain: Sequence[Transfer], open_chain: bool
                     ) -> list[CreateTransferResult]:
        journal = _Journal()
        journal.rows = (len(batch.transfers), len(batch.failures), len(batch.entries),
                        batch.last_timestamp)
        results: list[CreateTransferResult] = []
        failed_at = -1
        for position, t in enumerate(chain):
            if open_chain and position == len(chain) - 1:
                result = R.LINKED_EVENT_CHAIN_OPEN
            else:
                result = self._apply(batch, t, journal)
            results.append(result)
            if result is not R.OK and result is not R.EXISTS:
                failed_at = position
                break
        if failed_at < 0:
            return results
        # Undo the chain, keep only the failing event's own stored failure (its first
        # answer), and report every other member as linked_event_failed.
        failure_row = batch.failures[-1] if len(batch.failures) > journal.rows[1] else None
        self._undo(batch, journal)
        if failure_row is not None:
            # Undo rolled the batch's clock back: stamp the kept rejection afresh so
            # timestamps stay unique within the ledger.
            failure_row = (*failure_row[:10], self._next_timestamp(batch), failure_row[11])
            batch.failures.append(failure_row)
            self.failed[failure_row[0]] = (fingerprint(chain[failed_at]), failure_row[-1])
        return [results[i] if i == failed_at else R.LINKED_EVENT_FAILED
                for i in range(len(chain))]

    def _undo(self, batch: Batch, journal: _Journal) -> None:
        for account, saved, heads in journal.accounts.values():
            account.restore(saved)
            account.restore_heads(heads)
        for transfer_id in journal.fingerprints:
            self.fingerprints.pop(transfer_id)
        for transfer_id in journal.failed:
            self.failed.pop(transfer_id)
        for pending_id, previous, previous_status in reversed(journal.pendings):
            if previous is None:
                self.pendings.pop(pending_id)
            else:
                previous.status = previous_status
        n_transfers, n_failures, n_entries, last_ts = journal.rows
        del batch.transfers[n_transfers:]
        del batch.failures[n_failures:]
        del batch.entries[n_entries:]
        batch.last_timestamp = last_ts

    def _fail(self, batch: Batch, t: Transfer, result: CreateTransferResult,
              fp: bytes, journal: _Journal | None) -> CreateTransferResult:
        """Record a state-dependent rejection, so a retry gets the same answer."""
        ts = self._next_timestamp(batch)
        self.failed[t.id] = (fp, int(result))
        if journal is not None:
            journal.failed.append(t.id)
        batch.failures.append((t.id, t.debit_account_id, t.credit_account_id, t.amount,
                               t.pending_id, t.user_data, t.timeout, t.ledger, t.code,
                               int(t.flags), ts, int(result)))
        return result

    def _apply(self, batch: Batch, t: Transfer, journal: _Journal | None
               ) -> CreateTransferResult:
        # All fields in one call: compiled, each `t.field` is a generic attribute lookup
        # (a sixth of deciding a transfer when they were read one by one).
        fields = _astuple(t)
        invalid = _validate_fields(fields, t, self.ledger)
        if invalid is not None:
            return invalid
        (tid, debit_id, credit_id, amount, t_ledger, code, flags, pending_id, timeout,
         user_data) = cast("_CheckedFields", fields)
        flags = int(flags)  # a TransferFlags member, as a plain int
        # Each id as 16 bytes once, for the fingerprint, the entry and the row.
        debit_b = _b16(debit_id)
        credit_b = _b16(credit_id)
        pending_b = _b16(pending_id)
        user_b = _b16(user_data)
        fp = _fingerprint_b16(debit_b, credit_b, amount, pending_b, user_b, timeout, t_ledger,
                              code, flags)
        # The id maps' shards are picked inline here, the hottest lines of the ledger
        # (a method call apiece cost 5% of deciding a transfer).
        shard = (tid >> _SHARD_SHIFT) & _SHARD_MASK
        earlier_failure = self.failed.shards[shard].get(tid)
        if earlier_failure is not None:
            if earlier_failure[0] == fp:
                return R(earlier_failure[1])
            return R.ID_ALREADY_FAILED
        fingerprints = self.fingerprints.shards[shard]
        earlier = fingerprints.get(tid)
        if flags & (_POST | _VOID):
            return self._resolve_pending(batch, t, fp, earlier, journal)
        if earlier is not None:
            return R.EXISTS if earlier == fp else R.EXISTS_WITH_DIFFERENT_FIELDS
        accounts = self.accounts.shards
        dr = accounts[(debit_id >> _SHARD_SHIFT) & _SHARD_MASK].get(debit_id)
        if dr is None:
            return self._fail(batch, t, R.DEBIT_ACCOUNT_NOT_FOUND, fp, journal)
        cr = accounts[(credit_id >> _SHARD_SHIFT) & _SHARD_MASK].get(credit_id)
        if cr is None:
            return self._fail(batch, t, R.CREDIT_ACCOUNT_NOT_FOUND, fp, journal)
        if dr.ledger != cr.ledger:
            return self._fail(batch, t, R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER, fp, journal)
        if dr.flags & _FROZEN:
            return self._fail(batch, t, R.DEBIT_ACCOUNT_FROZEN, fp, journal)
        if cr.flags & _FROZEN:
            return self._fail(batch, t, R.CREDIT_ACCOUNT_FROZEN, fp, journal)
        if t_ledger != dr.ledger:
            return self._fail(batch, t, R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
                              fp, journal)
        dr_debits = dr.dp + dr.dpend + amount
        cr_credits = cr.cp + cr.cpend + amount
        if dr_debits >= _AMOUNT_LIMIT:
            return self._fail(batch, t, R.OVERFLOWS_DEBITS, fp, journal)
        if cr_credits >= _AMOUNT_LIMIT:
            return self._fail(batch, t, R.OVERFLOWS_CREDITS, fp, journal)
        if dr.flags & _DEBITS_LE_CREDITS and dr_debits > dr.cp:
            return self._fail(batch, t, R.EXCEEDS_CREDITS, fp, journal)
        if cr.flags & _CREDITS_LE_DEBITS and cr_credits > cr.dp:
            return self._fail(batch, t, R.EXCEEDS_DEBITS, fp, journal)
        if cr.cap is not None and cr_credits - cr.dp > cr.cap:
            return self._fail(batch, t, R.EXCEEDS_BALANCE_CAP, fp, journal)
        if dr.limit_single is not None and amount > dr.limit_single:
            return self._fail(batch, t, R.EXCEEDS_SINGLE_LIMIT, fp, journal)
        day_used = dr.day_used if dr.day == batch.day else 0
        year_used = dr.year_used if dr.year == batch.year else 0
        if dr.limit_daily is not None and day_used + amount > dr.limit_daily:
            return self._fail(batch, t, R.EXCEEDS_DAILY_LIMIT, fp, journal)
        if dr.limit_yearly is not None and year_used + amount > dr.limit_yearly:
            return self._fail(batch, t, R.EXCEEDS_YEARLY_LIMIT, fp, journal)

        if journal is not None:
            journal.save(dr, cr)
            journal.fingerprints.append(tid)
        ts = self._next_timestamp(batch)
        is_pending = bool(flags & _PENDING)
        self._move(dr, cr, amount, is_pending, batch.day, batch.year)
        if is_pending:
            expires_at = ts + timeout * NS_PER_SECOND if timeout else 0
            self.pendings[tid] = PendingState(t, expires_at, batch.day, batch.year)
            if journal is not None:
                journal.pendings.append((tid, None, OPEN))
            if expires_at:
                heapq.heappush(self.expiry_queue, (expires_at, tid))
        fingerprints[tid] = fp
        self._store(batch, dr, cr, _b16(tid), debit_b, credit_b, amount, pending_b, user_b,
                    timeout, t_ledger, code, flags, ts)
        return _OK

    @staticmethod
    def _store(batch: Batch, dr: AccountState, cr: AccountState, tid: bytes, debit_id: bytes,
               credit_id: bytes, amount: int, pending_id: bytes, user_data: bytes,
               timeout: int, ledger: int, code: int, flags: int, ts: int) -> None:
        """Add an accepted transfer to the batch, linked into its accounts' chains."""
        debit_seq = dr.debit_count + 1
        credit_seq = cr.credit_count + 1
        batch.transfers.append((tid, debit_id, credit_id, amount, pending_id, user_data,
                                timeout, ledger, code, flags, ts, dr.debit_head, debit_seq,
                                cr.credit_head, credit_seq))
        dr.debit_head = cr.credit_head = ts
        dr.debit_count = debit_seq
        cr.credit_count = credit_seq
        batch.entries.append(encode_transfer_b16(tid, debit_id, credit_id, amount, pending_id,
                                                 user_data, timeout, ledger, code, flags, ts))

    def _resolve_pending(self, batch: Batch, t: Transfer, fp: bytes, earlier: bytes | None,
                         journal: _Journal | None) -> CreateTransferResult:
        pending = self.pendings.get(t.pending_id)
        if pending is None:
            if earlier is not None:  # the id is taken by a transfer of another kind
                return R.EXISTS_WITH_DIFFERENT_FIELDS
            if t.pending_id in self.fingerprints:
                return self._fail(batch, t, R.PENDING_TRANSFER_NOT_PENDING, fp, journal)
            return self._fail(batch, t, R.PENDING_TRANSFER_NOT_FOUND, fp, journal)
        p = pending.transfer
        posting = bool(t.flags & _POST)
        amount = t.amount or p.amount
        resolved = Transfer(
            id=t.id,
            debit_account_id=t.debit_account_id or p.debit_account_id,
            credit_account_id=t.credit_account_id or p.credit_account_id,
            amount=amount,
            ledger=t.ledger or p.ledger,
            code=t.code or p.code,
            flags=t.flags,
            pending_id=t.pending_id,
            timeout=0,
            user_data=t.user_data,
        )
        rfp = fingerprint(resolved)
        if earlier is not None:
            return R.EXISTS if earlier == rfp else R.EXISTS_WITH_DIFFERENT_FIELDS
        if resolved.debit_account_id != p.debit_account_id:
            return self._fail(batch, t, R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,
                              fp, journal)
        if resolved.credit_account_id != p.credit_account_id:
            return self._fail(batch, t, R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID,
                              fp, journal)
        if resolved.ledger != p.ledger:
            return self._fail(batch, t, R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER, fp, journal)
        if resolved.code != p.code:
            return self._fail(batch, t, R.PENDING_TRANSFER_HAS_DIFFERENT_CODE, fp, journal)
        if posting and amount > p.amount:
            return self._fail(batch, t, R.EXCEEDS_PENDING_TRANSFER_AMOUNT, fp, journal)
        if not posting and amount != p.amount:
            return self._fail(batch, t, R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT, fp, journal)
        if pending.status == POSTED:
            return self._fail(batch, t, R.PENDING_TRANSFER_ALREADY_POSTED, fp, journal)
        if pending.status == VOIDED:
            return self._fail(batch, t, R.PENDING_TRANSFER_ALREADY_VOIDED, fp, journal)
        if pending.status == EXPIRED:
            return self._fail(batch, t, R.PENDING_TRANSFER_EXPIRED, fp, journal)
        if posting:  # a void only releases a reservation, so frozen accounts allow it
            if self.accounts[p.debit_account_id].flags & _FROZEN:
                return self._fail(batch, t, R.DEBIT_ACCOUNT_FROZEN, fp, journal)
            if self.accounts[p.credit_account_id].flags & _FROZEN:
                return self._fail(batch, t, R.CREDIT_ACCOUNT_FROZEN, fp, journal)

        if journal is not None:
            journal.save(self.accounts[p.debit_account_id], self.accounts[p.credit_account_id])
            journal.fingerprints.append(t.id)
            journal.pendings.append((t.pending_id, pending, pending.status))
        dr, cr = self._settle(pending, amount, posting)
        pending.status = POSTED if posting else VOIDED
        ts = self._next_timestamp(batch)
        self.fingerprints[t.id] = rfp
        # Resolving a pending transfer is also a transfer: it keeps its own id in the
        # id space, so it can be looked up and is itself "not pending".
        self._store(batch, dr, cr, _b16(t.id), _b16(resolved.debit_account_id),
                    _b16(resolved.credit_account_id), amount, _b16(t.pending_id),
                    _b16(t.user_data), 0, resolved.ledger, resolved.code, int(t.flags), ts)
        return R.OK

    def _move(self, dr: AccountState, cr: AccountState, amount: int, pending: bool, day: int,
              year: int) -> None:
        """Book `amount` from dr to cr (reserved if pending), counting dr's usage."""
        epoch = self.epoch
        if dr.epoch != epoch:
            self._touch(dr)
        if cr.epoch != epoch:
            self._touch(cr)
        if pending:
            dr.dpend += amount
            cr.cpend += amount
        else:
            dr.dp += amount
            cr.cp += amount
        if dr.day != day:
            dr.day, dr.day_used = day, 0
        if dr.year != year:
            dr.year, dr.year_used = year, 0
        dr.day_used += amount
        dr.year_used += amount

    def _settle(self, pending: PendingState, amount: int, posting: bool
                ) -> tuple[AccountState, AccountState]:
        """Release a reservation, posting `amount` of it (posting) or none (void/expiry),
        and give back the limit usage that was not spent."""
        p = pending.transfer
        dr = self.accounts[p.debit_account_id]
        cr = self.accounts[p.credit_account_id]
        epoch = self.epoch
        if dr.epoch != epoch:
            self._touch(dr)
        if cr.epoch != epoch:
            self._touch(cr)
        dr.dpend -= p.amount
        cr.cpend -= p.amount
        if posting:
            dr.dp += amount
            cr.cp += amount
            self._refund_usage(dr, pending, p.amount - amount)
        else:
            self._refund_usage(dr, pending, p.amount)
        return dr, cr

    @staticmethod
    def _refund_usage(dr: AccountState, pending: PendingState, amount: int) -> None:
        """Give back limit usage a pending reservation took, if its period is current."""
        if amount <= 0:
            return
        if dr.day == pending.usage_day:
            dr.day_used = max(0, dr.day_used - amount)
        if dr.year == pending.usage_year:
            dr.year_used = max(0, dr.year_used - amount)

    # ----------------------------------------------------------------- queries
    def balances(self, account_ids: Iterable[int], now: int) -> list[AccountBalance | None]:
        """Balances and limit usage as of `now` (usage of a past day or year reads 0)."""
        day, year = self.calendar.day_and_year(now)
        accounts = self.accounts
        return [a.balance(day, year) if (a := accounts.get(i)) is not None else None
                for i in account_ids]

    # ------------------------------------------------------------- checkpoints
    def _touch(self, account: AccountState) -> None:
        """`account` is about to change for the first time in this epoch: copy it into
        the checkpoint under way if that still needs it, and count it as changed."""
        saving = self._saving
        if saving is not None and account.epoch == saving.epoch:
            saving.rows.append((account.definition.id, account.snapshot()))
        account.epoch = self.epoch
        self._changed.append(account)

    @property
    def checkpoint_under_way(self) -> bool:
        return self._saving is not None

    def begin_checkpoint(self) -> None:
        """Start a checkpoint of the balances as they are now (of the accounts changed
        since the last one began); `save_some` copies them out. Costs no copying here."""
        if self._saving is not None:
            raise RuntimeError("a checkpoint is already under way")
        self._saving = _Saving(self.epoch, self._changed)
        self.epoch += 1
        self._changed = []

    def save_some(self, limit: int) -> list[tuple[int, tuple[int, ...]]] | None:
        """Copy up to `limit` more accounts into the checkpoint under way; its rows
        (account id, balances as of its beginning) once every account is copied, else
        None."""
        saving = self._saving
        if saving is None:
            raise RuntimeError("no checkpoint is under way")
        accounts, epoch, rows = saving.accounts, saving.epoch, saving.rows
        end = min(len(accounts), saving.copied_upto + limit)
        for account in accounts[saving.copied_upto:end]:
            if account.epoch == epoch:  # unchanged since: copy it now
                rows.append((account.definition.id, account.snapshot()))
                account.epoch = 0
        saving.copied_upto = end
        if end < len(accounts):
            return None
        self._saving = None
        return rows

    def take_checkpoint(self) -> list[tuple[int, tuple[int, ...]]]:
        """The balances, as of now, of every account changed since the last checkpoint
        that was completed (one under way is folded in), all copied at once."""
        if self._saving is not None:
            # Its accounts not copied yet and those copied on change are all in one of
            # the two epochs; the rows it holds are older than now, so copy afresh.
            unfinished, self._saving = self._saving, None
            self._count_as_changed(unfinished.accounts)
        self.begin_checkpoint()
        return self.save_some(len(self.accounts)) or []  # each account is in it once at most

    def mark_all_dirty(self) -> None:
        """Count every account as changed (a checkpoint write failed: the next one
        rewrites them all)."""
        self._count_as_changed(self.accounts.values())

    def _count_as_changed(self, accounts: Iterable[AccountState]) -> None:
        """Put each of `accounts` among the current epoch's changes (once)."""
        epoch, changed = self.epoch, self._changed
        for account in accounts:
            if account.epoch != epoch:
                account.epoch = epoch
                changed.append(account)

    def total_balance(self) -> tuple[int, int]:
        """(sum of debits posted, sum of credits posted): equal in every ledger."""
        debits = credits = 0
        for account in self.accounts.values():
            debits += account.dp
            credits += account.cp
        return debits, credits


def _due_entry_is_live(pendings: IdMap[PendingState], expires_at: int,
                       pending_id: int) -> bool:
    """An expiry-queue entry still stands for an open pending transfer (entries of
    resolved transfers, or of a chain that was undone, are skipped lazily)."""
    pending = pendings.get(pending_id)
    return pending is not None and pending.status == OPEN and pending.expires_at == expires_at


def _is_int(value: object) -> bool:
    """An int or IntFlag/IntEnum, but not a bool (True is not an amount)."""
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _is_amount(value: object, allow_zero: bool = False) -> bool:
    return _is_int(value) and (0 if allow_zero else 1) <= value < _AMOUNT_LIMIT  # type: ignore[operator]


def _is_linked(t: Any) -> bool:
    flags = t.flags
    return _is_int(flags) and bool(flags & _LINKED)


def _validate_fields(fields: tuple[Any, ...], t: Transfer, ledger: int
                     ) -> CreateTransferResult | None:
    """Checks that need nothing but the transfer itself (never stored). `fields` are
    `t`'s, in order, as they came (Any: see `_validate_account`)."""
    (tid, debit_id, credit_id, amount, t_ledger, code, flags, pending_id, timeout,
     user_data) = fields
    # Fast path: a plain transfer whose fields are all plain ints in range.
    if (
        type(flags) is int
        and not flags & ~(_LINKED | _PENDING)
        and type(tid) is int
        and type(debit_id) is int
        and type(credit_id) is int
        and type(amount) is int
        and type(t_ledger) is int
        and type(code) is int
        and type(user_data) is int
        and type(pending_id) is int
        and pending_id == 0
        and type(timeout) is int
        and (timeout == 0 or flags & _PENDING)
        and 0 < tid < U128_LIMIT
        and 0 < debit_id < U128_LIMIT
        and 0 < credit_id < U128_LIMIT
        and debit_id != credit_id
        and 0 < amount < _AMOUNT_LIMIT
        and t_ledger == ledger
        and 0 < code < _U16_LIMIT
        and 0 <= user_data < U128_LIMIT
        and 0 <= timeout < _U32_LIMIT
    ):
        return None
    return _diagnose_fields(t, ledger)


def _diagnose_fields(t: Any, ledger: int) -> CreateTransferResult | None:
    """The precise result code for a transfer the fast path did not pass."""
    tid = t.id
    if not _is_int(tid) or tid < 0 or tid >= U128_LIMIT:
        return R.ID_INVALID
    if tid == 0:
        return R.ID_MUST_NOT_BE_ZERO
    flags = t.flags
    if not _is_int(flags) or flags < 0 or flags & ~TRANSFER_FLAGS_KNOWN:
        return R.FLAGS_INVALID
    kinds = flags & (_PENDING | _POST | _VOID)
    if kinds & (kinds - 1):
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    resolving = bool(kinds & (_POST | _VOID))
    for value, result in ((t.debit_account_id, R.DEBIT_ACCOUNT_ID_INVALID),
                          (t.credit_account_id, R.CREDIT_ACCOUNT_ID_INVALID)):
        if not _is_int(value) or value < 0 or value >= U128_LIMIT:
            return result
        if value == 0 and not resolving:
            return result
    if t.debit_account_id == t.credit_account_id and t.debit_account_id:
        return R.ACCOUNTS_MUST_BE_DIFFERENT
    pending_id = t.pending_id
    if not _is_int(pending_id) or pending_id < 0 or pending_id >= U128_LIMIT:
        return R.PENDING_ID_INVALID
    if resolving:
        if pending_id == 0:
            return R.PENDING_ID_MUST_NOT_BE_ZERO
        if pending_id == tid:
            return R.PENDING_ID_MUST_BE_DIFFERENT
    elif pending_id != 0:
        return R.PENDING_ID_MUST_BE_ZERO
    timeout = t.timeout
    if not _is_int(timeout) or not 0 <= timeout < _U32_LIMIT:
        return R.TIMEOUT_INVALID
    if timeout and not flags & _PENDING:
        return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    amount = t.amount
    if not _is_int(amount) or amount < 0 or amount >= _AMOUNT_LIMIT:
        return R.AMOUNT_INVALID
    if amount == 0 and not resolving:
        return R.AMOUNT_MUST_NOT_BE_ZERO
    for value, result, allow_zero in ((t.ledger, R.LEDGER_INVALID, resolving),
                                      (t.code, R.CODE_INVALID, resolving)):
        limit = _U32_LIMIT if result is R.LEDGER_INVALID else _U16_LIMIT
        if not _is_int(value) or value < 0 or value >= limit:
            return result
        if value == 0 and not allow_zero:
            return result
    if t.ledger and t.ledger != ledger:
        return R.LEDGER_NOT_SERVED
    if not _is_int(t.user_data) or not 0 <= t.user_data < U128_LIMIT:
        return R.USER_DATA_INVALID
    return None
