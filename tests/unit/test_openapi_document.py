"""The central bank's OpenAPI document: valid OpenAPI 3.1, complete, and faithful to the code.

Its schemas come from `cbdc.wire` (msgspec) and, for receipts and blocks, are written by
hand, so real receipts and a real chain export are checked against them. The checker the
service tests use (`tests/openapi_check.py`) accepts a correct answer and refuses wrong
ones with a message that names the JSON path and the rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from cbdc import wire
from cbdc.merkle import merkle_proof
from cbdc.receipts import GENESIS_HASH, Receipt, encode_transfer
from cbdc.signing import SigningKey
from central_bank.openapi import PROBLEM_JSON, WIRE_TYPES, build_openapi
from settlement.audit import EXPORT_FORMAT, export_lines
from settlement.blocks import leaf_hashes, seal_block
from settlement.store import StoredBlock
from tests.openapi_check import OpenApiChecker

TRANSFER_ID = "0192c4e0-7c1e-7b2a-9d41-6f0e8a1b2c3d"
OPERATOR_CALLS = {
    ("post", "/v1/issuance"),
    ("post", "/v1/redemption"),
    ("post", "/v1/transfers"),
    ("post", "/v1/transfers/batch"),
    ("get", "/v1/transfers/{id}"),
    ("get", "/v1/transfers/{id}/receipt"),
    ("get", "/v1/positions"),
    ("get", "/v1/statement"),
    ("get", "/v1/events"),
    ("post", "/v1/keys/confirm"),
}
ADMIN_CALLS = {
    ("post", "/v1/admin/operators"),
    ("get", "/v1/admin/operators"),
    ("post", "/v1/admin/operators/{code}/suspend"),
    ("post", "/v1/admin/operators/{code}/reactivate"),
    ("post", "/v1/admin/operators/{code}/keys"),
    ("post", "/v1/admin/operators/{code}/reserves"),
    ("get", "/v1/admin/supply"),
    ("get", "/v1/admin/blocks/{height}"),
    ("get", "/v1/admin/chain"),
}
PUBLIC_CALLS = {
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/ledger-key"),
}
SIGNED_HEADERS = {"Signature", "Signature-Input", "Content-Digest", "Idempotency-Key"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_openapi("http://127.0.0.1:8080")


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


# ---------------------------------------------------------------- the document
def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)
    # and it survives a trip through JSON (GET /openapi.json serves it so)
    validate(json.loads(json.dumps(document)), cls=OpenAPIV31SpecValidator)


def test_the_server_url_is_optional() -> None:
    assert build_openapi("https://cb.example")["servers"] == [{"url": "https://cb.example"}]
    assert "servers" not in build_openapi()
    one, two = build_openapi(), build_openapi()
    one["components"]["schemas"]["Problem"]["title"] = "changed"
    assert two["components"]["schemas"]["Problem"]["title"] == "Problem"


def test_it_documents_exactly_the_api_routes(document: dict[str, Any]) -> None:
    found = {(method, path) for method, path, _ in operations(document)}
    assert found == OPERATOR_CALLS | ADMIN_CALLS | PUBLIC_CALLS


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
        assert any(code.startswith("2") for code in responses), where
        assert any(code.startswith("4") for code in responses) or (method, path) in {
            ("get", "/health"), ("get", "/metrics"), ("get", "/openapi.json"),
            ("get", "/v1/ledger-key")}, f"{where} documents no 4xx"
        for code, response in responses.items():
            assert response.get("description"), f"{where} {code}"
            assert response.get("content"), f"{where} {code} has no body"
            if code[0] in "45":
                assert response["content"] == {
                    PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, f"{where} {code} is not a Problem"
        if method == "post":
            body = operation.get("requestBody")
            assert body, f"{where} has no request body"
            assert set(body["content"]) == {"application/json"}, where
            assert "$ref" in body["content"]["application/json"]["schema"], where


def test_operator_calls_are_signed(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if (method, path) not in OPERATOR_CALLS:
            continue
        where = f"{method.upper()} {path}"
        headers = {}
        for parameter in operation["parameters"]:
            resolved = resolve(document, parameter["$ref"])
            if resolved["in"] == "header":
                headers[resolved["name"]] = resolved
        assert set(headers) == SIGNED_HEADERS, where
        assert all(header["required"] for header in headers.values()), where
        assert {"401", "403", "409", "413", "422", "429"} <= set(operation["responses"]), where
        assert operation["security"] == [], where
    confirm = document["paths"]["/v1/keys/confirm"]["post"]
    assert confirm["x-cbdc-signed-with"] == "pending operator key"


def test_admin_calls_need_the_bearer_token(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["adminToken"]
    assert scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
    for method, path, operation in operations(document):
        if (method, path) in ADMIN_CALLS:
            assert operation["security"] == [{"adminToken": []}], path
            assert "401" in operation["responses"], path
        else:
            assert operation["security"] == [], path
    assert "security" not in document


def test_query_and_path_parameters(document: dict[str, Any]) -> None:
    def parameters(path: str) -> dict[str, dict[str, Any]]:
        operation = document["paths"][path]["get"]
        found = (resolve(document, p["$ref"]) for p in operation["parameters"])
        return {p["name"]: p for p in found if p["in"] != "header"}

    statement = parameters("/v1/statement")
    assert statement["limit"]["schema"] == {
        "type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    assert statement["after"]["schema"]["type"] == "string"
    events = parameters("/v1/events")
    assert events["wait"]["schema"]["minimum"] == 0
    assert events["wait"]["schema"]["maximum"] == 30
    assert parameters("/v1/transfers/{id}")["id"]["schema"]["pattern"] == (
        msgspec.json.schema(wire.TransferId)["pattern"])


def test_every_ref_resolves(document: dict[str, Any]) -> None:
    found = list(refs(document))
    assert len(found) > 50
    for ref in found:
        resolve(document, ref)
    used = {ref.rsplit("/", 1)[1] for ref in found if ref.startswith("#/components/schemas/")}
    assert set(document["components"]["schemas"]) - used == set(), "unused schemas"


def test_the_wire_schemas_are_generated_from_cbdc_wire(document: dict[str, Any]) -> None:
    _, generated = msgspec.json.schema_components(
        WIRE_TYPES, ref_template="#/components/schemas/{name}")
    schemas = document["components"]["schemas"]
    for name, schema in generated.items():
        assert schemas[name] == schema, name
    assert {cls.__name__ for cls in WIRE_TYPES} <= set(generated)
    assert schemas["IssueRequest"]["properties"]["amount"]["type"] == "integer"


def test_receipt_and_block_schemas_fit_real_ones(checker: OpenApiChecker) -> None:
    key = SigningKey(ec.derive_private_key(0x0A11CE, ec.SECP256R1()))
    entries = [encode_transfer(i, 1, 2, 100 * i, 0, 0, 0, 1, 1, 0, 1_000 + i)
               for i in range(1, 6)]
    sealed = seal_block(ledger=1, height=1, previous_hash=GENESIS_HASH, time_ns=1_000_000,
                        entries=entries, key=key)
    receipt = Receipt(header=sealed.header, signature=sealed.signature, entry=entries[2],
                      proof=merkle_proof(leaf_hashes(entries), 2))
    assert receipt.verify(key.public) is None
    view = {"id": TRANSFER_ID, "kind": "interbank", "payer_bank": "BANKA",
            "payee_bank": "BANKB", "amount": 300, "timestamp": 1_003, "block": 1}
    body = json.loads(json.dumps({"transfer": view, "receipt": receipt.to_json()}))
    checker.check("GET", f"/v1/transfers/{TRANSFER_ID}/receipt", 200, "application/json", body)

    block = StoredBlock(header=sealed.header, hash=sealed.hash, signature=sealed.signature,
                        entries=entries)
    lines = list(export_lines(1, key.public, [block]))
    checker.check("GET", "/v1/admin/blocks/1", 200, "application/json", json.loads(lines[1]))
    checker.check("GET", "/v1/admin/chain", 200, "application/x-ndjson",
                  "\n".join(lines) + "\n")
    assert json.loads(lines[0])["format"] == EXPORT_FORMAT

    wrong = json.loads(lines[1])
    wrong["hash"] = wrong["hash"][:-2]
    with pytest.raises(AssertionError, match=r"\$\.hash: .*pattern"):
        checker.check("GET", "/v1/admin/blocks/1", 200, "application/json", wrong)
    with pytest.raises(AssertionError, match="line 2"):
        checker.check("GET", "/v1/admin/chain", 200, "application/x-ndjson",
                      lines[0] + "\n" + json.dumps(wrong) + "\n")


# ------------------------------------------------------------------ the checker
SETTLED = {"id": TRANSFER_ID, "status": "settled"}
VIEW = {"id": TRANSFER_ID, "kind": "issue", "payer_bank": None, "payee_bank": "BANKA",
        "amount": 5_000, "timestamp": 1_741_572_000_000_000_000, "block": 7}


def test_the_checker_accepts_correct_answers(checker: OpenApiChecker) -> None:
    checker.check("POST", "/v1/transfers", 201, "application/json; charset=utf-8", SETTLED)
    checker.check("POST", "/v1/transfers/batch", 200, "application/json",
                  {"results": [SETTLED, {"id": TRANSFER_ID, "status": "rejected",
                                         "code": "exceeds_credits"}],
                   "settled": 1, "rejected": 1})
    checker.check("GET", f"/v1/transfers/{TRANSFER_ID}", 200, "application/json", VIEW)
    checker.check("GET", "/v1/transfers/{id}", 200, "application/json", VIEW)
    checker.check("GET", "/v1/statement?limit=2&after=abc", 200, "application/json",
                  {"bank": "BANKA", "entries": [VIEW], "next_after": None})
    checker.check("GET", "/v1/events", 200, "application/json",
                  json.dumps({"events": [{"cursor": "c1", "transfer": VIEW}], "cursor": "c1"})
                  .encode())
    checker.check("POST", "/v1/issuance", 422, "application/problem+json",
                  {"type": "about:blank", "title": "Rejected", "status": 422,
                   "code": "exceeds_credits"})
    checker.check("GET", "/v1/admin/operators", 200, "application/json",
                  [{"code": "BANKA", "name": "Bank A", "status": "active",
                    "keys": [{"key_id": "a1", "status": "active"}]}])
    checker.check("GET", "/health", 200, "application/json", {"status": "ok", "ledger_height": 3})
    checker.check("GET", "/metrics", 200, "text/plain; version=0.0.4", "cbdc_up 1\n")


def test_the_checker_refuses_an_amount_as_a_string(checker: OpenApiChecker) -> None:
    with pytest.raises(AssertionError) as caught:
        checker.check("GET", f"/v1/transfers/{TRANSFER_ID}", 200, "application/json",
                      VIEW | {"amount": "5000"})
    message = str(caught.value)
    assert f"GET /v1/transfers/{TRANSFER_ID} (getTransfer) -> 200" in message
    assert "$.amount" in message
    assert "'5000' is not of type 'integer'" in message
    assert "rule 'type'" in message


def test_the_checker_refuses_a_float_even_a_whole_one(checker: OpenApiChecker) -> None:
    with pytest.raises(AssertionError, match=r"\$\.entries\[0\]\.amount: 5000\.0 is not of type"):
        checker.check("GET", "/v1/statement", 200, "application/json",
                      {"bank": "BANKA", "entries": [VIEW | {"amount": 5000.0}],
                       "next_after": None})


def test_the_checker_refuses_a_missing_field(checker: OpenApiChecker) -> None:
    positions = {"bank": "BANKA", "reserves": 10}
    with pytest.raises(AssertionError) as caught:
        checker.check("GET", "/v1/positions", 200, "application/json", positions)
    message = str(caught.value)
    assert "$: 'ecny' is a required property" in message
    assert "rule 'required'" in message


def test_the_checker_names_the_inner_rule_of_a_nullable_field(checker: OpenApiChecker) -> None:
    with pytest.raises(AssertionError, match=r"\$\.next_after: 3 is not of type 'string'"):
        checker.check("GET", "/v1/statement", 200, "application/json",
                      {"bank": "BANKA", "entries": [], "next_after": 3})


def test_the_checker_refuses_an_undocumented_status(checker: OpenApiChecker) -> None:
    with pytest.raises(AssertionError, match=r"status 202 is not documented \(documented: "
                                             r"201, 400, 401"):
        checker.check("POST", "/v1/transfers", 202, "application/json", SETTLED)
    with pytest.raises(AssertionError, match="status 404 is not documented"):
        checker.check("GET", "/v1/positions", 404, PROBLEM_JSON,
                      {"type": "about:blank", "title": "Not Found", "status": 404})


def test_the_checker_refuses_the_wrong_content_type(checker: OpenApiChecker) -> None:
    problem = {"type": "about:blank", "title": "Unauthorized", "status": 401}
    with pytest.raises(AssertionError, match="content type 'application/json' is not documented"):
        checker.check("POST", "/v1/transfers", 401, "application/json", problem)
    with pytest.raises(AssertionError, match="the body is not JSON"):
        checker.check("POST", "/v1/transfers", 201, "application/json", b"{nope")


def test_the_checker_matches_paths_and_methods(checker: OpenApiChecker) -> None:
    assert checker.find("POST", "/v1/transfers/batch")[0] == "/v1/transfers/batch"
    assert checker.find("GET", f"/v1/transfers/{TRANSFER_ID}")[0] == "/v1/transfers/{id}"
    assert checker.find("get", f"/v1/transfers/{TRANSFER_ID}/receipt")[0] == (
        "/v1/transfers/{id}/receipt")
    assert checker.find("POST", "/v1/admin/operators/BANKA/keys")[0] == (
        "/v1/admin/operators/{code}/keys")
    with pytest.raises(AssertionError, match="no path template"):
        checker.find("GET", "/v1/nowhere")
    with pytest.raises(AssertionError, match=r"no DELETE operation for /v1/positions"):
        checker.find("DELETE", "/v1/positions")
