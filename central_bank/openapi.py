"""The central bank's HTTP API as an OpenAPI 3.1 document.

Request and response bodies are generated from `cbdc.wire` with msgspec (JSON Schema
2020-12, which OpenAPI 3.1 uses as is), so the document cannot drift from what the service
decodes and encodes. Receipts and blocks are plain dicts (`cbdc.receipts`,
`settlement.audit.export_lines`) and are written here by hand.

Three kinds of caller:
    operator banks  every call is an RFC 9421 signed HTTP message (headers `Signature`,
                    `Signature-Input`, `Content-Digest`, `Idempotency-Key`)
    the operator of the central bank   `/v1/admin/...` with a bearer token (`adminToken`)
    anyone          `/health`, `/metrics`, `/openapi.json`, `/v1/ledger-key`

Every 4xx and 5xx answer is an RFC 9457 problem (`application/problem+json`, `Problem`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from cbdc import openapi_support as oas
from cbdc import wire
from cbdc.openapi_support import JSON, NDJSON, PROBLEM_JSON, Schema

__all__ = ["JSON", "NDJSON", "PROBLEM_JSON", "WIRE_TYPES", "build_openapi"]

CHAIN_EXPORT_FORMAT = "cbdc-ledger-chain/1"  # settlement.audit.EXPORT_FORMAT

# Every struct that travels on the wire; each becomes components/schemas/<class name>.
WIRE_TYPES: tuple[type[msgspec.Struct], ...] = (
    wire.Problem,
    wire.IssueRequest,
    wire.InterbankTransfer,
    wire.TransferBatch,
    wire.RegisterOperator,
    wire.AddKey,
    wire.FundReserves,
    wire.TransferResult,
    wire.BatchResult,
    wire.TransferView,
    wire.Positions,
    wire.Statement,
    wire.Event,
    wire.Events,
    wire.Operator,
    wire.OperatorKey,
    wire.Supply,
)

# The shared helpers (cbdc.openapi_support) under the short names used below.
_ref = oas.ref
_hex = oas.hex_string
_uint = oas.uint
_object = oas.closed_object
_param = oas.parameter_ref
_json = oas.json_response
_problem = oas.problem_response
_body = oas.json_body


# ------------------------------------------------------------- hand-written schemas
def _hand_written_schemas() -> dict[str, Schema]:
    return {
        **oas.receipt_schemas("GET /v1/ledger-key"),
        "TransferReceipt": _object(
            {"transfer": _ref("TransferView"), "receipt": _ref("Receipt")},
            title="TransferReceipt",
            description="A settled transfer and its receipt.",
        ),
        "Block": _object(
            {
                "header": _ref("BlockHeader"),
                "hash": _hex(f"hash of the block header ({oas.SHA256_HEX})", size=32),
                "signature": _hex("DER ECDSA P-256 signature of the encoded header by the "
                                  "ledger key, hex"),
                "entries": {"type": "array", "items": _hex("one encoded ledger entry, hex"),
                            "description": "the block's entries in Merkle leaf order"},
            },
            title="Block",
            description="One block of the hash-chained journal, as one line of the chain "
                        "export (settlement.audit.export_lines).",
        ),
        "ChainExportHeader": _object(
            {
                "format": {"const": CHAIN_EXPORT_FORMAT},
                "ledger": _uint(32, "ledger number"),
                "public_key": _hex("the ledger's P-256 public key, DER "
                                   "(SubjectPublicKeyInfo), hex"),
            },
            title="ChainExportHeader",
            description="First line of the chain export; every further line is a Block.",
        ),
        "Health": _object(
            {
                "status": {"const": "ok"},
                "ledger_height": {"type": "integer", "minimum": 0,
                                  "description": "height of the newest block (0: none yet)"},
            },
            title="Health",
            description="The service is up and its ledger is loaded.",
        ),
        "LedgerKey": _object(
            {
                "public_key_pem": {"type": "string", "minLength": 1,
                                   "description": "P-256 public key (PEM, "
                                                  "SubjectPublicKeyInfo) that signs blocks"},
                "ledger": _uint(32, "ledger number"),
            },
            title="LedgerKey",
            description="The key that verifies block signatures and receipts.",
        ),
        "EmptyBody": {
            "title": "EmptyBody",
            "description": "No fields; send `{}` (or nothing).",
            "type": "object",
            "maxProperties": 0,
        },
    }


def component_schemas() -> dict[str, Schema]:
    """components/schemas: generated from cbdc.wire, then the hand-written ones."""
    return oas.component_schemas(WIRE_TYPES, _hand_written_schemas())


# -------------------------------------------------------------------- parameters
def _parameters() -> dict[str, Schema]:
    def header(name: str, description: str, schema: Schema) -> Schema:
        return {"name": name, "in": "header", "required": True,
                "description": description, "schema": schema}

    return {
        "Signature": header(
            "Signature",
            "RFC 9421 signature, label `sig1`: ECDSA P-256 SHA-256 (`ecdsa-p256-sha256`) "
            "with the operator's active key (its pending key for POST /v1/keys/confirm).",
            {"type": "string", "minLength": 1},
        ),
        "SignatureInput": header(
            "Signature-Input",
            "RFC 9421 signature parameters. Covered components: `@method`, `@path`, "
            "`content-digest`, `idempotency-key`; parameters `created`, `keyid`, `nonce` "
            "(stored: a replay is refused even after a restart), a short max age.",
            {"type": "string", "minLength": 1},
        ),
        "ContentDigest": header(
            "Content-Digest",
            "RFC 9530 digest of the body (an empty body for GET), e.g. `sha-256=:...:`.",
            {"type": "string", "minLength": 1},
        ),
        "IdempotencyKey": header(
            "Idempotency-Key",
            "Client-chosen key; a retry with the same key and body gets the first answer, "
            "the same key with another body gets 409.",
            {"type": "string", "minLength": 1, "maxLength": 255},
        ),
        "TransferId": {
            "name": "id", "in": "path", "required": True,
            "description": "transfer id in UUID form",
            "schema": msgspec.json.schema(wire.TransferId),
        },
        "OperatorCode": {
            "name": "code", "in": "path", "required": True,
            "description": "operator bank code",
            "schema": msgspec.json.schema(wire.BankCode),
        },
        "BlockHeight": {
            "name": "height", "in": "path", "required": True,
            "description": "block height (the first block is 1)",
            "schema": {"type": "integer", "minimum": 1},
        },
        "After": {
            "name": "after", "in": "query", "required": False,
            "description": "opaque cursor from a previous answer (`next_after` or `cursor`); "
                           "absent: from the start",
            "schema": {"type": "string", "minLength": 1},
        },
        "Limit": {
            "name": "limit", "in": "query", "required": False,
            "description": "most entries to return",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        },
        "Wait": {
            "name": "wait", "in": "query", "required": False,
            "description": "long poll: seconds to wait for a first event when none is ready",
            "schema": {"type": "integer", "minimum": 0, "maximum": 30, "default": 0},
        },
    }


SIGNED_HEADERS = ("Signature", "SignatureInput", "ContentDigest", "IdempotencyKey")


# --------------------------------------------------------------------- responses
def _too_many() -> Schema:
    return _problem("Too many requests from this operator; retry after the delay.",
                    headers={"Retry-After": {"description": "seconds to wait",
                                             "schema": {"type": "integer", "minimum": 0}}})


SERVER_ERRORS = {
    "500": "Internal error; the request may or may not have been applied: retry with the "
           "same id and Idempotency-Key.",
    "503": "The service is starting, shutting down or its ledger writer has stopped; retry.",
}


def _operator_errors(has_body: bool) -> dict[str, Schema]:
    return {
        "400": _problem("Malformed request: the body is not JSON or a header cannot be parsed."),
        "401": _problem("Missing or bad signature, unknown key, or a key rotated out; or a "
                        "replayed nonce or an expired signature."),
        "403": _problem("The operator is suspended or not allowed to do this."),
        "409": _problem("The Idempotency-Key was used before with another request."),
        "413": _problem("The body is too large."),
        "422": _problem("The body or a parameter breaks the schema (`field` names its JSON "
                        "path, `rule` the rule)" + ("; or the ledger rejected the request "
                                                   "(`code`)." if has_body else ".")),
        "429": _too_many(),
    }


def _admin_errors(has_body: bool) -> dict[str, Schema]:
    errors = {"401": _problem("Missing or bad admin bearer token.")}
    if has_body:
        errors |= {
            "400": _problem("Malformed request: the body is not JSON."),
            "413": _problem("The body is too large."),
            "422": _problem("The body breaks the schema (`field` names its JSON path, "
                            "`rule` the rule)."),
        }
    return errors


def _sorted_responses(responses: dict[str, Schema]) -> dict[str, Schema]:
    return oas.with_server_errors(responses, SERVER_ERRORS)


def _empty_body() -> Schema:
    return _body("EmptyBody", "No fields.", required=False)


# -------------------------------------------------------------------- operations
def _operator_op(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Schema],
    *,
    body: Schema | None = None,
    parameters: tuple[str, ...] = (),
    description: str | None = None,
    key: str = "active",
) -> Schema:
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "security": [],
        "x-cbdc-signed-with": f"{key} operator key",
        "parameters": [_param(name) for name in (*parameters, *SIGNED_HEADERS)],
    }
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = _sorted_responses(
        {**_operator_errors(body is not None), **responses})
    return operation


def _admin_op(
    operation_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    body: Schema | None = None,
    parameters: tuple[str, ...] = (),
    description: str | None = None,
) -> Schema:
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["admin"],
        "security": [{"adminToken": []}],
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = [_param(name) for name in parameters]
    if body is not None:
        operation["requestBody"] = body
    # An empty body may be left out; one that is there is read and checked as any other.
    operation["responses"] = _sorted_responses({**_admin_errors(body is not None),
                                                **responses})
    return operation


def _public_op(operation_id: str, summary: str, responses: dict[str, Schema]) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["public"],
        "security": [],
        "responses": _sorted_responses(responses),
    }


def _paths() -> dict[str, Schema]:
    not_found_transfer = _problem("No such transfer, or the caller's bank is neither its "
                                  "payer nor its payee.")
    no_operator = _problem("No operator has this code.")
    settled = _json(_ref("TransferResult"),
                    "Settled (or the first result of an earlier request with this id).")
    rejected = _problem("Rejected by the ledger (`code` is its result code) or the body "
                        "breaks the schema (`field`, `rule`).")
    return {
        "/v1/issuance": {"post": _operator_op(
            "issue", "Issue e-CNY against reserves", "issuance",
            {"201": settled, "422": _problem(
                "Rejected (`code`, e.g. insufficient reserves) or the body breaks the schema "
                "(`field`, `rule`).")},
            body=_body("IssueRequest", "Swap `amount` fen of reserves for e-CNY."),
            description="Swaps the caller's reserves for e-CNY one to one.")},
        "/v1/redemption": {"post": _operator_op(
            "redeem", "Redeem e-CNY for reserves", "issuance",
            {"201": settled, "422": _problem(
                "Rejected (`code`, e.g. insufficient e-CNY position) or the body breaks the "
                "schema (`field`, `rule`).")},
            body=_body("IssueRequest", "Swap `amount` fen of e-CNY back for reserves."))},
        "/v1/transfers": {"post": _operator_op(
            "createTransfer", "Move e-CNY to another operator bank", "transfers",
            {"201": oas.with_links(settled, {
                "GetTransfer": ("getTransfer", {"id": "$response.body#/id"}),
                "GetTransferReceipt": ("getTransferReceipt", {"id": "$response.body#/id"})}),
             "422": _problem(
                "Rejected (`code`, e.g. insufficient position, unknown or suspended payee) "
                "or the body breaks the schema (`field`, `rule`).")},
            body=_body("InterbankTransfer", "Payer is the calling bank."))},
        "/v1/transfers/batch": {"post": _operator_op(
            "createTransferBatch", "Move e-CNY in many transfers at once", "transfers",
            {"200": _json(_ref("BatchResult"),
                          "One result per transfer, in request order; each settles or is "
                          "rejected on its own.")},
            body=_body("TransferBatch", "Up to 8000 interbank transfers."))},
        "/v1/transfers/{id}": {"get": _operator_op(
            "getTransfer", "One transfer the caller's bank took part in", "transfers",
            {"200": _json(_ref("TransferView"), "The transfer."), "404": not_found_transfer},
            parameters=("TransferId",))},
        "/v1/transfers/{id}/receipt": {"get": _operator_op(
            "getTransferReceipt", "A transfer with its signed-block receipt", "transfers",
            {"200": _json(_ref("TransferReceipt"),
                          "Verify offline with the key from GET /v1/ledger-key."),
             "404": not_found_transfer},
            parameters=("TransferId",))},
        "/v1/positions": {"get": _operator_op(
            "getPositions", "The caller's reserves and e-CNY position", "account",
            {"200": _json(_ref("Positions"), "Balances in fen.")})},
        "/v1/statement": {"get": _operator_op(
            "getStatement", "The caller's transfers, oldest first, a page at a time", "account",
            {"200": _json(_ref("Statement"),
                          "A page; `next_after` is the cursor of the next one (null: none).")},
            parameters=("After", "Limit"))},
        "/v1/events": {"get": _operator_op(
            "getEvents", "Credits to the caller's position (long poll)", "account",
            {"200": _json(_ref("Events"),
                          "Events after `after` (possibly none once `wait` has passed); "
                          "pass `cursor` as the next `after`.")},
            parameters=("After", "Wait"),
            description="At-least-once delivery of credits to the caller's e-CNY position: "
                        "an event may come again after a reconnect, so deduplicate by "
                        "transfer id. Waits up to `wait` seconds when none is ready.")},
        "/v1/keys/confirm": {"post": _operator_op(
            "confirmKey", "Confirm a pending key, making it the active key", "keys",
            {"200": _json(_ref("Operator"), "The key is active; the previous key is retired.")},
            body=_empty_body(), key="pending",
            description="Signed with the pending key (added with "
                        "POST /v1/admin/operators/{code}/keys), proving the operator holds it.")},
        "/v1/admin/operators": {
            "post": _admin_op(
                "registerOperator", "Register an operator bank",
                {"201": oas.with_links(
                    _json(_ref("Operator"), "Registered, active, its key active."),
                    {name: (operation, {"code": "$response.body#/code"}) for name, operation in (
                        ("Suspend", "suspendOperator"), ("Reactivate", "reactivateOperator"),
                        ("AddKey", "addOperatorKey"), ("FundReserves", "fundReserves"))}),
                 "409": _problem("An operator with this code exists.")},
                body=_body("RegisterOperator", "The bank and its first signing key.")),
            "get": _admin_op(
                "listOperators", "All operator banks",
                {"200": _json({"type": "array", "items": _ref("Operator")}, "Every operator.")}),
        },
        "/v1/admin/operators/{code}/suspend": {"post": _admin_op(
            "suspendOperator", "Suspend an operator (its calls get 403)",
            {"200": _json(_ref("Operator"), "Suspended."), "404": no_operator},
            body=_empty_body(), parameters=("OperatorCode",))},
        "/v1/admin/operators/{code}/reactivate": {"post": _admin_op(
            "reactivateOperator", "Reactivate a suspended operator",
            {"200": _json(_ref("Operator"), "Active again."), "404": no_operator},
            body=_empty_body(), parameters=("OperatorCode",))},
        "/v1/admin/operators/{code}/keys": {"post": _admin_op(
            "addOperatorKey", "Add a signing key (pending until the operator confirms it)",
            {"201": _json(_ref("Operator"), "The key is pending."), "404": no_operator,
             "409": _problem("The operator already has a key with this id.")},
            body=_body("AddKey", "The new key."), parameters=("OperatorCode",))},
        "/v1/admin/operators/{code}/reserves": {"post": _admin_op(
            "fundReserves", "Move reserves in for an operator (stands for the RTGS system)",
            {"201": _json(_ref("TransferResult"), "Funded (or the first result for this id)."),
             "404": no_operator,
             "409": _problem("The id was used before for another amount or operator."),
             "422": rejected},
            body=_body("FundReserves", "Reserves to credit."), parameters=("OperatorCode",))},
        "/v1/admin/supply": {"get": _admin_op(
            "getSupply", "e-CNY outstanding and the reserve-backing invariant",
            {"200": _json(_ref("Supply"), "`balanced` is true when the invariants hold.")})},
        "/v1/admin/blocks/{height}": {"get": _admin_op(
            "getBlock", "One block of the journal",
            {"200": _json(_ref("Block"), "The block."),
             "404": _problem("No block at this height."),
             "422": _problem("The height is not a positive whole number (`field` height).")},
            parameters=("BlockHeight",))},
        "/v1/admin/chain": {"get": _admin_op(
            "exportChain", "The whole journal, for `cbdc audit`",
            {"200": {
                "description": "Newline-delimited JSON: a ChainExportHeader line, then one "
                               "Block per line in height order.",
                "content": {NDJSON: {
                    "schema": {"type": "string"},
                    "x-item-schema": {"oneOf": [_ref("ChainExportHeader"), _ref("Block")]},
                }},
            }})},
        "/health": {"get": _public_op(
            "health", "Liveness and ledger height",
            {"200": _json(_ref("Health"), "Up, ledger loaded.")})},
        "/metrics": {"get": _public_op(
            "metrics", "Prometheus metrics",
            {"200": oas.metrics_response()})},
        "/openapi.json": {"get": _public_op(
            "openapi", "This document",
            {"200": oas.openapi_response()})},
        "/v1/ledger-key": {"get": _public_op(
            "getLedgerKey", "The public key that signs the ledger's blocks",
            {"200": _json(_ref("LedgerKey"), "The key.")})},
    }


TAGS = [
    {"name": "issuance", "description": "Swapping reserves for e-CNY and back (operators)."},
    {"name": "transfers", "description": "Interbank e-CNY transfers (operators)."},
    {"name": "account", "description": "The caller's positions, statement and events."},
    {"name": "keys", "description": "Signing-key rotation (operators)."},
    {"name": "admin", "description": "Operating the central bank (bearer token)."},
    {"name": "public", "description": "No authentication."},
]

DESCRIPTION = """\
Ledger of record for operator banks: reserve accounts and e-CNY positions, issuance and
redemption (100% reserve backing), interbank transfers, signed blocks and receipts.

Amounts are integers of fen (0.01 CNY), never floats. Ids are 128-bit, chosen by the client,
in UUID form; retrying a request with the same id is safe.

Operator calls are RFC 9421 HTTP message signatures over `@method`, `@path`,
`content-digest` and `idempotency-key`, with a nonce and a short max age (see the
`Signature`, `Signature-Input`, `Content-Digest` and `Idempotency-Key` parameters). Admin
calls carry a bearer token. Every error is an RFC 9457 problem.
"""


def build_openapi(server_url: str | None = None) -> dict[str, Any]:
    """A fresh OpenAPI 3.1.0 document (the caller may change it)."""
    return oas.openapi_document(
        title="CBDC central bank",
        version="0.1.0",
        description=DESCRIPTION,
        tags=TAGS,
        paths=_paths(),
        components={
            "schemas": component_schemas(),
            "parameters": _parameters(),
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "The central bank operator's admin token."},
            },
        },
        server_url=server_url,
    )
