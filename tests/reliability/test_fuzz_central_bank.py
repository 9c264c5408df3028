"""schemathesis against the central bank's OpenAPI document: every operation, at least
100 generated requests each (valid and invalid), operator calls signed with a registered
operator's key and admin calls with the admin token, so the handlers behind the
signature check are fuzzed too. Pass: no 5xx, every answer as the document says; then
the supply invariant and every chain still hold. Seed: printed; CBDC_SEED replays.

The fuzzer is operator FUZZA, which has no commercial bank behind it, and it pays
FUZZB, so the banks A and B of the network keep their books with the central bank."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis

from central_bank.openapi import build_openapi
from tests.integration.central_bank_harness import ADMIN_TOKEN, Operator
from tests.reliability.api_support import NetworkInThread, assert_books_agree
from tests.reliability.fuzz_support import (
    CHECKS,
    EXCLUDED,
    FUZZ_SETTINGS,
    SEED,
    SIGNED_EXCLUDED,
    OperatorSignature,
    report,
    services,
    tally,
)

pytestmark = pytest.mark.reliability
__all__ = ["services"]  # fixture

SCHEMA = schemathesis.openapi.from_dict(build_openapi())
FUZZER, PAYEE = "FUZZA", "FUZZB"
SERVICE_BANKS = ("BANKA", "BANKB")


def tame(case: schemathesis.Case) -> None:
    """Keep long polls short (a valid `wait` becomes 0: the feed's answer is the same
    shape, without sleeping for it) and send transfers to FUZZB, not to the banks whose
    books the test checks afterwards. (In the test, not a hook: explicit examples and
    boundary values come by here too.)"""
    operation = case.operation.definition.raw.get("operationId")
    if operation == "getEvents" and isinstance(case.query, dict) \
            and str(case.query.get("wait")).isdigit():
        case.query["wait"] = 0
    if isinstance(case.body, dict):
        items = case.body.get("transfers")
        for item in (items if isinstance(items, list) else [case.body]):
            if isinstance(item, dict) and item.get("payee_bank") in SERVICE_BANKS:
                item["payee_bank"] = PAYEE


@pytest.fixture(scope="module")
def fuzzer(services: NetworkInThread) -> Iterator[Operator]:
    """An operator bank with reserves, whose key signs the fuzzed calls; afterwards the
    supply adds up, banks A and B agree with the central bank and every chain verifies."""
    central_bank = services.network.central_bank
    operator = services.run(central_bank.add_operator(FUZZER, reserves=10_000_000_000))
    services.run(central_bank.add_operator(PAYEE))
    yield operator
    print(report("central bank fuzzed"))
    services.run(assert_books_agree(services.network))


@SCHEMA.parametrize()
@hypothesis.seed(SEED)
@FUZZ_SETTINGS
def test_central_bank_answers_as_documented(case: schemathesis.Case, services: NetworkInThread,
                                            fuzzer: Operator) -> None:
    tame(case)
    kwargs: dict[str, Any] = {"excluded_checks": EXCLUDED}
    headers: dict[str, str] = {}
    if case.operation.path.startswith("/v1/admin/"):
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    elif case.operation.definition.raw.get("x-cbdc-signed-with"):
        kwargs["auth"] = OperatorSignature(fuzzer.key_id, fuzzer.key)
        kwargs["excluded_checks"] = EXCLUDED + SIGNED_EXCLUDED
    response = case.call_and_validate(base_url=services.network.central_bank.url,
                                      headers=headers, additional_checks=CHECKS, **kwargs)
    tally(case.operation.label, response.status_code)
