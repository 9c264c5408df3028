"""schemathesis against the central bank's OpenAPI document: every operation, at least
100 generated requests each (valid and invalid), operator calls signed with a registered
operator's key and admin calls with the admin token, so the handlers behind the
signature check are fuzzed too. Pass: no 5xx, every answer as the document says; then
the supply invariant and every chain still hold. Seed: printed; CBDC_SEED replays.

The fuzzer is operator FUZZA, which has no commercial bank behind it, and it pays
FUZZB, so the banks A and B of the network keep their books with the central bank."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.specs.openapi.checks import negative_data_rejection

from central_bank.openapi import build_openapi
from tests.integration.central_bank_harness import ADMIN_TOKEN, Operator
from tests.reliability.api_support import NetworkInThread, services
from tests.reliability.fuzz_support import (
    CALL_TIMEOUT,
    CHECKS,
    EXCLUDED,
    FUZZ_SETTINGS,
    SEED,
    SIGNED_EXCLUDED,
    STATEFUL_SETTINGS,
    OperatorSignature,
    fresh_public_key,
    fuzz_config,
    fuzz_seed,
    report,
    tally,
)

pytestmark = pytest.mark.reliability
__all__ = ["fuzz_seed", "services"]  # fixtures

SCHEMA = schemathesis.openapi.from_dict(build_openapi(), config=fuzz_config())
FUZZER, PAYEE, SPARE = "FUZZA", "FUZZB", "FUZZC"
SERVICE_BANKS = ("BANKA", "BANKB")
FRESH = itertools.count(1)
UUID_SHAPE = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def tame(case: schemathesis.Case) -> None:
    """Keep long polls short (a valid `wait` becomes 0: the feed's answer is the same
    shape, without sleeping for it) and send transfers to FUZZB, not to the banks whose
    books the test checks afterwards. New operators get codes and transfers ids never
    used before, so a scenario's outcome does not hang on what earlier ones left behind
    (Hypothesis refuses a state machine whose steps answer differently on a replay).
    (In the test, not a hook: explicit examples and boundary values come by here too.)"""
    operation = case.operation.definition.raw.get("operationId")
    params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    if params.get("code") in (*SERVICE_BANKS, FUZZER, PAYEE):
        params["code"] = SPARE  # suspend, reactivate, rekey or fund FUZZC, never these
    if operation == "getEvents" and isinstance(case.query, dict) \
            and str(case.query.get("wait")).isdigit():
        case.query["wait"] = 0
    if isinstance(case.body, dict):
        items = case.body.get("transfers")
        for item in (items if isinstance(items, list) else [case.body]):
            payee = item.get("payee_bank") if isinstance(item, dict) else None
            if payee in SERVICE_BANKS or (isinstance(payee, str) and len(payee) % 2 == 0):
                item["payee_bank"] = PAYEE
        if operation == "registerOperator" and "public_key_pem" in case.body:
            case.body["public_key_pem"] = fresh_public_key(case.body["public_key_pem"])
            if str(case.body.get("code", "")).isalnum():
                case.body["code"] = f"R{next(FRESH):011d}"
        if operation == "createTransfer" and UUID_SHAPE.fullmatch(str(case.body.get("id"))):
            case.body["id"] = str(uuid.uuid4())


def credentials(case: schemathesis.Case, fuzzer: Operator) -> dict[str, Any]:
    """What `case.call` needs besides the case: the admin token or the operator's
    signature, and which checks do not apply then."""
    if case.operation.path.startswith("/v1/admin/"):
        # A drawn key the test swapped for a real one may turn a request the fuzzer meant
        # to be invalid into a valid one.
        swapped = [negative_data_rejection] \
            if case.operation.definition.raw.get("operationId") == "registerOperator" else []
        return {"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
                "excluded_checks": EXCLUDED + swapped}
    if case.operation.definition.raw.get("x-cbdc-signed-with"):
        return {"auth": OperatorSignature(fuzzer.key_id, fuzzer.key),
                "excluded_checks": EXCLUDED + SIGNED_EXCLUDED}
    return {"excluded_checks": EXCLUDED}


@pytest.fixture(scope="module")
def fuzzer(services: NetworkInThread) -> Iterator[Operator]:
    """An operator bank with reserves, whose key signs the fuzzed calls. (After the
    module `services` checks that the supply adds up, banks A and B agree with the
    central bank and every chain verifies.)"""
    central_bank = services.network.central_bank
    operator = services.run(central_bank.add_operator(FUZZER, reserves=10_000_000_000))
    services.run(central_bank.add_operator(PAYEE))
    services.run(central_bank.add_operator(SPARE))
    # e-CNY enough that what one scenario pays does not decide whether the next can.
    services.run(operator.client.issue(uuid.uuid4().int, 5_000_000_000))
    yield operator
    print(report("central bank fuzzed"))


@SCHEMA.parametrize()
@hypothesis.seed(SEED)
@FUZZ_SETTINGS
def test_central_bank_answers_as_documented(case: schemathesis.Case, services: NetworkInThread,
                                            fuzzer: Operator) -> None:
    tame(case)
    response = case.call_and_validate(base_url=services.network.central_bank.url,
                                      additional_checks=CHECKS, timeout=CALL_TIMEOUT,
                                      **credentials(case, fuzzer))
    tally(case.operation.label, response.status_code)


@pytest.mark.parametrize("path", ["/v1/statement?after=\u00b2", "/v1/events?after=\u0663",
                                  "/v1/statement?after=\uff11"])
def test_digits_other_than_ascii_are_a_422(services: NetworkInThread, fuzzer: Operator,
                                           path: str) -> None:
    """Found by the long profile: '²' passed str.isdigit and int() then failed (500)."""
    url = services.network.central_bank.url + path
    response = requests.get(url, auth=OperatorSignature(fuzzer.key_id, fuzzer.key),
                            timeout=CALL_TIMEOUT)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "after"


def test_central_bank_workflows_follow_the_documents_links(services: NetworkInThread,
                                                           fuzzer: Operator) -> None:
    """Stateful: schemathesis chains calls along the document's links (a transfer to
    its view and receipt, a registered operator to its suspension, keys and reserves),
    each answer checked as above."""

    class Workflow(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            tame(case)
            kwargs = credentials(case, fuzzer)
            kwargs.pop("excluded_checks")
            return {"base_url": services.network.central_bank.url, **kwargs}

        def validate_response(self, response: Any, case: schemathesis.Case,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            tally(f"{case.operation.label} (stateful)", response.status_code)
            case.validate_response(response, additional_checks=CHECKS,
                                   excluded_checks=credentials(case, fuzzer)["excluded_checks"],
                                   transport_kwargs=kwargs)

    hypothesis.seed(SEED)(Workflow)  # a state machine takes its seed from its class
    Workflow.run(settings=STATEFUL_SETTINGS)


@pytest.mark.parametrize(("path", "field"), [("/v1/statement?after=", "after"),
                                             ("/v1/statement?limit=", "limit"),
                                             ("/v1/events?wait=", "wait")])
def test_an_empty_parameter_is_a_422_not_its_default(services: NetworkInThread,
                                                     fuzzer: Operator, path: str,
                                                     field: str) -> None:
    """Found by the fuzzer at a bank: `?amount=` was taken for absent and answered 200."""
    url = services.network.central_bank.url + path
    response = requests.get(url, auth=OperatorSignature(fuzzer.key_id, fuzzer.key),
                            timeout=CALL_TIMEOUT)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
