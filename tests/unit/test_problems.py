"""cbdc.problems: every error a handler meets becomes an RFC 9457 problem response."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cbdc.problems import (
    PROBLEM_CONTENT_TYPE,
    ProblemError,
    bad_request,
    conflict,
    forbidden,
    json_response,
    not_found,
    problem_middleware,
    rate_limited,
    read_json,
    rejected,
    too_large,
    unauthorized,
    validation,
)
from cbdc.wire import Problem, TransferBatch

LOGGER = logging.getLogger("tests.problems")
MAX_BODY = 4096
TYPE = "https://cbdc.example/problems/"
TRANSFER = {
    "id": "0192c4e0-7c1e-7b2a-9d41-000000000001",
    "payee_bank": "BANKB",
    "amount": 2500,
    "payer_ref": "w:alice",
    "payee_ref": "w:bob",
}


class Secret(RuntimeError):
    pass


async def raise_problem(request: web.Request) -> web.Response:
    helpers = {
        "bad-request": lambda: bad_request("the cursor is not a number"),
        "validation": lambda: validation("public_key_pem", "pem-p256", "not a P-256 key"),
        "unauthorized": lambda: unauthorized("the signature does not cover idempotency-key"),
        "forbidden": lambda: forbidden("operator BANKA is suspended"),
        "not-found": lambda: not_found("no transfer 0192c4e0-7c1e-7b2a-9d41-000000000001"),
        "conflict": lambda: conflict("the idempotency key was used for another request"),
        "too-large": lambda: too_large("at most 8000 transfers per batch"),
        "rate-limited": lambda: rate_limited("slow down", 2.2),
        "rejected": lambda: rejected("exceeds_credits", "BANKA has too little e-CNY", "$.amount"),
    }
    raise helpers[request.match_info["kind"]]()


async def batch(request: web.Request) -> web.Response:
    transfers = await read_json(request, TransferBatch)
    return json_response({"count": len(transfers.transfers)}, status=201)


async def decode_in_handler(request: web.Request) -> web.Response:
    # Handlers that decode by hand still get problems through the middleware.
    transfers = msgspec.json.decode(await request.read(), type=TransferBatch)
    return json_response(transfers)


async def read_raw(request: web.Request) -> web.Response:
    return json_response({"length": len(await request.read())})


async def crash(request: web.Request) -> web.Response:
    raise Secret("password=hunter2 in the connection string")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/elsewhere")


async def positions(request: web.Request) -> web.Response:
    return json_response(Problem(type="t", title="not a problem, just a struct", status=200))


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[problem_middleware(LOGGER)], client_max_size=MAX_BODY)
    app.router.add_get("/problem/{kind}", raise_problem)
    app.router.add_post("/batch", batch)
    app.router.add_post("/decode", decode_in_handler)
    app.router.add_post("/raw", read_raw)
    app.router.add_get("/crash", crash)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/positions", positions)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = await response.json(content_type=PROBLEM_CONTENT_TYPE)
    assert body["status"] == status
    return body


@pytest.mark.parametrize(
    ("kind", "status", "slug", "title"),
    [
        ("bad-request", 400, "bad-request", "Bad Request"),
        ("validation", 422, "validation-failed", "Unprocessable Content"),
        ("unauthorized", 401, "unauthorized", "Unauthorized"),
        ("forbidden", 403, "forbidden", "Forbidden"),
        ("not-found", 404, "not-found", "Not Found"),
        ("conflict", 409, "conflict", "Conflict"),
        ("too-large", 413, "payload-too-large", "Content Too Large"),
        ("rate-limited", 429, "rate-limited", "Too Many Requests"),
        ("rejected", 422, "rejected", "Rejected by the ledger"),
    ],
)
async def test_each_helper_makes_its_problem(
    client: TestClient[web.Request, web.Application],
    kind: str,
    status: int,
    slug: str,
    title: str,
) -> None:
    body = await problem_of(await client.get(f"/problem/{kind}"), status)
    assert body["type"] == TYPE + slug
    assert body["title"] == title
    assert body["detail"]


async def test_a_validation_problem_names_its_field_and_rule(
    client: TestClient[web.Request, web.Application],
) -> None:
    body = await problem_of(await client.get("/problem/validation"), 422)
    assert body == {
        "type": TYPE + "validation-failed",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "not a P-256 key",
        "field": "public_key_pem",
        "rule": "pem-p256",
    }


async def test_a_ledger_rejection_carries_its_result_code(
    client: TestClient[web.Request, web.Application],
) -> None:
    body = await problem_of(await client.get("/problem/rejected"), 422)
    assert body["code"] == "exceeds_credits"
    assert body["field"] == "$.amount"


async def test_rate_limited_says_when_to_come_back(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/problem/rate-limited")
    body = await problem_of(response, 429)
    assert response.headers["Retry-After"] == "3"
    assert body["retry_after"] == 3


async def test_an_unknown_route_is_a_404_problem(
    client: TestClient[web.Request, web.Application],
) -> None:
    body = await problem_of(await client.get("/v1/nowhere"), 404)
    assert body["type"] == TYPE + "not-found"
    assert body["title"] == "Not Found"


async def test_a_wrong_method_is_a_405_problem_that_keeps_allow(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.delete("/positions")
    body = await problem_of(response, 405)
    assert body["type"] == TYPE + "method-not-allowed"
    assert "GET" in response.headers["Allow"]


async def test_a_body_over_client_max_size_is_a_413_problem(
    client: TestClient[web.Request, web.Application],
) -> None:
    big = b'{"transfers": [' + b" " * MAX_BODY + b"]}"
    for path in ("/batch", "/raw"):  # through read_json, and aiohttp's own read()
        body = await problem_of(await client.post(path, data=big), 413)
        assert body["type"] == TYPE + "payload-too-large"


async def test_a_413_is_also_given_for_a_chunked_body_without_length(
    client: TestClient[web.Request, web.Application],
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    body = await problem_of(await client.post("/batch", data=chunks()), 413)
    assert "4096 bytes" in body["detail"]


async def test_read_json_decodes_into_the_type(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/batch", json={"transfers": [TRANSFER, TRANSFER]})
    assert response.status == 201
    assert response.content_type == "application/json"
    assert await response.json() == {"count": 2}


@pytest.mark.parametrize("path", ["/batch", "/decode"])
async def test_a_wrong_type_deep_in_the_body_names_its_json_path(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    transfers = [TRANSFER] * 3 + [TRANSFER | {"amount": "25.00"}]
    body = await problem_of(await client.post(path, json={"transfers": transfers}), 422)
    assert body["type"] == TYPE + "validation-failed"
    assert body["field"] == "$.transfers[3].amount"
    assert body["rule"] == "Expected `int`, got `str`"


@pytest.mark.parametrize(
    ("transfer", "field", "rule"),
    [
        (
            {k: v for k, v in TRANSFER.items() if k != "payee_ref"},
            "$.transfers[0].payee_ref",
            "Object missing required field `payee_ref`",
        ),
        (
            TRANSFER | {"colour": "red"},
            "$.transfers[0].colour",
            "Object contains unknown field `colour`",
        ),
        (TRANSFER | {"amount": 0}, "$.transfers[0].amount", "Expected `int` >= 1"),
        (TRANSFER | {"amount": 1.5}, "$.transfers[0].amount", "Expected `int`, got `float`"),
    ],
)
async def test_missing_unknown_and_out_of_range_fields_are_named(
    client: TestClient[web.Request, web.Application],
    transfer: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    body = await problem_of(await client.post("/batch", json={"transfers": [transfer]}), 422)
    assert (body["field"], body["rule"]) == (field, rule)


async def test_a_wrong_root_is_a_422_at_the_root(
    client: TestClient[web.Request, web.Application],
) -> None:
    body = await problem_of(await client.post("/batch", json=[1, 2]), 422)
    assert body["field"] == "$"


@pytest.mark.parametrize("path", ["/batch", "/decode"])
async def test_malformed_json_is_a_400(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    body = await problem_of(await client.post(path, data=b'{"transfers": [}'), 400)
    assert body["type"] == TYPE + "bad-request"
    assert "not valid JSON" in body["detail"]


async def test_an_empty_body_is_a_400(client: TestClient[web.Request, web.Application]) -> None:
    body = await problem_of(await client.post("/batch", data=b""), 400)
    assert body["detail"] == "the request body is empty; a JSON document was expected"


async def test_a_crash_is_a_500_without_its_traceback_and_is_logged(
    client: TestClient[web.Request, web.Application], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        response = await client.get("/crash")
        body = await problem_of(response, 500)
    text = await response.text()
    for leak in ("Traceback", "hunter2", "Secret", "crash", ".py"):
        assert leak not in text
    assert body["type"] == TYPE + "internal-error"
    assert body["instance"].startswith("urn:uuid:")
    incident = body["instance"].removeprefix("urn:uuid:")
    assert incident in body["detail"]
    [record] = [r for r in caplog.records if r.name == LOGGER.name]
    assert incident in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Secret)  # the traceback goes to the log only


async def test_redirects_pass_through(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/redirect", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/elsewhere"


async def test_json_response_encodes_structs(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/positions")
    assert response.status == 200
    assert await response.json() == {
        "type": "t",
        "title": "not a problem, just a struct",
        "status": 200,
    }


def test_a_problem_error_is_a_wire_problem_and_a_cbdc_error() -> None:
    from cbdc.errors import CbdcError

    error = rejected("exceeds_credits", "BANKA has too little e-CNY", field="$.amount")
    assert isinstance(error, CbdcError)
    assert isinstance(error, ProblemError)
    assert str(error) == "BANKA has too little e-CNY"
    assert error.to_problem() == Problem(
        type=TYPE + "rejected",
        title="Rejected by the ledger",
        status=422,
        detail="BANKA has too little e-CNY",
        field="$.amount",
        code="exceeds_credits",
    )
