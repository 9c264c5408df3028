"""Model-based test of the ledger core: `LedgerState` against a plain reference model.

The model below is written from the rules (TigerBeetle semantics as `settlement/core/types.py`
and the design brief state them), not from `state.py`: dicts of integers, no journal, no
heap, no fingerprints, a fixed UTC+8 calendar for Asia/Shanghai. Hypothesis drives both
with random requests (accounts; plain, pending, post, void transfers; linked chains, some
failing in the middle, some left open; retries with the same and with changed fields),
clock moves across timeouts, local midnight and new year, and writer restarts that
rebuild the state from the committed entries. After every step the balances, the limit
usage, the block entries and the next expiry must agree, and the ledger's invariants hold.

A failure prints a `@reproduce_failure` line (print_blob) that replays the example.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

import msgspec
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from settlement.core.state import EXPIRED, OPEN, POSTED, VOIDED, AccountState, LedgerState
from settlement.core.types import Account, CreateAccountResult, CreateTransferResult, Transfer

R = CreateTransferResult
A = CreateAccountResult

LEDGER = 1
NS = 1_000_000_000
AMOUNT_LIMIT = 1 << 63
U128 = 1 << 128
U32 = 1 << 32
U16 = 1 << 16

# Flags, spelled out rather than imported, so the model does not share the code's constants.
LINKED, PENDING, POST, VOID = 1, 2, 4, 8
DEBITS_MUST_NOT_EXCEED_CREDITS, CREDITS_MUST_NOT_EXCEED_DEBITS = 2, 4

SHANGHAI = timezone(timedelta(hours=8))  # UTC+8 all year: no daylight saving since 1991
UNIX_EPOCH_DATE = date(1970, 1, 1)

# Block entries, as the module docstring of cbdc/receipts.py lays them out.
ENTRY_ACCOUNT, ENTRY_TRANSFER, ENTRY_EXPIRY = 1, 2, 3
TRANSFER_ENTRY = struct.Struct(">B16s16s16sQ16s16sIIHHQ")
ACCOUNT_ENTRY = struct.Struct(">B16s16sIHHQQQQQ")
ABSENT = (1 << 64) - 1

FIELD_ERRORS = frozenset(r for r in R if R.ID_MUST_NOT_BE_ZERO <= r <= R.LEDGER_NOT_SERVED)
CHAIN_RESULTS = frozenset({R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN})


def local_day_and_year(ts_ns: int) -> tuple[int, int]:
    """(proleptic ordinal of the local date, local year) in Asia/Shanghai."""
    local_date = UNIX_EPOCH_DATE + timedelta(days=(ts_ns // NS + 8 * 3600) // 86400)
    return local_date.toordinal(), local_date.year


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def field_tuple(t: Transfer) -> tuple[int, ...]:
    """The fields that decide whether a reused id is the same transfer (exact equality)."""
    return (t.debit_account_id, t.credit_account_id, t.amount, t.pending_id, t.user_data,
            t.timeout, t.ledger, t.code, int(t.flags))


def resolved_tuple(t: Transfer, p: Transfer) -> tuple[int, ...]:
    """A post/void's fields with the zeros filled in from its pending transfer."""
    return (t.debit_account_id or p.debit_account_id, t.credit_account_id or p.credit_account_id,
            t.amount or p.amount, t.pending_id, t.user_data, 0, t.ledger or p.ledger,
            t.code or p.code, int(t.flags))


# ------------------------------------------------------------------------ the model
@dataclass
class ModelAccount:
    definition: Account
    debits_posted: int = 0
    debits_pending: int = 0
    credits_posted: int = 0
    credits_pending: int = 0
    used_by_day: dict[int, int] = field(default_factory=dict)
    used_by_year: dict[int, int] = field(default_factory=dict)

    def copy(self) -> ModelAccount:
        return replace(self, used_by_day=dict(self.used_by_day),
                       used_by_year=dict(self.used_by_year))


@dataclass
class ModelPending:
    transfer: Transfer
    day: int
    year: int
    expires_at: int | None = None  # None until its batch gives it a timestamp; 0: no timeout
    status: str = "open"


