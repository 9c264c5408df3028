"""cbdc.bank_client against a tiny central bank that checks every signature with
cbdc.httpsig.verify_request, so the client and the verifier agree end to end."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from cbdc.bank_client import CentralBankClient, CentralBankError, CentralBankUnreachable
from cbdc.httpsig import SignatureRejected, VerifiedSignature, verify_request
from cbdc.problems import (
    json_response,
    problem_middleware,
    read_json,
    rejected,
    unauthorized,
)
from cbdc.signing import SigningKey, VerifyingKey
from cbdc.wire import InterbankTransfer, IssueRequest, TransferBatch, id_to_text

KEY = SigningKey.generate()
KEY_ID = "banka-1"
TRANSFER_ID = 0x0192C4E07C1E7B2A9D41000000000001
TRANSFER_TEXT = "0192c4e0-7c1e-7b2a-9d41-000000000001"


@dataclass
class Call:
    method: str
    path_qs: str
    idempotency_key: str
    signature: VerifiedSignature
    body: bytes


@dataclass
class CentralBank:
    """What the fake central bank saw, and how it should misbehave."""

    calls: list[Call] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)  # "503" or "drop", used up in order

    def keys(self, key_id: str) -> VerifyingKey | None:
        return KEY.public if key_id == KEY_ID else None


BANK = web.AppKey("bank", CentralBank)


@web.middleware
async def verify_signature(request: web.Request, handler: Handler) -> web.StreamResponse:
    bank = request.app[BANK]
    body = await request.read()
    try:
        signature = verify_request(
            request.method, str(request.url), request.headers, body, resolve_key=bank.keys
        )
    except SignatureRejected as exc:
        raise unauthorized(exc.reason) from None
    if signature.nonce in bank.nonces:  # the replay check the real server keeps in PostgreSQL
        raise unauthorized("the nonce was used before")
    bank.nonces.add(signature.nonce)
    call = Call(
        request.method, request.path_qs, request.headers["Idempotency-Key"], signature, body
    )
    bank.calls.append(call)
    if bank.failures:
        failure = bank.failures.pop(0)
        if failure == "drop":
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection die mid-request
            return web.Response()
        return web.Response(status=int(failure), text="try again later")
    return await handler(request)


async def issuance(request: web.Request) -> web.Response:
    order = await read_json(request, IssueRequest)
    if order.amount > 1_000_000:
        raise rejected("exceeds_reserves", "BANKA's reserves are smaller than the amount")
    return json_response({"id": order.id, "status": "settled", "block": 7}, status=201)


async def transfers(request: web.Request) -> web.Response:
    transfer = await read_json(request, InterbankTransfer)
    return json_response({"id": transfer.id, "status": "settled"})


async def batch(request: web.Request) -> web.Response:
    batch = await read_json(request, TransferBatch)
    results = [{"id": t.id, "status": "settled"} for t in batch.transfers]
    return json_response({"results": results, "settled": len(results), "rejected": 0})


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return json_response({"path": request.path_qs, "body": body.decode() or None})


async def plain_error(request: web.Request) -> web.Response:
    return web.Response(status=400, text="not a problem document")


@pytest.fixture
async def central_bank() -> AsyncIterator[tuple[str, CentralBank]]:
    bank = CentralBank()
    app = web.Application(
        middlewares=[problem_middleware(logging.getLogger("tests.bank")), verify_signature]
    )
    app[BANK] = bank
    app.router.add_post("/v1/issuance", issuance)
    app.router.add_post("/v1/redemption", issuance)
    app.router.add_post("/v1/transfers", transfers)
    app.router.add_post("/v1/transfers/batch", batch)
    app.router.add_get("/v1/plain-error", plain_error)
    for path in (
        "/v1/transfers/{id}",
        "/v1/transfers/{id}/receipt",
        "/v1/positions",
        "/v1/statement",
        "/v1/events",
    ):
        app.router.add_get(path, echo)
    app.router.add_post("/v1/keys/confirm", echo)
    async with TestServer(app) as server:
        yield str(server.make_url("")), bank


@pytest.fixture
async def client(central_bank: tuple[str, CentralBank]) -> AsyncIterator[CentralBankClient]:
    async with CentralBankClient(central_bank[0], key_id=KEY_ID, key=KEY, backoff=0) as cb:
        yield cb


# --------------------------------------------------------------- happy paths
async def test_issue_is_signed_verified_and_answered(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    result = await client.issue(TRANSFER_ID, 100_000)
    assert result == {"id": TRANSFER_TEXT, "status": "settled", "block": 7}
    [call] = central_bank[1].calls
    assert (call.method, call.path_qs) == ("POST", "/v1/issuance")
    assert call.signature.key_id == KEY_ID
    assert msgspec.json.decode(call.body) == {"id": TRANSFER_TEXT, "amount": 100_000}


async def test_request_returns_status_and_json(client: CentralBankClient) -> None:
    order = {"id": TRANSFER_TEXT, "amount": 5}
    status, data = await client.request("POST", "/v1/redemption", order, idempotency_key="k-1")
    assert (status, data["status"]) == (201, "settled")


async def test_ids_may_be_ints_or_uuid_text(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    await client.get_transfer(TRANSFER_ID)
    await client.get_transfer(TRANSFER_TEXT.upper())
    await client.get_transfer(uuid.UUID(TRANSFER_TEXT))
    paths = {call.path_qs for call in central_bank[1].calls}
    assert paths == {f"/v1/transfers/{TRANSFER_TEXT}"}
    with pytest.raises(ValueError, match="id"):
        await client.get_transfer(0)


async def test_each_route_gets_its_method_path_and_body(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    await client.redeem(TRANSFER_TEXT, 300)
    await client.transfer(TRANSFER_ID, "BANKB", 2500, "w:alice", "w:bob", memo_ref="inv-7")
    batch = await client.transfer_batch(
        [
            {
                "id": TRANSFER_ID + 1,
                "payee_bank": "BANKB",
                "amount": 1,
                "payer_ref": "w:a",
                "payee_ref": "w:b",
            },
            InterbankTransfer(id_to_text(TRANSFER_ID + 2), "BANKC", 2, "w:a", "w:c"),
        ]
    )
    assert batch["settled"] == 2
    await client.receipt(TRANSFER_ID)
    await client.positions()
    await client.statement()
    await client.statement(after="cursor-9", limit=10)
    events = await client.events(after="42", wait=0.5)
    assert events == {"path": "/v1/events?after=42&wait=0.5", "body": None}
    await client.confirm_key()

    calls = central_bank[1].calls
    assert [(c.method, c.path_qs) for c in calls] == [
        ("POST", "/v1/redemption"),
        ("POST", "/v1/transfers"),
        ("POST", "/v1/transfers/batch"),
        ("GET", f"/v1/transfers/{TRANSFER_TEXT}/receipt"),
        ("GET", "/v1/positions"),
        ("GET", "/v1/statement?limit=100"),
        ("GET", "/v1/statement?after=cursor-9&limit=10"),
        ("GET", "/v1/events?after=42&wait=0.5"),
        ("POST", "/v1/keys/confirm"),
    ]
    assert msgspec.json.decode(calls[1].body) == {
        "id": TRANSFER_TEXT,
        "payee_bank": "BANKB",
        "amount": 2500,
        "payer_ref": "w:alice",
        "payee_ref": "w:bob",
        "memo_ref": "inv-7",
    }
    sent_ids = [t["id"] for t in msgspec.json.decode(calls[2].body)["transfers"]]
    assert sent_ids == [id_to_text(TRANSFER_ID + 1), id_to_text(TRANSFER_ID + 2)]


async def test_gets_are_signed_over_an_empty_body_and_their_own_idempotency_key(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    await client.positions()
    await client.positions()
    first, second = central_bank[1].calls
    assert first.body == second.body == b""
    assert first.idempotency_key != second.idempotency_key


# -------------------------------------------------------------------- errors
async def test_a_problem_becomes_a_central_bank_error(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    with pytest.raises(CentralBankError) as caught:
        await client.issue(TRANSFER_ID, 5_000_000)
    error = caught.value
    assert error.status == 422
    assert error.code == "exceeds_reserves"
    assert error.type == "https://cbdc.example/problems/rejected"
    assert str(error) == "Rejected by the ledger: BANKA's reserves are smaller than the amount"
    assert len(central_bank[1].calls) == 1  # a 4xx is an answer, not a reason to retry


async def test_a_validation_problem_names_the_field(client: CentralBankClient) -> None:
    with pytest.raises(CentralBankError) as caught:
        await client.transfer(TRANSFER_ID, "bank b", 1, "w:a", "w:b")
    assert caught.value.status == 422
    assert caught.value.field == "$.payee_bank"


async def test_a_wrong_key_is_refused_with_the_verifiers_reason(
    central_bank: tuple[str, CentralBank],
) -> None:
    impostor = CentralBankClient(central_bank[0], key_id=KEY_ID, key=SigningKey.generate())
    async with impostor:
        with pytest.raises(CentralBankError) as caught:
            await impostor.positions()
    assert caught.value.status == 401
    assert caught.value.problem["detail"] == "the signature does not match the request"


async def test_an_unknown_key_id_is_refused(central_bank: tuple[str, CentralBank]) -> None:
    async with CentralBankClient(central_bank[0], key_id="nobody", key=KEY) as stranger:
        with pytest.raises(CentralBankError, match="the signing key 'nobody' is not known"):
            await stranger.positions()


async def test_an_error_without_a_problem_body_keeps_its_text(client: CentralBankClient) -> None:
    with pytest.raises(CentralBankError) as caught:
        await client.request("GET", "/v1/plain-error")
    assert caught.value.status == 400
    assert caught.value.problem["detail"] == "not a problem document"


# ------------------------------------------------------------------- retries
async def test_a_5xx_is_retried_with_the_same_key_and_body_but_a_fresh_signature(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    central_bank[1].failures = ["503", "502"]
    result = await client.issue(TRANSFER_ID, 100)
    assert result["status"] == "settled"
    calls = central_bank[1].calls
    assert len(calls) == 3
    assert len({c.idempotency_key for c in calls}) == 1
    assert len({c.body for c in calls}) == 1
    assert len({c.signature.nonce for c in calls}) == 3


async def test_a_dropped_connection_is_retried_with_the_same_key(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    central_bank[1].failures = ["drop"]
    status, _ = await client.request(
        "POST", "/v1/issuance", {"id": TRANSFER_TEXT, "amount": 9}, idempotency_key="stable-key"
    )
    assert status == 201
    assert [c.idempotency_key for c in central_bank[1].calls] == ["stable-key"] * 2


async def test_retries_give_up_with_the_last_answer(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    central_bank[1].failures = ["503"] * 5
    with pytest.raises(CentralBankError) as caught:
        await client.positions()
    assert caught.value.status == 503
    assert caught.value.problem["detail"] == "try again later"
    assert len(central_bank[1].calls) == 3  # the first attempt and the client's 2 retries


async def test_retries_can_be_turned_off_per_call(
    client: CentralBankClient, central_bank: tuple[str, CentralBank]
) -> None:
    central_bank[1].failures = ["500"]
    with pytest.raises(CentralBankError):
        await client.request("GET", "/v1/positions", retries=0)
    assert len(central_bank[1].calls) == 1


async def test_no_server_means_unreachable_after_every_attempt() -> None:
    async with TestServer(web.Application()) as server:
        url = str(server.make_url(""))
    # The server is gone: its port refuses connections now.
    async with CentralBankClient(url, key_id=KEY_ID, key=KEY, retries=1, backoff=0) as cb:
        with pytest.raises(CentralBankUnreachable, match="after 2 attempts") as caught:
            await cb.positions()
    assert caught.value.url == url + "/v1/positions"


async def test_a_shared_session_is_left_open(central_bank: tuple[str, CentralBank]) -> None:
    async with aiohttp.ClientSession() as session:
        async with CentralBankClient(
            central_bank[0], key_id=KEY_ID, key=KEY, session=session
        ) as cb:
            await cb.positions()
        assert not session.closed
