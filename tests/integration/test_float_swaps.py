"""Float swaps left open by a crash or a lost answer are settled when the bank asks again:
the central bank applies the id once, and the bank posts or voids its hold to match."""

from __future__ import annotations

import uuid

from commercial_bank import accounts as chart
from commercial_bank.keys import BANK
from commercial_bank.service import Bank
from tests.integration.bank_harness import (
    RESERVES,
    Network,
    assert_reconciled,
    bank_ecny,
    network,
)

__all__ = ["network"]  # fixture

AMOUNT = 250_000


def bank_of(network: Network) -> Bank:
    return network.banks["BANKA"].runner.app[BANK]


async def hold(bank: Bank, kind: int, amount: int) -> int:
    """What a swap leaves in the bank's ledger when the bank dies before the answer."""
    transfer_id = uuid.uuid4().int
    position, float_ = chart.system_id("BANKA", "cb_position"), chart.system_id("BANKA",
                                                                                 "float")
    debit, credit = (position, float_) if kind == chart.ISSUANCE else (float_, position)
    [result] = await bank.ledger.create_transfers([chart.transfer(
        transfer_id, debit, credit, amount, kind, flags=chart.TransferFlags.PENDING)])
    assert result.name == "OK"
    return transfer_id


async def float_of(bank: Bank) -> int:
    [account] = await bank.ledger.lookup_accounts([chart.system_id("BANKA", "float")])
    return account.credit_balance if account else 0


async def test_an_issuance_made_but_unanswered_is_posted_when_asked_again(
        network: Network) -> None:
    bank = bank_of(network)
    before = await float_of(bank)
    swap = await hold(bank, chart.ISSUANCE, AMOUNT)
    await network.central_bank.operators["BANKA"].client.issue(swap, AMOUNT)  # answer lost
    await assert_reconciled(network)  # the open swap counts as in flight meanwhile
    assert await bank.swaps.resolve_open() == 0
    assert await float_of(bank) == before + AMOUNT
    held, position = await bank_ecny(network, "BANKA")
    assert held == position
    await assert_reconciled(network)


async def test_a_swap_the_central_bank_never_heard_of_is_made_when_asked_again(
        network: Network) -> None:
    bank = bank_of(network)
    before = await float_of(bank)
    await hold(bank, chart.ISSUANCE, AMOUNT)
    assert await bank.swaps.resolve_open() == 0
    assert await float_of(bank) == before + AMOUNT
    held, position = await bank_ecny(network, "BANKA")
    assert held == position
    await assert_reconciled(network)


async def test_a_swap_the_central_bank_refuses_is_voided(network: Network) -> None:
    bank = bank_of(network)
    before = await float_of(bank)
    swap = await hold(bank, chart.ISSUANCE, 2 * RESERVES)  # more than the bank's reserves
    assert await bank.swaps.resolve_open() == 0
    [voided] = await bank.ledger.lookup_transfers([chart.resolve_pending(swap, post=False).id])
    assert voided is not None
    assert await float_of(bank) == before
    held, position = await bank_ecny(network, "BANKA")
    assert held == position
    await assert_reconciled(network)