class Model:
    """What the ledger should do, written as plainly as possible."""

    def __init__(self) -> None:
        self.accounts: dict[int, ModelAccount] = {}
        self.transfers: dict[int, tuple[int, ...]] = {}  # accepted id -> fields as stored
        self.failures: dict[int, tuple[tuple[int, ...], R]] = {}  # id -> (fields, result)
        self.pendings: dict[int, ModelPending] = {}
        self.entries: list[tuple[int, int]] = []  # (kind, id) expected in this batch's block
        self.day = self.year = 0

    # ------------------------------------------------------------------ batches
    def begin(self, now: int) -> None:
        self.day, self.year = local_day_and_year(now)
        self.entries = []
        due = sorted((p.expires_at, pending_id) for pending_id, p in self.pendings.items()
                     if p.status == "open" and p.expires_at and p.expires_at <= now)
        for _, pending_id in due:
            pending = self.pendings[pending_id]
            self.release(pending, posted=0)
            pending.status = "expired"
            self.entries.append((ENTRY_EXPIRY, pending_id))

    def release(self, pending: ModelPending, posted: int) -> None:
        """End a reservation, posting `posted` of it; unspent limit usage is given back."""
        t = pending.transfer
        debit, credit = self.accounts[t.debit_account_id], self.accounts[t.credit_account_id]
        debit.debits_pending -= t.amount
        credit.credits_pending -= t.amount
        debit.debits_posted += posted
        credit.credits_posted += posted
        debit.used_by_day[pending.day] -= t.amount - posted
        debit.used_by_year[pending.year] -= t.amount - posted

    def used_today(self, account: ModelAccount) -> int:
        return account.used_by_day.get(self.day, 0)

    def used_this_year(self, account: ModelAccount) -> int:
        return account.used_by_year.get(self.year, 0)

    # ----------------------------------------------------------------- accounts
    def create_account(self, a: Account) -> A:
        if not is_int(a.id) or not 0 <= a.id < U128:
            return A.ID_INVALID
        if a.id == 0:
            return A.ID_MUST_NOT_BE_ZERO
        if not is_int(a.flags) or a.flags < 0 or a.flags & ~6:
            return A.FLAGS_INVALID
        if a.flags & DEBITS_MUST_NOT_EXCEED_CREDITS and a.flags & CREDITS_MUST_NOT_EXCEED_DEBITS:
            return A.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if not is_int(a.ledger) or not 0 < a.ledger < U32:
            return A.LEDGER_INVALID
        if not is_int(a.code) or not 0 < a.code < U16:
            return A.CODE_INVALID
        if not is_int(a.user_data) or not 0 <= a.user_data < U128:
            return A.USER_DATA_INVALID
        if a.balance_cap is not None and not (is_int(a.balance_cap)
                                              and 0 <= a.balance_cap < AMOUNT_LIMIT):
            return A.BALANCE_CAP_INVALID
        for limit in (a.debit_limit_single, a.debit_limit_daily, a.debit_limit_yearly):
            if limit is not None and not (is_int(limit) and 0 <= limit < AMOUNT_LIMIT):
                return A.DEBIT_LIMIT_INVALID
        if a.id in self.accounts:
            same = self.accounts[a.id].definition == a
            return A.EXISTS if same else A.EXISTS_WITH_DIFFERENT_FIELDS
        if a.ledger != LEDGER:
            return A.LEDGER_NOT_SERVED
        self.accounts[a.id] = ModelAccount(a)
        self.entries.append((ENTRY_ACCOUNT, a.id))
        return A.OK

    # ---------------------------------------------------------------- transfers
    def submit(self, transfers: list[Transfer]) -> list[R]:
        results: list[R] = []
        index = 0
        while index < len(transfers):
            if is_int(transfers[index].flags) and transfers[index].flags & LINKED:
                end = index
                while end < len(transfers) and is_int(transfers[end].flags) and (
                        transfers[end].flags & LINKED):
                    end += 1
                results += self.apply_chain(transfers[index:end + 1],
                                            open_chain=end == len(transfers))
                index = end + 1
            else:
                results.append(self.apply(transfers[index]))
                index += 1
        return results

    def apply_chain(self, chain: list[Transfer], open_chain: bool) -> list[R]:
        saved = self.copy()
        results: list[R] = []
        for position, t in enumerate(chain):
            if open_chain and position == len(chain) - 1:
                result = R.LINKED_EVENT_CHAIN_OPEN
            else:
                result = self.apply(t)
            results.append(result)
            if result not in (R.OK, R.EXISTS):
                # Undo the whole chain, but keep the failing event's stored rejection.
                new_failure = self.failures.get(t.id) if t.id not in saved.failures else None
                self.restore(saved)
                if new_failure is not None:
                    self.failures[t.id] = new_failure
                return [result if i == position else R.LINKED_EVENT_FAILED
                        for i in range(len(chain))]
        return results

    def copy(self) -> Model:
        other = Model()
        other.accounts = {k: v.copy() for k, v in self.accounts.items()}
        other.transfers = dict(self.transfers)
        other.failures = dict(self.failures)
        other.pendings = {k: replace(v) for k, v in self.pendings.items()}
        other.entries = list(self.entries)
        return other

    def restore(self, saved: Model) -> None:
        self.accounts, self.transfers, self.failures = (saved.accounts, saved.transfers,
                                                        saved.failures)
        self.pendings, self.entries = saved.pendings, saved.entries

    def reject(self, t: Transfer, result: R) -> R:
        self.failures[t.id] = (field_tuple(t), result)
        return result

    def apply(self, t: Transfer) -> R:
        invalid = field_error(t)
        if invalid is not None:
            return invalid
        if t.id in self.failures:
            fields, result = self.failures[t.id]
            return result if fields == field_tuple(t) else R.ID_ALREADY_FAILED
        if t.flags & (POST | VOID):
            return self.resolve(t)
        if t.id in self.transfers:
            same = self.transfers[t.id] == field_tuple(t)
            return R.EXISTS if same else R.EXISTS_WITH_DIFFERENT_FIELDS
        debit = self.accounts.get(t.debit_account_id)
        if debit is None:
            return self.reject(t, R.DEBIT_ACCOUNT_NOT_FOUND)
        credit = self.accounts.get(t.credit_account_id)
        if credit is None:
            return self.reject(t, R.CREDIT_ACCOUNT_NOT_FOUND)
        amount = t.amount
        debits = debit.debits_posted + debit.debits_pending + amount
        credits = credit.credits_posted + credit.credits_pending + amount
        d, c = debit.definition, credit.definition
        if debits >= AMOUNT_LIMIT:
            return self.reject(t, R.OVERFLOWS_DEBITS)
        if credits >= AMOUNT_LIMIT:
            return self.reject(t, R.OVERFLOWS_CREDITS)
        if d.flags & DEBITS_MUST_NOT_EXCEED_CREDITS and debits > debit.credits_posted:
            return self.reject(t, R.EXCEEDS_CREDITS)
        if c.flags & CREDITS_MUST_NOT_EXCEED_DEBITS and credits > credit.debits_posted:
            return self.reject(t, R.EXCEEDS_DEBITS)
        if c.balance_cap is not None and credits - credit.debits_posted > c.balance_cap:
            return self.reject(t, R.EXCEEDS_BALANCE_CAP)
        if d.debit_limit_single is not None and amount > d.debit_limit_single:
            return self.reject(t, R.EXCEEDS_SINGLE_LIMIT)
        if d.debit_limit_daily is not None and (
                self.used_today(debit) + amount > d.debit_limit_daily):
            return self.reject(t, R.EXCEEDS_DAILY_LIMIT)
        if d.debit_limit_yearly is not None and (
                self.used_this_year(debit) + amount > d.debit_limit_yearly):
            return self.reject(t, R.EXCEEDS_YEARLY_LIMIT)
        if t.flags & PENDING:
            debit.debits_pending += amount
            credit.credits_pending += amount
            self.pendings[t.id] = ModelPending(t, self.day, self.year)
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        debit.used_by_day[self.day] = self.used_today(debit) + amount
        debit.used_by_year[self.year] = self.used_this_year(debit) + amount
        self.transfers[t.id] = field_tuple(t)
        self.entries.append((ENTRY_TRANSFER, t.id))
        return R.OK

    def resolve(self, t: Transfer) -> R:
        pending = self.pendings.get(t.pending_id)
        if t.id in self.transfers:
            # An id already in the ledger is answered as such, whatever else is wrong.
            if pending is None:
                return R.EXISTS_WITH_DIFFERENT_FIELDS
            same = self.transfers[t.id] == resolved_tuple(t, pending.transfer)
            return R.EXISTS if same else R.EXISTS_WITH_DIFFERENT_FIELDS
        if pending is None:
            if t.pending_id in self.transfers:
                return self.reject(t, R.PENDING_TRANSFER_NOT_PENDING)
            return self.reject(t, R.PENDING_TRANSFER_NOT_FOUND)
        p = pending.transfer
        amount = t.amount or p.amount
        if t.debit_account_id not in (0, p.debit_account_id):
            return self.reject(t, R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID)
        if t.credit_account_id not in (0, p.credit_account_id):
            return self.reject(t, R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID)
        if t.ledger not in (0, p.ledger):
            return self.reject(t, R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER)
        if t.code not in (0, p.code):
            return self.reject(t, R.PENDING_TRANSFER_HAS_DIFFERENT_CODE)
        posting = bool(t.flags & POST)
        if posting and amount > p.amount:
            return self.reject(t, R.EXCEEDS_PENDING_TRANSFER_AMOUNT)
        if not posting and amount != p.amount:
            return self.reject(t, R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT)
        if pending.status == "posted":
            return self.reject(t, R.PENDING_TRANSFER_ALREADY_POSTED)
        if pending.status == "voided":
            return self.reject(t, R.PENDING_TRANSFER_ALREADY_VOIDED)
        if pending.status == "expired":
            return self.reject(t, R.PENDING_TRANSFER_EXPIRED)
        self.release(pending, posted=amount if posting else 0)
        pending.status = "posted" if posting else "voided"
        self.transfers[t.id] = resolved_tuple(t, p)
        self.entries.append((ENTRY_TRANSFER, t.id))
        return R.OK


