"""A commercial bank's OpenAPI document: valid OpenAPI 3.1, complete, and faithful to the code.

Every route the app serves is documented (compared with the app's own router), request
bodies are generated from the handlers' msgspec Structs, and the hand-written answer
schemas accept what the code really builds (a real signed order, real problems) and
refuse what it must not send. The integration tests check every live answer too
(`tests/integration/bank_harness.py`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cbdc.addresses import address_for
from cbdc.payment_orders import PaymentOrder
from cbdc.problems import conflict, rejected, unauthorized, validation
from cbdc.signing import SigningKey
from commercial_bank import handlers, payment_requests
from commercial_bank.openapi import PROBLEM_JSON, REQUEST_TYPES, build_openapi
from commercial_bank.routes import add_routes
from tests.openapi_check import OpenApiChecker

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
PUBLIC = {("get", "/health"), ("get", "/metrics"), ("get", "/openapi.json"),
          ("post", "/v1/wallets"), ("post", "/v1/sessions/challenge"),
          ("post", "/v1/sessions"), ("post", "/v1/payments"),
          ("get", "/v1/receivable/{address}"), ("post", "/v1/receivable"),
          ("get", "/v1/ledger-keys")}
NO_CLIENT_ERRORS = {("get", "/health"), ("get", "/metrics"), ("get", "/openapi.json"),
                    ("get", "/v1/ledger-keys")}
PAYER = address_for("BANKA", 1234)
PAYEE = address_for("BANKB", 42)
PAYMENT_ID = "0192c4e0-7c1e-7b2a-9d41-6f0e8a1b2c3d"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_openapi("BANKA")


@pytest.fixture(scope="module")
def checker(document: dict[str, Any]) -> OpenApiChecker:
    return OpenApiChecker(document)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = document
    for raw in ref[2:].split("/"):
        segment = raw.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref}: {segment!r} is inside a non-object"
        assert segment in node, f"{ref}: no {segment!r}"
        node = node[segment]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def schema_validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:doc", Resource.from_contents(document, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"urn:doc#/components/schemas/{name}"},
                                registry=registry)


# ---------------------------------------------------------------- the document
def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)
    # as GET /openapi.json serves it, and without a bank code
    validate(json.loads(msgspec.json.encode(document)), cls=OpenAPIV31SpecValidator)
    validate(build_openapi(), cls=OpenAPIV31SpecValidator)


def test_each_build_is_a_fresh_document() -> None:
    one, two = build_openapi("BANKA"), build_openapi("BANKA")
    one["components"]["schemas"]["Problem"]["title"] = "changed"
    one["tags"][0]["name"] = "changed"
    assert two["components"]["schemas"]["Problem"]["title"] == "Problem"
    assert two["tags"][0]["name"] != "changed"
    assert "servers" not in two


def test_every_route_is_documented(document: dict[str, Any]) -> None:
    app = web.Application()
    add_routes(app)
    routed = {(route.method.lower(), route.resource.canonical)
              for route in app.router.routes()
              if route.resource is not None and route.method != "HEAD"}
    documented = {(method, path) for method, path, _ in operations(document)}
    assert routed - documented == set(), "routes the document does not describe"
    assert documented - routed == set(), "operations no route serves"


def test_every_ref_resolves_and_every_schema_is_used(document: dict[str, Any]) -> None:
    found = list(refs(document))
    assert len(found) > 50
    for ref in found:
        resolve(document, ref)
    used = {ref.rsplit("/", 1)[1] for ref in found if ref.startswith("#/components/schemas/")}
    assert set(document["components"]["schemas"]) - used == set(), "unused schemas"
    used = {ref.rsplit("/", 1)[1] for ref in found if ref.startswith("#/components/parameters/")}
    assert set(document["components"]["parameters"]) - used == set(), "unused parameters"


def test_every_operation_is_named_tagged_and_answers_problems(document: dict[str, Any]) -> None:
    declared_tags = {tag["name"] for tag in document["tags"]}
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation.get("operationId"), where
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        assert set(operation["tags"]) <= declared_tags, where
        responses = operation["responses"]
        assert list(responses) == sorted(responses), where
        assert any(code.startswith("2") for code in responses), where
        assert "500" in responses, f"{where} documents no 500"
        if (method, path) not in NO_CLIENT_ERRORS:
            assert any(code.startswith("4") for code in responses), f"{where} documents no 4xx"
        for code, response in responses.items():
            assert response.get("description"), f"{where} {code}"
            assert response.get("content"), f"{where} {code} has no body"
            if code[0] in "45":
                assert response["content"] == PROBLEM, f"{where} {code} is not a Problem"
        # Whatever can be malformed can be refused as such.
        templated = "{" in path or any(
            resolve(document, p["$ref"])["in"] == "query" for p in operation.get("parameters", []))
        if "requestBody" in operation or templated:
            assert "422" in responses, f"{where} documents no 422"
        if "requestBody" in operation:
            assert "413" in responses, f"{where} documents no 413"
            content = operation["requestBody"]["content"]
            assert set(content) == {"application/json"}, where
            assert "$ref" in content["application/json"]["schema"], where


def test_who_may_call_what(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    for name in ("walletSession", "tellerToken"):
        assert schemes[name]["type"] == "http"
        assert schemes[name]["scheme"] == "bearer"
    assert "POST /v1/sessions" in schemes["walletSession"]["description"]
    assert "security" not in document
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        if path.startswith("/v1/teller/"):
            assert operation["security"] == [{"tellerToken": []}], where
            assert "401" in responses, where
        elif path.startswith("/v1/wallets/{address}"):
            assert operation["security"] == [{"walletSession": []}], where
            assert {"401", "404", "503"} <= set(responses), where
            assert "WWW-Authenticate" in responses["401"]["headers"], where
        else:
            assert (method, path) in PUBLIC, where
            assert operation["security"] == [], where


def test_request_bodies_are_generated_from_the_handlers_structs(
        document: dict[str, Any]) -> None:
    _, generated = msgspec.json.schema_components(
        REQUEST_TYPES, ref_template="#/components/schemas/{name}")
    schemas = document["components"]["schemas"]
    for name, schema in generated.items():
        assert schemas[name] == schema, name
    for module in (handlers, payment_requests):
        structs = {cls for _, cls in inspect.getmembers(module, inspect.isclass)
                   if issubclass(cls, msgspec.Struct) and cls.__module__ == module.__name__}
        assert structs <= set(REQUEST_TYPES), f"{module.__name__}: undocumented Structs"
    assert schemas["ClassChange"]["required"] == ["class"]
    assert schemas["MoneyMove"]["properties"]["amount"]["type"] == "integer"


def test_the_payment_body_is_the_signed_order(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/payments"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SignedOrder"}
    key = SigningKey(ec.derive_private_key(0x0A11CE, ec.SECP256R1()))
    order = PaymentOrder(payer=PAYER, payee=PAYEE, amount=12_345, sequence=7,
                         expires=1_767_225_600, memo="tea")
    signed = json.loads(order.sign(key).to_json())
    validator = schema_validator(document, "SignedOrder")
    validator.validate(signed)
    assert set(signed) == {"order", "signature"}
    for broken in (
        signed | {"signature": signed["signature"] + "="},
        signed | {"extra": 1},
        {"order": signed["order"] | {"amount": 1.5}, "signature": signed["signature"]},
        {"order": signed["order"] | {"payee": PAYEE.lower()}, "signature": "AA"},
        {"order": {k: v for k, v in signed["order"].items() if k != "sequence"},
         "signature": "AA"},
    ):
        assert not validator.is_valid(broken), broken


def test_addresses_of_the_bank_are_its_own(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["OwnAddress"]["pattern"] == "^BANKA-[0-9]{12}-[0-9]{2}$"
    assert build_openapi("BANKB")["components"]["schemas"]["OwnAddress"]["pattern"].startswith(
        "^BANKB-")
    assert schemas["Health"]["properties"]["bank"] == {"const": "BANKA"}
    assert "BANKA" in document["info"]["title"]


# ------------------------------------------------------------- answers checked
def summary(address: str = PAYER, **changes: Any) -> dict[str, Any]:
    usage = {"limit": 100_000, "used": 0, "left": 100_000,
             "resets_at": "2027-01-01T00:00:00+08:00"}
    return {"address": address, "class": 4, "status": "active", "balance": 500,
            "available": 500,
            "limits": {"balance_cap": 100_000, "single": 50_000, "daily": usage,
                       "yearly": usage},
            "deposit_account": None} | changes


def test_the_checker_accepts_what_the_bank_answers(checker: OpenApiChecker) -> None:
    checker.check("POST", "/v1/wallets", 201, "application/json", summary())
    checker.check("GET", f"/v1/wallets/{PAYER}", 200, "application/json",
                  summary(deposit_account={"number": 1, "balance": 0}))
    payment = {"id": PAYMENT_ID, "status": "pending", "amount": 5, "payer": PAYER,
               "payee": PAYEE}
    checker.check("POST", "/v1/payments", 201, "application/json", payment)
    entry = {"id": PAYMENT_ID, "kind": "payment", "direction": "in", "amount": 5,
             "timestamp": 1_767_225_600_000_000_000, "block": 3, "status": "settled",
             "counterparty": PAYEE, "memo": ""}
    top_up = {k: v for k, v in entry.items() if k not in ("counterparty", "memo")}
    checker.check("GET", f"/v1/wallets/{PAYER}/history?limit=2", 200, "application/json",
                  {"entries": [entry, top_up | {"kind": "top_up"}], "next_after": "17"})
    checker.check("GET", f"/v1/receivable/{PAYEE}", 200, "application/json",
                  {"receivable": False, "reason": "no wallet exists"})
    checker.check("POST", "/v1/receivable", 200, "application/json",
                  {"results": [{"receivable": False, "reason": "no wallet exists"},
                               {"receivable": True, "reason": None}]})
    checker.check("POST", "/v1/teller/deposits/7/cash-in", 201, "application/json",
                  {"id": PAYMENT_ID, "status": "settled"})
    checker.check("GET", f"/v1/wallets/{PAYER}/payment-requests/abcDEF0123456789", 200,
                  "application/json",
                  {"request_id": "abcDEF0123456789", "status": "paid", "amount": None,
                   "memo": "", "expires": 1_767_225_600, "paid_by": PAYEE,
                   "payment_id": PAYMENT_ID})
    checker.check("GET", f"/v1/wallets/{PAYER}/events", 200, "text/event-stream",
                  'event: status\ndata: {"live":true}\n\n')
    checker.check("GET", "/health", 200, "application/json",
                  {"status": "ok", "bank": "BANKA", "ledger_height": 0})


def test_the_checker_accepts_the_problems_the_bank_raises(checker: OpenApiChecker) -> None:
    for method, path, error in (
        ("POST", "/v1/payments", validation("order.expires", "expired", "it expired")),
        ("POST", "/v1/payments", conflict("sequence 1 was already used")),
        ("POST", f"/v1/wallets/{PAYER}/top-up",
         rejected("exceeds_daily_limit", "over the daily limit", field="amount")),
        ("GET", f"/v1/wallets/{PAYER}", unauthorized("log in first")),
    ):
        response = error.to_response()
        assert response.body is not None
        checker.check(method, path, error.status, response.content_type,
                      bytes(response.body))


def test_the_checker_refuses_what_the_bank_must_not_send(checker: OpenApiChecker) -> None:
    with pytest.raises(AssertionError, match=r"\$\.address: .* does not match"):
        checker.check("GET", f"/v1/wallets/{PAYER}", 200, "application/json",
                      summary(address=PAYEE))
    with pytest.raises(AssertionError, match=r"\$\.balance: 500\.0 is not of type 'integer'"):
        checker.check("GET", f"/v1/wallets/{PAYER}", 200, "application/json",
                      summary(balance=500.0))
    with pytest.raises(AssertionError, match=r"'available' is a required property"):
        checker.check("GET", f"/v1/wallets/{PAYER}", 200, "application/json",
                      {k: v for k, v in summary().items() if k != "available"})
    with pytest.raises(AssertionError, match="status 404 is not documented"):
        checker.check("POST", "/v1/payments", 404, PROBLEM_JSON,
                      {"type": "about:blank", "title": "Not Found", "status": 404})
    with pytest.raises(AssertionError, match="content type 'application/json' is not"):
        checker.check("POST", "/v1/payments", 422, "application/json",
                      {"type": "about:blank", "title": "Unprocessable", "status": 422})
