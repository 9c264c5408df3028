"""Copy-on-write checkpoints of the ledger core.

A checkpoint holds the balances of the accounts changed since the last one, as they were
when it began, however many transfers are decided while its accounts are copied out a
few at a time; what changes after it began belongs to the next one.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from settlement.core.state import LedgerState
from settlement.core.types import Account, CreateTransferResult, Transfer, TransferFlags

R = CreateTransferResult
LEDGER = 1
T0 = 1_741_572_000_000_000_000  # 2025-03-10 10:00 in Asia/Shanghai, in ns
ACCOUNTS = range(1, 9)
Rows = dict[int, tuple[int, ...]]


def ledger_with_accounts() -> LedgerState:
    state = LedgerState(LEDGER)
    batch = state.begin(T0)
    state.create_accounts(batch, [Account(id=i, ledger=LEDGER, code=1) for i in ACCOUNTS])
    state.finish(batch)
    return state


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def tick(self) -> int:
        self.now += 1_000
        return self.now


def decide(state: LedgerState, clock: Clock, transfers: Sequence[Transfer]) -> list[R]:
    batch = state.begin(clock.tick())
    results = state.create_transfers(batch, transfers)
    state.finish(batch)
    return results


def pay(transfer_id: int, debit: int, credit: int, amount: int = 10, flags: int = 0,
        timeout: int = 0) -> Transfer:
    return Transfer(id=transfer_id, debit_account_id=debit, credit_account_id=credit,
                    amount=amount, ledger=LEDGER, code=1, flags=flags, timeout=timeout)


def balances(state: LedgerState, ids: range = ACCOUNTS) -> Rows:
    return {i: state.accounts[i].snapshot() for i in ids}


def as_dict(rows: list[tuple[int, tuple[int, ...]]]) -> Rows:
    found = dict(rows)
    assert len(found) == len(rows), "an account was copied twice"
    return found


def test_a_checkpoint_holds_balances_as_of_its_beginning() -> None:
    state, clock = ledger_with_accounts(), Clock()
    assert decide(state, clock, [pay(1, 1, 2), pay(2, 3, 4), pay(3, 5, 6)]) == [R.OK] * 3
    at_begin = balances(state)

    state.begin_checkpoint()
    assert state.save_some(1) is None  # one of six copied
    # Accounts 2 and 6 change before their turn, 7 and 8 for the first time.
    assert decide(state, clock, [pay(4, 2, 6, 5), pay(5, 7, 8, 3)]) == [R.OK] * 2
    rows = state.save_some(100)

    assert rows is not None
    assert as_dict(rows) == {i: at_begin[i] for i in (1, 2, 3, 4, 5, 6)}
    assert not state.checkpoint_under_way
    # The next one: only what changed after the first began, as it is now.
    assert as_dict(state.take_checkpoint()) == {i: state.accounts[i].snapshot()
                                                for i in (2, 6, 7, 8)}
    assert state.take_checkpoint() == []


def test_what_changed_after_a_checkpoint_began_is_in_the_next_one() -> None:
    state, clock = ledger_with_accounts(), Clock()
    decide(state, clock, [pay(1, 1, 2)])
    state.begin_checkpoint()
    decide(state, clock, [pay(2, 2, 3), pay(3, 4, 5)])
    first = state.save_some(100)

    assert first is not None
    assert set(as_dict(first)) == {1, 2}
    second = as_dict(state.take_checkpoint())
    assert second == {i: state.accounts[i].snapshot() for i in (2, 3, 4, 5)}


def test_an_undone_linked_chain_leaves_the_checkpoint_as_of_its_beginning() -> None:
    state, clock = ledger_with_accounts(), Clock()
    decide(state, clock, [pay(1, 1, 2, 50)])
    at_begin = balances(state)
    state.begin_checkpoint()
    linked = int(TransferFlags.LINKED)
    # 2 pays 3 in a chain whose second member fails (unknown account): undone.
    results = decide(state, clock, [pay(2, 2, 3, 20, flags=linked), pay(3, 99, 3, 1)])
    assert results == [R.LINKED_EVENT_FAILED, R.DEBIT_ACCOUNT_NOT_FOUND]
    rows = state.save_some(100)

    assert rows is not None
    assert as_dict(rows) == {1: at_begin[1], 2: at_begin[2]}
    assert balances(state) == at_begin


def test_an_expiry_while_copying_is_copied_first() -> None:
    state, clock = ledger_with_accounts(), Clock()
    assert decide(state, clock, [pay(1, 1, 2, 30, flags=int(TransferFlags.PENDING),
                                     timeout=1)]) == [R.OK]
    at_begin = balances(state)
    state.begin_checkpoint()
    clock.now += 2_000_000_000  # the pending transfer's second has passed
    decide(state, clock, [])  # a batch that expires it
    rows = state.save_some(100)

    assert rows is not None
    assert as_dict(rows) == {1: at_begin[1], 2: at_begin[2]}
    assert state.accounts[1].dpend == 0


def test_taking_a_checkpoint_folds_in_one_still_being_copied() -> None:
    state, clock = ledger_with_accounts(), Clock()
    decide(state, clock, [pay(1, 1, 2), pay(2, 3, 4)])
    state.begin_checkpoint()
    assert state.save_some(1) is None
    decide(state, clock, [pay(3, 4, 5)])

    rows = as_dict(state.take_checkpoint())

    assert rows == balances(state, range(1, 6))
    assert not state.checkpoint_under_way
    assert state.take_checkpoint() == []


def test_after_a_failed_write_every_account_is_in_the_next_checkpoint() -> None:
    state, clock = ledger_with_accounts(), Clock()
    decide(state, clock, [pay(1, 1, 2)])
    state.take_checkpoint()
    state.mark_all_dirty()
    assert as_dict(state.take_checkpoint()) == balances(state)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                  st.integers(1, 50)),
        st.tuples(st.just("copy"), st.integers(0, 4)),
    ),
    max_size=40,
)


@given(before=steps, during=steps, after=steps)
def test_interleaved_copies_and_transfers_give_the_balances_at_the_beginning(
        before: list[tuple], during: list[tuple], after: list[tuple]) -> None:
    state, clock = ledger_with_accounts(), Clock()
    ids = iter(range(1, 1_000))
    # Fund every account so that payments between them move money.
    decide(state, clock, [pay(next(ids), 1, i, 10_000) for i in ACCOUNTS[1:]])
    state.take_checkpoint()

    def run(script: list[tuple]) -> list[tuple[int, tuple[int, ...]]] | None:
        """Play the steps; the rows of the checkpoint if it completed meanwhile."""
        done = None
        for step in script:
            if step[0] == "pay":
                _, debit, credit, amount = step
                decide(state, clock, [pay(next(ids), debit, credit, amount)])
            elif state.checkpoint_under_way:
                saved = state.save_some(step[1])
                if saved is not None:
                    done = saved
        return done

    run(before)
    changed = {i for i in ACCOUNTS if state.accounts[i].epoch == state.epoch}
    at_begin = balances(state)
    state.begin_checkpoint()
    rows = run(during)
    if rows is None:  # not finished by the steps: copy the rest
        rows = state.save_some(len(ACCOUNTS))
    assert rows is not None
    assert as_dict(rows) == {i: at_begin[i] for i in changed}

    run(after)
    changed_since = {i for i in ACCOUNTS if state.accounts[i].snapshot() != at_begin[i]}
    later = as_dict(state.take_checkpoint())
    assert set(later) >= changed_since
    assert later == {i: state.accounts[i].snapshot() for i in later}
    assert sum(r[0] for r in balances(state).values()) == \
        sum(r[2] for r in balances(state).values())