def field_error(t: Transfer) -> R | None:
    """Result codes decided from the transfer alone, in the documented order."""
    if not is_int(t.id) or not 0 <= t.id < U128:
        return R.ID_INVALID
    if t.id == 0:
        return R.ID_MUST_NOT_BE_ZERO
    flags = t.flags
    if not is_int(flags) or flags < 0 or flags & ~(LINKED | PENDING | POST | VOID):
        return R.FLAGS_INVALID
    if sum(1 for kind in (PENDING, POST, VOID) if flags & kind) > 1:
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    resolving = bool(flags & (POST | VOID))
    for value, result in ((t.debit_account_id, R.DEBIT_ACCOUNT_ID_INVALID),
                          (t.credit_account_id, R.CREDIT_ACCOUNT_ID_INVALID)):
        if not is_int(value) or not 0 <= value < U128 or (value == 0 and not resolving):
            return result
    if t.debit_account_id == t.credit_account_id != 0:
        return R.ACCOUNTS_MUST_BE_DIFFERENT
    if not is_int(t.pending_id) or not 0 <= t.pending_id < U128:
        return R.PENDING_ID_INVALID
    if resolving and t.pending_id == 0:
        return R.PENDING_ID_MUST_NOT_BE_ZERO
    if resolving and t.pending_id == t.id:
        return R.PENDING_ID_MUST_BE_DIFFERENT
    if not resolving and t.pending_id != 0:
        return R.PENDING_ID_MUST_BE_ZERO
    if not is_int(t.timeout) or not 0 <= t.timeout < U32:
        return R.TIMEOUT_INVALID
    if t.timeout and not flags & PENDING:
        return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if not is_int(t.amount) or not 0 <= t.amount < AMOUNT_LIMIT:
        return R.AMOUNT_INVALID
    if t.amount == 0 and not resolving:
        return R.AMOUNT_MUST_NOT_BE_ZERO
    if not is_int(t.ledger) or not 0 <= t.ledger < U32 or (t.ledger == 0 and not resolving):
        return R.LEDGER_INVALID
    if not is_int(t.code) or not 0 <= t.code < U16 or (t.code == 0 and not resolving):
        return R.CODE_INVALID
    if t.ledger and t.ledger != LEDGER:
        return R.LEDGER_NOT_SERVED
    if not is_int(t.user_data) or not 0 <= t.user_data < U128:
        return R.USER_DATA_INVALID
    return None


