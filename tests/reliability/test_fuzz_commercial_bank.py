"""schemathesis against a commercial bank's OpenAPI document (bank A, with bank B and the
central bank behind it): every operation, at least 100 generated requests each.

Where the API needs it the fuzzed request is made genuine, so the fuzzer gets past
authentication to the handlers: a wallet call names a funded wallet of the test's and
carries its session token, a teller call the teller token, and a payment order whose
fields the fuzzer drew is signed by the payer wallet's key with a fresh sequence number.
Destructive calls (freeze, report lost, close, teller class changes) go to a wallet of
their own. Pass: no 5xx, every answer as the document says; afterwards each bank's
e-CNY equals its position at the central bank and `cbdc reconcile` is clean.

Not fuzzed: GET /v1/wallets/{address}/events, a server-sent event stream that stays
open (tests/integration/test_live_events.py drives it). Seed: printed; CBDC_SEED
replays.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis

from cbdc.addresses import AddressError
from cbdc.payment_orders import OrderRejected, PaymentOrder
from commercial_bank.openapi import build_openapi
from tests.integration.bank_harness import TELLER_TOKEN, WalletUnderTest
from tests.reliability.api_support import NetworkInThread, services
from tests.reliability.fuzz_support import (
    CALL_TIMEOUT,
    CHECKS,
    EXCLUDED,
    FUZZ_SETTINGS,
    SEED,
    SIGNED_EXCLUDED,
    STATEFUL_SETTINGS,
    fresh_public_key,
    fuzz_config,
    fuzz_seed,
    report,
    tally,
)

pytestmark = pytest.mark.reliability
__all__ = ["fuzz_seed", "services"]  # fixtures

BANK = "BANKA"
SCHEMA = schemathesis.openapi.from_dict(build_openapi(BANK), config=fuzz_config()).exclude(
    operation_id="getWalletEvents")
DESTRUCTIVE = {"setWalletStatus", "closeWallet", "tellerChangeWalletClass"}
CNY = 100


@dataclass
class Wallets:
    payer: WalletUnderTest      # funded; pays, tops up, redeems, is asked about
    victim: WalletUnderTest     # frozen, reported lost, closed, reclassed
    payee: WalletUnderTest      # at bank A, receives
    elsewhere: WalletUnderTest  # at bank B, receives across banks
    sequences: Iterator[int]


def _own_address(text: Any) -> bool:
    """Did the fuzzer draw something shaped like an address of bank A (its check digits
    rarely hold)? Other strings are left for the bank to refuse."""
    return isinstance(text, str) and text.startswith(f"{BANK}-")


def _sign_drawn_order(body: Any, wallets: Wallets) -> Any:
    """The drawn order, from our payer, signed: amount, memo and payee (when it is one of
    ours, sometimes swapped for a wallet that exists) as drawn, fresh sequence and
    expiry. A body that cannot be an order is sent as drawn."""
    if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
        return body
    drawn = body["order"]
    payee = drawn.get("payee")
    if _own_address(payee) and len(payee) % 2:
        payee = wallets.payee.address
    elif isinstance(payee, str) and payee.startswith("BANKB") and len(payee) % 2:
        payee = wallets.elsewhere.address
    try:
        order = PaymentOrder(payer=wallets.payer.address, payee=payee,  # type: ignore[arg-type]
                             amount=drawn.get("amount"),  # type: ignore[arg-type]
                             sequence=next(wallets.sequences), expires=int(time.time()) + 300,
                             memo=drawn.get("memo", ""))  # type: ignore[arg-type]
    except (OrderRejected, TypeError, ValueError, AddressError):
        return body
    signed = order.sign(wallets.payer.key)
    return signed.to_dict()


def make_genuine(case: schemathesis.Case, wallets: Wallets) -> dict[str, str]:
    """Point the case at our wallets and give it the credentials it needs; the headers
    to send."""
    operation = case.operation.definition.raw.get("operationId", "")
    security = {name for entry in case.operation.definition.raw.get("security", [])
                for name in entry}
    params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    if "walletSession" in security:
        wallet = wallets.victim if operation in DESTRUCTIVE else wallets.payer
        if _own_address(params.get("address")):
            params["address"] = wallet.address
        return {"Authorization": f"Bearer {wallet.token}"}
    if "tellerToken" in security:
        if _own_address(params.get("address")):
            params["address"] = wallets.victim.address
        if str(params.get("number", "")).isdigit() and int(params["number"]) % 2:
            params["number"] = str(wallets.payer.deposit_number)
        return {"Authorization": f"Bearer {TELLER_TOKEN}"}
    if operation == "pay":
        case.body = _sign_drawn_order(case.body, wallets)
    if operation == "openWallet" and isinstance(case.body, dict) \
            and "public_key_pem" in case.body:
        drawn = case.body["public_key_pem"]
        case.body["public_key_pem"] = fresh_public_key(drawn)
        if case.body["public_key_pem"] != drawn:
            case.body["phone"] = "13800138000"  # and a phone number the bank takes
    return {}


def excluded_checks(case: schemathesis.Case, headers: dict[str, str]) -> list[Any]:
    """The credentials are the test's to set, so "missing header accepted" says nothing;
    nor does "invalid request accepted" where the test made a drawn order or key real."""
    operation = case.operation.definition.raw.get("operationId", "")
    return EXCLUDED + SIGNED_EXCLUDED if headers or operation in ("pay", "openWallet") \
        else EXCLUDED


@pytest.fixture(scope="module")
def wallets(services: NetworkInThread) -> Iterator[Wallets]:
    network = services.network
    made = Wallets(
        payer=services.run(network.wallet(BANK, balance=800 * CNY)),
        victim=services.run(network.wallet(BANK, balance=50 * CNY)),
        payee=services.run(network.wallet(BANK)),
        elsewhere=services.run(network.wallet("BANKB")),
        sequences=itertools.count(1))
    yield made
    print(report("commercial bank fuzzed"))


@SCHEMA.parametrize()
@hypothesis.seed(SEED)
@FUZZ_SETTINGS
def test_commercial_bank_answers_as_documented(case: schemathesis.Case,
                                               services: NetworkInThread,
                                               wallets: Wallets) -> None:
    headers = make_genuine(case, wallets)
    response = case.call_and_validate(base_url=services.network.banks[BANK].url,
                                      headers=headers, additional_checks=CHECKS,
                                      excluded_checks=excluded_checks(case, headers),
                                      timeout=CALL_TIMEOUT)
    tally(case.operation.label, response.status_code)


def test_commercial_bank_workflows_follow_the_documents_links(services: NetworkInThread,
                                                              wallets: Wallets) -> None:
    """Stateful: schemathesis chains calls along the document's links (a new wallet to
    its receivable check, a payment request to its status), each answer checked."""
    sent: dict[str, dict[str, str]] = {}

    class Workflow(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            sent[case.id] = headers = make_genuine(case, wallets)
            return {"base_url": services.network.banks[BANK].url, "headers": headers}

        def validate_response(self, response: Any, case: schemathesis.Case,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            tally(f"{case.operation.label} (stateful)", response.status_code)
            case.validate_response(response, additional_checks=CHECKS,
                                   excluded_checks=excluded_checks(case, sent.pop(case.id)),
                                   transport_kwargs=kwargs)

    hypothesis.seed(SEED)(Workflow)  # a state machine takes its seed from its class
    Workflow.run(settings=STATEFUL_SETTINGS)


def test_digits_other_than_ascii_are_a_422(services: NetworkInThread, wallets: Wallets) -> None:
    """As at the central bank: '²' and other non-ASCII digits in a cursor, a limit, a
    time or a deposit number are a 422 naming the parameter, not a 500."""
    bank = services.network.banks[BANK].url
    history = f"{bank}/v1/wallets/{wallets.payer.address}/history"
    session = {"Authorization": f"Bearer {wallets.payer.token}"}
    for query, name in (("after=\u00b2", "after"), ("limit=\u0663", "limit"),
                        ("since=\uff11", "since")):
        response = requests.get(f"{history}?{query}",
                                headers=session, timeout=CALL_TIMEOUT)
        assert (response.status_code, response.json()["field"]) == (422, name), response.text
    response = requests.post(f"{bank}/v1/teller/deposits/\u00b2/cash-in",
                             json={"id": "0192c4e0-7c1e-7b2a-9d41-000000000001", "amount": 1},
                             headers={"Authorization": f"Bearer {TELLER_TOKEN}"},
                             timeout=CALL_TIMEOUT)
    assert (response.status_code, response.json()["field"]) == (422, "number"), response.text
