"""A wallet's receipts: proof from its bank's ledger and, between banks, from the central
bank's, each checked with the key its ledger publishes."""

from __future__ import annotations

import asyncio
import copy
import uuid

import pytest

from cbdc.receipts import Receipt, verify_transfer_receipt
from cbdc.signing import VerifyingKey
from tests.integration.bank_harness import Network, two_banks
from wallet_tui.receipt_check import judge

__all__ = ["two_banks"]  # fixture


@pytest.fixture
def network(two_banks: Network) -> Network:
    return two_banks


async def test_receipts_within_and_between_banks_verify(network: Network) -> None:
    alice = await network.wallet("BANKA", balance=10_000)
    carol = await network.wallet("BANKA", phone="13700137000")
    bob = await network.wallet("BANKB", phone="13900139000")
    bank_a = network.banks["BANKA"]
    keys = (await bank_a.call("GET", "/v1/ledger-keys")).body
    published = await network.central_bank.session.get(network.central_bank.url
                                                       + "/v1/ledger-key")
    assert keys["central_bank_key_pem"] == (await published.json())["public_key_pem"]

    same = (await alice.pay(carol.address, 150)).body
    reply = await alice.get(f"/receipts/{same['id']}")
    assert reply.status == 200, reply.body
    assert reply.body["central_bank_receipt"] is None
    assert "within this bank" in reply.body["central_bank_note"]
    receipt = Receipt.from_json(reply.body["bank_receipt"])
    bank_key = VerifyingKey.from_pem(keys["bank_key_pem"].encode())
    assert verify_transfer_receipt(receipt, bank_key, uuid.UUID(same["id"]).int, 150) is None

    across = (await alice.pay(bob.address, 2_000)).body
    assert across["status"] == "settled"
    reply = await alice.get(f"/receipts/{across['id']}")
    assert reply.status == 200, reply.body
    check = judge(reply.body, keys, across["id"], 2_000)
    assert (check.bank_verified, check.central_verified) == (True, True)
    assert check.central_line.startswith("Central bank (published key): verified: block ")

    # The payee's bank books the credit under the central bank's id: bob has both too.
    for _ in range(100):
        bob_reply = await bob.get(f"/receipts/{across['id']}")
        if bob_reply.status == 200:
            break
        await asyncio.sleep(0.05)  # the credit comes from the central bank's feed
    bob_keys = (await network.banks["BANKB"].call("GET", "/v1/ledger-keys")).body
    bob_check = judge(bob_reply.body, bob_keys, across["id"], 2_000)
    assert (bob_check.bank_verified, bob_check.central_verified) == (True, True)


async def test_a_receipt_proves_only_its_own_payment(network: Network) -> None:
    alice = await network.wallet("BANKA", balance=10_000)
    bob = await network.wallet("BANKB", phone="13900139000")
    keys = (await network.banks["BANKA"].call("GET", "/v1/ledger-keys")).body
    paid = (await alice.pay(bob.address, 1_000)).body
    body = (await alice.get(f"/receipts/{paid['id']}")).body

    wrong_amount = judge(body, keys, paid["id"], 1_001)
    assert wrong_amount.bank_line == (
        "BANKA ledger: NOT verified: the receipt's amount differs from the payment's")
    assert wrong_amount.central_verified is False

    tampered = copy.deepcopy(body)
    root = tampered["central_bank_receipt"]["header"]["merkle_root"]
    tampered["central_bank_receipt"]["header"]["merkle_root"] = (
        ("0" if root[0] != "0" else "1") + root[1:])
    check = judge(tampered, keys, paid["id"], 1_000)
    assert check.bank_verified
    assert check.central_line == ("Central bank (published key): NOT verified: the entry "
                                  "and proof do not lead to the block's Merkle root")

    swapped = dict(keys, central_bank_key_pem=keys["bank_key_pem"])
    assert "block signature does not verify" in judge(body, swapped, paid["id"],
                                                      1_000).central_line
    assert "not published" in judge(body, dict(keys, central_bank_key_pem=None), paid["id"],
                                    1_000).central_line


async def test_receipts_of_other_wallets_or_bad_ids_are_refused(network: Network) -> None:
    alice = await network.wallet("BANKA", balance=10_000)
    carol = await network.wallet("BANKA", phone="13700137000")
    dave = await network.wallet("BANKA", phone="13600136000")
    paid = (await alice.pay(carol.address, 100)).body
    reply = await dave.get(f"/receipts/{paid['id']}")
    assert reply.status == 404
    assert "no payment" in reply.body["detail"]
    reply = await dave.get("/receipts/not-a-uuid")
    assert (reply.status, reply.body["field"]) == (422, "id")
    reply = await network.banks["BANKA"].call(
        "GET", f"/v1/wallets/{alice.address}/receipts/{paid['id']}")
    assert reply.status == 401