# ------------------------------------------------------------ committed-entry decoding
def decode_entry(entry: bytes) -> tuple[int, int, int]:
    """(kind, id, timestamp) of a block entry."""
    return entry[0], int.from_bytes(entry[1:17], "big"), int.from_bytes(entry[-8:], "big")


def decode_account(entry: bytes) -> tuple[Account, int]:
    (_, raw_id, raw_user_data, ledger, code, flags, cap, single, daily, yearly,
     ts) = ACCOUNT_ENTRY.unpack(entry)

    def optional(value: int) -> int | None:
        return None if value == ABSENT else value

    account = Account(id=int.from_bytes(raw_id, "big"), ledger=ledger, code=code, flags=flags,
                      user_data=int.from_bytes(raw_user_data, "big"), balance_cap=optional(cap),
                      debit_limit_single=optional(single), debit_limit_daily=optional(daily),
                      debit_limit_yearly=optional(yearly))
    return account, ts


def decode_transfer(entry: bytes) -> tuple[Transfer, int]:
    (_, raw_id, debit, credit, amount, pending_id, user_data, timeout, ledger, code, flags,
     ts) = TRANSFER_ENTRY.unpack(entry)
    t = Transfer(id=int.from_bytes(raw_id, "big"), debit_account_id=int.from_bytes(debit, "big"),
                 credit_account_id=int.from_bytes(credit, "big"), amount=amount,
                 pending_id=int.from_bytes(pending_id, "big"),
                 user_data=int.from_bytes(user_data, "big"), timeout=timeout, ledger=ledger,
                 code=code, flags=flags)
    return t, ts


# ------------------------------------------------------------------ strategies
START_TIMES = [
    int(datetime(2024, 12, 31, 23, 59, 50, tzinfo=SHANGHAI).timestamp()) * NS,  # new year soon
    int(datetime(2025, 3, 10, 23, 59, 58, tzinfo=SHANGHAI).timestamp()) * NS,  # midnight soon
    int(datetime(2025, 7, 1, 9, 0, 0, tzinfo=SHANGHAI).timestamp()) * NS,
]
# Mostly the mint (1) pays wallets; 7 is never created (*_ACCOUNT_NOT_FOUND).
DEBIT_IDS = st.sampled_from([1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7])
CREDIT_IDS = st.sampled_from([2, 2, 2, 3, 3, 3, 4, 5, 6, 1, 7])
# One draw in 13 is a huge (overflow) or invalid amount.
AMOUNTS = st.one_of([st.integers(1, 300)] * 12
                    + [st.sampled_from([2**62, AMOUNT_LIMIT - 1, 0, -1])])
