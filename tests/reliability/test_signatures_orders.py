"""Signed payment orders at the banks' door (tests/unit/test_signing.py and
test_payment_orders.py hold the RFC 6979 vectors and the pure checks): the high-S twin
and every non-canonical DER spelling of a valid signature are refused, a reordered or
re-escaped spelling of an order is the same order (paid once), changing any one field
breaks the signature, and one signed order sent to two banks is accepted at most once.
Nothing refused moves money."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from cbdc.signing import P256_ORDER
from tests.integration.bank_harness import Network, Reply, two_banks
from tests.unit.test_signing import non_canonical_forms

pytestmark = pytest.mark.reliability
__all__ = ["two_banks"]  # fixture

CNY = 100


def with_signature(order: bytes, signature: bytes) -> bytes:
    wire = json.loads(order)
    wire["signature"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return json.dumps(wire).encode()


def signature_of(order: bytes) -> bytes:
    text = json.loads(order)["signature"]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def balances(network: Network, *wallets: Any) -> list[int]:
    return [(await w.summary())["balance"] for w in wallets]


async def test_one_order_sent_to_both_banks_is_accepted_at_most_once(
        two_banks: Network) -> None:
    """Orders from a wallet of bank A, to bank A and bank B at once, five times each:
    bank B refuses every copy (not its wallet), bank A pays once."""
    alice = await two_banks.wallet("BANKA", balance=400 * CNY)
    carol = await two_banks.wallet("BANKA")
    bob = await two_banks.wallet("BANKB")
    for payee, amount in ((bob.address, 70 * CNY), (carol.address, 30 * CNY)):
        order = alice.order(payee, amount)
        replies: list[Reply] = list(await asyncio.gather(*(
            two_banks.banks[code].call("POST", "/v1/payments", raw=order)
            for code in ("BANKA", "BANKB") * 5)))
        at_a, at_b = replies[0::2], replies[1::2]
        assert {r.status for r in at_a} == {201}
        assert len({r.body["id"] for r in at_a}) == 1
        assert {(r.status, r.body["field"], r.body["rule"]) for r in at_b} == {
            (422, "order.payer", "this-bank")}
    for _ in range(100):
        if await balances(two_banks, bob) == [70 * CNY]:
            break
        await asyncio.sleep(0.05)
    assert await balances(two_banks, alice, bob, carol) == [300 * CNY, 70 * CNY, 30 * CNY]


async def test_high_s_and_non_canonical_signatures_are_refused_at_the_bank(
        two_banks: Network) -> None:
    """The high-S twin of a valid order's signature (valid plain ECDSA) and each
    non-canonical DER spelling are refused with bad_signature, before and after the
    canonical order has paid; the canonical one pays once."""
    alice = await two_banks.wallet("BANKA", balance=100 * CNY)
    carol = await two_banks.wallet("BANKA")
    bank = two_banks.banks["BANKA"]
    order = alice.order(carol.address, 5 * CNY)
    r, s = decode_dss_signature(signature_of(order))
    forgeries = {"high-S twin": encode_dss_signature(r, P256_ORDER - s),
                 **non_canonical_forms(signature_of(order))}
    forgeries.pop("empty")  # an empty signature is malformed JSON-side, tested in unit
    for paid in (False, True):
        for name, forged in forgeries.items():
            reply = await bank.call("POST", "/v1/payments", raw=with_signature(order, forged))
            assert reply.status == 422, (name, reply)
            assert reply.body["rule"] in ("bad_signature", "malformed"), (name, reply.body)
        if not paid:
            assert (await bank.call("POST", "/v1/payments", raw=order)).status == 201
    assert await balances(two_banks, alice, carol) == [95 * CNY, 5 * CNY]


async def test_reordered_or_re_escaped_orders_are_the_same_order(two_banks: Network) -> None:
    """Any JSON spelling of a signed order is the same order: each pays the one payment
    the canonical spelling pays, once."""
    alice = await two_banks.wallet("BANKA", balance=100 * CNY)
    carol = await two_banks.wallet("BANKA")
    bank = two_banks.banks["BANKA"]
    order = alice.order(carol.address, 7 * CNY, memo="奶茶 \"tea\"")
    wire = json.loads(order)
    fields = wire["order"]
    spellings = [
        json.dumps({"signature": wire["signature"],
                    "order": dict(reversed(list(fields.items())))}, indent=1),
        json.dumps(wire, ensure_ascii=True),
        '{"order": {' + ", ".join(
            f'"{name}": ' + ('"' + "".join(f"\\u{ord(c):04x}" for c in value) + '"'
                             if isinstance(value, str) else json.dumps(value))
            for name, value in fields.items()) + '}, "sign\\u0061ture": "'
        + wire["signature"] + '"}',
    ]
    ids = set()
    for text in [order.decode(), *spellings]:
        reply = await bank.call("POST", "/v1/payments", raw=text.encode())
        assert reply.status == 201, reply
        ids.add(reply.body["id"])
    assert len(ids) == 1
    assert await balances(two_banks, alice, carol) == [93 * CNY, 7 * CNY]


FIELD_CHANGES: dict[str, Any] = {
    "amount": lambda v, _: v + 1, "sequence": lambda v, _: v + 1,
    "expires": lambda v, _: v - 1, "memo": lambda v, _: v + "!",
    "payer": lambda _, others: others[1], "payee": lambda _, others: others[0],
    "domain": lambda _, __: "cbdc/payment-request/v1",
}


async def test_changing_any_one_field_fails_verification(two_banks: Network) -> None:
    """Each field of a signed order changed on its own: refused, nothing moves."""
    alice = await two_banks.wallet("BANKA", balance=100 * CNY)
    carol = await two_banks.wallet("BANKA")
    dave = await two_banks.wallet("BANKA", balance=100 * CNY)
    bank = two_banks.banks["BANKA"]
    order = alice.order(carol.address, 3 * CNY, memo="rent")
    for field, change in FIELD_CHANGES.items():
        wire = json.loads(order)
        wire["order"][field] = change(wire["order"][field], (dave.address, dave.address))
        reply = await bank.call("POST", "/v1/payments", raw=json.dumps(wire).encode())
        assert reply.status == 422, (field, reply)
        assert reply.body["rule"] in ("bad_signature", "wrong_domain"), (field, reply.body)
    assert await balances(two_banks, alice, carol, dave) == [100 * CNY, 0, 100 * CNY]