TIMEOUTS = st.sampled_from([0, 0, 1, 2, 5, 60])
LIMITS = st.one_of(st.none(), st.none(), st.integers(0, 600))
NEW_ACCOUNTS = st.builds(
    Account,
    id=st.sampled_from([2, 3, 4, 5, 6, 6, 0]),
    ledger=st.sampled_from([LEDGER, LEDGER, LEDGER, 2]),
    code=st.sampled_from([1, 2]),
    flags=st.sampled_from([0, 0, DEBITS_MUST_NOT_EXCEED_CREDITS, DEBITS_MUST_NOT_EXCEED_CREDITS,
                           CREDITS_MUST_NOT_EXCEED_DEBITS, 6, 1]),
    balance_cap=st.one_of(st.none(), st.integers(0, 1000)),
    debit_limit_single=LIMITS,
    debit_limit_daily=LIMITS,
    debit_limit_yearly=LIMITS,
)
UNKNOWN_PENDING_ID = 10**9


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.state = LedgerState(ledger=LEDGER)
        self.now = START_TIMES[0]
        self.next_id = 1000
        self.last_entry_ts = 0
        # Every request and its first answers, for retries.
        self.requests: list[tuple[list[Transfer], list[R]]] = []
        # What a store would have committed: per batch (time, entries, rejection rows).
        self.log: list[tuple[int, list[bytes], list[tuple[int, ...]]]] = []
        # Each account's history chains so far: (newest timestamp, count) per side.
        self.chains: dict[tuple[int, str], tuple[int, int]] = {}

    # --------------------------------------------------------------- helpers
    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def run_batch(self, accounts: Sequence[Account] = (), transfers: Sequence[Transfer] = ()
                  ) -> list[R]:
        """One batch as the writer runs it: begin, requests, finish; compare every answer."""
        batch = self.state.begin(self.now)
        self.model.begin(self.now)
        if accounts:
            got_accounts = self.state.create_accounts(batch, list(accounts))
            expected_accounts = [self.model.create_account(a) for a in accounts]
            assert got_accounts == expected_accounts, (accounts, got_accounts)
            for account_result in got_accounts:
                event(f"account {account_result.name}")
        results: list[R] = []
        if transfers:
            results = self.state.create_transfers(batch, list(transfers))
            expected = self.model.submit(list(transfers))
            assert results == expected, list(zip(transfers, results, expected, strict=True))
            self.requests.append((list(transfers), results))
            for result in results:
                event(f"transfer {result.name}")
        self.state.finish(batch)
        self.check_entries(batch.entries)
        self.check_history_links(batch.transfers)
        self.log.append((self.now, list(batch.entries), list(batch.failures)))
        return results

    def check_history_links(self, rows: list[tuple[int, ...]]) -> None:
        """Each accepted transfer names, for its debit account's debits and its credit
        account's credits, the transfer before it there and its own position: after
        failed linked chains and restarts too."""
        for row in rows:
            debit, credit, ts = row[1], row[2], row[10]
            debit_prev, debit_count = self.chains.get((debit, "debit"), (0, 0))
            credit_prev, credit_count = self.chains.get((credit, "credit"), (0, 0))
            assert row[11:] == (debit_prev, debit_count + 1, credit_prev, credit_count + 1)
            self.chains[debit, "debit"] = (ts, debit_count + 1)
            self.chains[credit, "credit"] = (ts, credit_count + 1)

    def check_entries(self, entries: list[bytes]) -> None:
        decoded = [decode_entry(e) for e in entries]
        if any(kind == ENTRY_EXPIRY for kind, _, _ in decoded):
            event("expiry")
        assert [(kind, ident) for kind, ident, _ in decoded] == self.model.entries
        for kind, ident, ts in decoded:
            assert ts >= self.now
            assert ts > self.last_entry_ts, "entry timestamps must strictly increase"
            self.last_entry_ts = ts
            pending = self.model.pendings.get(ident)
            if kind == ENTRY_TRANSFER and pending is not None and pending.expires_at is None:
                timeout = pending.transfer.timeout
                pending.expires_at = ts + timeout * NS if timeout else 0

    def rooms(self, debit_id: int, credit_id: int) -> list[int]:
        """Positive amounts that would just fit each bound on these two accounts."""
        rooms: list[int] = []
        debit = self.model.accounts.get(debit_id)
        credit = self.model.accounts.get(credit_id)
        if debit is not None:
            d = debit.definition
            if d.flags & DEBITS_MUST_NOT_EXCEED_CREDITS:
                rooms.append(debit.credits_posted - debit.debits_posted - debit.debits_pending)
            if d.debit_limit_single is not None:
                rooms.append(d.debit_limit_single)
            if d.debit_limit_daily is not None:
                rooms.append(d.debit_limit_daily - self.model.used_today(debit))
            if d.debit_limit_yearly is not None:
                rooms.append(d.debit_limit_yearly - self.model.used_this_year(debit))
        if credit is not None:
            c = credit.definition
            balance = credit.credits_posted + credit.credits_pending - credit.debits_posted
            if c.balance_cap is not None:
                rooms.append(c.balance_cap - balance)
            if c.flags & CREDITS_MUST_NOT_EXCEED_DEBITS:
                rooms.append(credit.debits_posted - credit.credits_posted
                             - credit.credits_pending)
        return [room for room in rooms if 0 < room < AMOUNT_LIMIT - 1]

    def draw_transfer(self, data: st.DataObject, drawn_pendings: list[Transfer]) -> Transfer:
        kind = data.draw(st.sampled_from(["plain"] * 3 + ["pending"] * 2 + ["post"] * 2
                                         + ["void"]), label="kind")
        linked = data.draw(st.sampled_from([0, 0, 0, 0, LINKED]), label="linked")
        user_data = data.draw(st.sampled_from([0, 0, 7]), label="user_data")
        if kind in ("plain", "pending"):
            debit_id = data.draw(DEBIT_IDS, label="debit")
            credit_id = data.draw(CREDIT_IDS, label="credit")
            amount = data.draw(AMOUNTS, label="amount")
            rooms = self.rooms(debit_id, credit_id)
            if rooms and data.draw(st.sampled_from([False, False, True]), label="boundary"):
                # Exactly what a limit, cap or balance still allows, or one fen more.
                amount = data.draw(st.sampled_from(rooms), label="room") + data.draw(
                    st.sampled_from([0, 1]), label="over")
            t = Transfer(
                id=self.take_id(),
                debit_account_id=debit_id,
                credit_account_id=credit_id,
                amount=amount,
                ledger=LEDGER,
                code=data.draw(st.sampled_from([1, 1, 2]), label="code"),
                flags=linked | (PENDING if kind == "pending" else 0),
                timeout=data.draw(TIMEOUTS, label="timeout") if kind == "pending" else 0,
                user_data=user_data,
            )
            if kind == "pending":
                drawn_pendings.append(t)
            return t
        candidates = [p.transfer for p in self.model.pendings.values()] + drawn_pendings
        not_pending = [i for i in self.model.transfers if i not in self.model.pendings]
        target = data.draw(st.sampled_from(["pending"] * 10 + ["not_pending", "unknown"]),
                           label="target")
        debit = credit = 0
        full, code = 50, 1
        if target == "pending" and candidates:
            p = data.draw(st.sampled_from(candidates), label="pending")
            pending_id, full, code = p.id, p.amount, p.code
            debit, credit = p.debit_account_id, p.credit_account_id
        elif target == "not_pending" and not_pending:
            pending_id = data.draw(st.sampled_from(not_pending), label="not_pending")
        else:
            pending_id = UNKNOWN_PENDING_ID
        amount_choices = [0, 0, full, max(1, full // 2), full + 1]
        if kind == "void":
            amount_choices = [0, 0, full, full - 1]
        return Transfer(
            id=self.take_id(),
            debit_account_id=data.draw(st.sampled_from([0] * 6 + [debit] * 3 + [5]),
                                       label="debit"),
            credit_account_id=data.draw(st.sampled_from([0] * 6 + [credit] * 3 + [6]),
                                        label="credit"),
            amount=data.draw(st.sampled_from(amount_choices), label="amount"),
            ledger=data.draw(st.sampled_from([0, 0, LEDGER]), label="ledger"),
            code=data.draw(st.sampled_from([0] * 6 + [code] * 3 + [code + 1]), label="code"),
            flags=linked | (POST if kind == "post" else VOID),
            pending_id=pending_id,
            user_data=user_data,
        )

    # ----------------------------------------------------------------- rules
    @initialize(start=st.sampled_from(START_TIMES),
                wallet=NEW_ACCOUNTS.map(lambda a: msgspec.structs.replace(
                    a, id=2, ledger=LEDGER, flags=DEBITS_MUST_NOT_EXCEED_CREDITS)),
                other=NEW_ACCOUNTS.map(lambda a: msgspec.structs.replace(
                    a, id=3, ledger=LEDGER, flags=0)),
                limited=NEW_ACCOUNTS.map(lambda a: msgspec.structs.replace(
                    a, id=4, ledger=LEDGER, flags=CREDITS_MUST_NOT_EXCEED_DEBITS)))
    def open_ledger(self, start: int, wallet: Account, other: Account, limited: Account
                    ) -> None:
        """A mint that may go negative, a no-overdraft wallet, a plain account and one
        whose credits must not exceed its debits, with random caps and limits."""
        self.now = start
        self.run_batch(accounts=[Account(id=1, ledger=LEDGER, code=1), wallet, other, limited])

    @rule(accounts=st.lists(NEW_ACCOUNTS, min_size=1, max_size=3), data=st.data())
    def create_accounts(self, accounts: list[Account], data: st.DataObject) -> None:
        transfers: list[Transfer] = []
        if data.draw(st.booleans(), label="transfers in the same batch"):
            drawn: list[Transfer] = []
            transfers = [self.draw_transfer(data, drawn)
                         for _ in range(data.draw(st.integers(1, 3)))]
        self.run_batch(accounts=accounts, transfers=transfers)

    @precondition(lambda self: self.model.accounts)
    @rule(data=st.data())
    def retry_account(self, data: st.DataObject) -> None:
        """An existing account again: same fields (EXISTS) or one changed."""
        account = data.draw(st.sampled_from([a.definition for a in self.model.accounts.values()]))
        change = data.draw(st.sampled_from(["none", "code", "cap", "flags"]))
        if change == "code":
            account = msgspec.structs.replace(account, code=account.code % 2 + 1)
        elif change == "cap":
            account = msgspec.structs.replace(account, balance_cap=(account.balance_cap or 0) + 1)
        elif change == "flags":
            account = msgspec.structs.replace(account, flags=account.flags ^ 2)
        results = self.run_batch(accounts=[account])
        assert results == []

    @rule(data=st.data())
    def submit_transfers(self, data: st.DataObject) -> None:
        """One request of 1..6 transfers; linked flags make chains, some left open."""
        drawn: list[Transfer] = []
        transfers = [self.draw_transfer(data, drawn)
                     for _ in range(data.draw(st.integers(1, 6), label="count"))]
        self.run_batch(transfers=transfers)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def retry_request(self, data: st.DataObject) -> None:
        """A client retries a whole earlier request with the same fields."""
        transfers, first = data.draw(st.sampled_from(self.requests), label="request")
        again = self.run_batch(transfers=transfers)
        in_chain = False
        for t, before, now in zip(transfers, first, again, strict=True):
            linked = is_int(t.flags) and bool(t.flags & LINKED)
            member = in_chain or linked
            in_chain = linked
            if before in (R.OK, R.EXISTS):
                assert now is R.EXISTS, (t, before, now)
            elif before not in CHAIN_RESULTS:
                # A stored or field-decided answer is given again (unless an earlier
                # event of the same chain now fails first).
                allowed = {before, R.LINKED_EVENT_FAILED} if member else {before}
                assert now in allowed, (t, before, now)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def retry_with_changed_fields(self, data: st.DataObject) -> None:
        """An earlier id submitted alone with one field changed."""
        transfers, first = data.draw(st.sampled_from(self.requests), label="request")
        index = data.draw(st.integers(0, len(transfers) - 1), label="index")
        t, before = transfers[index], first[index]
        change = data.draw(st.sampled_from(["amount", "amount_by_2_61", "user_data", "swap",
                                            "code", "timeout", "pending",
                                            "as_post_of_unknown", "unlink"]))
        flags = t.flags & ~LINKED if is_int(t.flags) else t.flags
        if change == "amount" and is_int(t.amount):
            t = msgspec.structs.replace(t, amount=t.amount + 1)
        elif change == "amount_by_2_61" and is_int(t.amount):
            # Equal under Python's hash() of ints (mod 2**61-1), yet another amount.
            t = msgspec.structs.replace(t, amount=t.amount + 2**61 - 1)
        elif change == "user_data":
            t = msgspec.structs.replace(t, user_data=t.user_data + 1)
        elif change == "swap":
            t = msgspec.structs.replace(t, debit_account_id=t.credit_account_id,
                                        credit_account_id=t.debit_account_id)
        elif change == "code":
            t = msgspec.structs.replace(t, code=t.code + 1)
        elif change == "timeout":
            t = msgspec.structs.replace(t, timeout=t.timeout + 1)
        elif change == "pending" and is_int(flags):
            flags ^= PENDING
        elif change == "as_post_of_unknown":
            t = msgspec.structs.replace(t, debit_account_id=0, credit_account_id=0, amount=0,
                                        ledger=0, code=0, timeout=0,
                                        pending_id=UNKNOWN_PENDING_ID)
            flags = POST
        t = msgspec.structs.replace(t, flags=flags)
        [result] = self.run_batch(transfers=[t])
        if before in (R.OK, R.EXISTS) and result is not R.EXISTS:
            # Whatever was changed, the id stays taken by the transfer in the ledger.
            assert result is R.EXISTS_WITH_DIFFERENT_FIELDS or result in FIELD_ERRORS, (
                t, result)

    @rule(data=st.data())
    def advance_clock(self, data: st.DataObject) -> None:
        """Time passes: a tick, seconds, to an expiry, to local midnight or new year."""
        move = data.draw(st.sampled_from(["none", "ns", "ms", "seconds", "hour", "expiry",
                                          "expiry", "midnight", "new_year"]), label="move")
        if move == "ns":
            self.now += 1
        elif move == "ms":
            self.now += 1_000_000
        elif move == "seconds":
            self.now += data.draw(st.integers(1, 70), label="seconds") * NS
        elif move == "hour":
            self.now += 3600 * NS
        elif move == "expiry":
            due = sorted(p.expires_at for p in self.model.pendings.values()
                         if p.status == "open" and p.expires_at)
            if due:
                target = data.draw(st.sampled_from(due), label="expiry")
                self.now = max(self.now, target + data.draw(st.sampled_from([-1, 0, 1])))
        elif move == "midnight":
            local_days = (self.now // NS + 8 * 3600) // 86400
            midnight = ((local_days + 1) * 86400 - 8 * 3600) * NS
            self.now = max(self.now, midnight + data.draw(st.sampled_from([-1, 0])))
        elif move == "new_year":
            _, year = local_day_and_year(self.now)
            new_year = int(datetime(year + 1, 1, 1, tzinfo=SHANGHAI).timestamp()) * NS
            self.now = max(self.now, new_year + data.draw(st.sampled_from([-1, 0])))
        if data.draw(st.booleans(), label="empty batch"):
            self.run_batch()  # what the writer's expiry timer does

    @rule()
    def restart_writer(self) -> None:
        """The writer restarts and rebuilds its state from what was committed."""
        state = LedgerState(ledger=LEDGER)
        transfers: list[tuple[Transfer, int, int]] = []
        expiries: list[tuple[int, int]] = []
        status: dict[int, int] = {}
        for batch_time, entries, _ in self.log:
            for entry in entries:
                if entry[0] == ENTRY_ACCOUNT:
                    account, ts = decode_account(entry)
                    state.load_account(AccountState(account, ts))
                elif entry[0] == ENTRY_TRANSFER:
                    t, ts = decode_transfer(entry)
                    state.load_transfer(t, ts)
                    transfers.append((t, ts, batch_time))
                    if t.flags & (POST | VOID):
                        status[t.pending_id] = POSTED if t.flags & POST else VOIDED
                else:
                    _, pending_id, ts = decode_entry(entry)
                    state.note_timestamp(ts)
                    expiries.append((ts, pending_id))
                    status[pending_id] = EXPIRED
        for t, ts, batch_time in transfers:
            if t.flags & PENDING:
                state.load_pending(t, ts, status.get(t.id, OPEN), batch_time)
        replay = sorted([(ts, t, batch_time) for t, ts, batch_time in transfers]
                        + [(ts, pending_id, 0) for ts, pending_id in expiries],
                        key=lambda item: item[0])
        for _, item, batch_time in replay:
            if isinstance(item, int):
                state.replay_expiry(item)
            else:
                state.replay_transfer(item, batch_time)
        for _, _, failures in self.log:
            for row in failures:
                (tid, debit, credit, amount, pending_id, user_data, timeout, ledger, code,
                 flags, ts, result) = row
                state.load_failure(Transfer(
                    id=tid, debit_account_id=debit, credit_account_id=credit, amount=amount,
                    pending_id=pending_id, user_data=user_data, timeout=timeout,
                    ledger=ledger, code=code, flags=flags), result, ts)
        self.state = state

    # ------------------------------------------------------------ invariants
    @invariant()
    def balances_agree_with_the_model(self) -> None:
        ids = [*range(1, 8)]
        balances = self.state.balances(ids, self.now)
        day, year = local_day_and_year(self.now)
        for account_id, balance in zip(ids, balances, strict=True):
            expected = self.model.accounts.get(account_id)
            if expected is None:
                assert balance is None
                continue
            assert balance is not None
            assert (balance.debits_posted, balance.debits_pending, balance.credits_posted,
                    balance.credits_pending) == (
                expected.debits_posted, expected.debits_pending, expected.credits_posted,
                expected.credits_pending), account_id
            assert balance.debits_today == expected.used_by_day.get(day, 0), account_id
            assert balance.debits_this_year == expected.used_by_year.get(year, 0), account_id
            assert balance.account == expected.definition

    @invariant()
    def ledger_invariants_hold(self) -> None:
        balances = [b for b in self.state.balances(range(1, 8), self.now) if b is not None]
        assert sum(b.debits_posted for b in balances) == sum(b.credits_posted for b in balances)
        assert sum(b.debits_pending for b in balances) == sum(
            b.credits_pending for b in balances)
        for b in balances:
            a = b.account
            assert min(b.debits_posted, b.debits_pending, b.credits_posted,
                       b.credits_pending) >= 0
            assert b.debits_posted + b.debits_pending < AMOUNT_LIMIT
            assert b.credits_posted + b.credits_pending < AMOUNT_LIMIT
            if a.flags & DEBITS_MUST_NOT_EXCEED_CREDITS:
                assert b.debits_posted + b.debits_pending <= b.credits_posted
            if a.flags & CREDITS_MUST_NOT_EXCEED_DEBITS:
                assert b.credits_posted + b.credits_pending <= b.debits_posted
            if a.balance_cap is not None:
                assert b.credits_posted + b.credits_pending - b.debits_posted <= a.balance_cap
            if a.debit_limit_daily is not None:
                assert b.debits_today <= a.debit_limit_daily
            if a.debit_limit_yearly is not None:
                assert b.debits_this_year <= a.debit_limit_yearly

    @invariant()
    def next_expiry_agrees(self) -> None:
        due = [p.expires_at for p in self.model.pendings.values()
               if p.status == "open" and p.expires_at]
        assert self.state.next_expiry() == (min(due) if due else None)


LedgerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    # Shrink one failure well rather than several slowly (pytest's timeout is 300 s).
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLedgerModel = LedgerMachine.TestCase
