"""The baseline `cbdc bench central-bank` compares against (`central_bank.baseline`) is a
correct ledger, so the ratio compares like with like: it refuses a replayed signature, a
transfer its payer cannot cover and an unknown payee bank without moving money, a retry
of a transfer moves nothing, and a batch answers item by item. On real PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import web

from cbdc.httpsig import sign_request
from cbdc.processes import unused_port
from cbdc.signing import SigningKey
from central_bank.baseline import create_app

FUNDING = 1_000


@dataclass
class Baseline:
    url: str
    session: aiohttp.ClientSession
    keys: dict[str, SigningKey]

    def signed(self, bank: str, method: str, path: str, body: bytes) -> dict[str, str]:
        headers = {"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
        headers.update(sign_request(method, self.url + path, headers, body,
                                    key_id=f"{bank.lower()}-1", key=self.keys[bank]))
        return headers

    async def send(self, method: str, path: str, body: bytes, headers: dict[str, str]
                   ) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, data=body,
                                        headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def call(self, bank: str, method: str, path: str, payload: Any = None
                   ) -> tuple[int, Any]:
        body = msgspec.json.encode(payload) if payload is not None else b""
        return await self.send(method, path, body, self.signed(bank, method, path, body))

    async def position(self, bank: str) -> int:
        status, data = await self.call(bank, "GET", "/v1/positions")
        assert status == 200
        return int(data["ecny"])


def transfer(payee: str, amount: int, transfer_id: str | None = None) -> dict[str, Any]:
    return {"id": transfer_id or str(uuid.uuid4()), "payee_bank": payee, "amount": amount,
            "payer_ref": "w-payer", "payee_ref": "w-payee"}


@pytest.fixture
async def baseline(database_url: str) -> AsyncIterator[Baseline]:
    keys = {code: SigningKey.generate() for code in ("BANKA", "BANKB")}
    conn = await asyncpg.connect(database_url)
    try:
        for code, key in keys.items():
            await conn.execute("INSERT INTO operators (code, name, status) "
                               "VALUES ($1, $1, 'active')", code)
            await conn.execute("INSERT INTO operator_keys (key_id, operator_code, public_key, "
                               "status) VALUES ($1, $2, $3, 'active')",
                               f"{code.lower()}-1", code, key.public.to_der())
    finally:
        await conn.close()
    runner = web.AppRunner(create_app(database_url, FUNDING))
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Baseline(f"http://127.0.0.1:{port}", session, keys)
    finally:
        await runner.cleanup()


async def test_a_transfer_moves_money_once_and_a_retry_moves_nothing(baseline: Baseline
                                                                      ) -> None:
    item = transfer("BANKB", 300)
    for _ in range(2):  # the retry is a new request: new signature, same transfer id
        status, data = await baseline.call("BANKA", "POST", "/v1/transfers", item)
        assert (status, data["status"]) == (201, "settled")
    spend_all = await baseline.call("BANKA", "POST", "/v1/transfers",
                                    transfer("BANKB", FUNDING - 300))
    assert spend_all[0] == 201
    # A late retry is still answered settled, though the payer could not pay it now.
    status, data = await baseline.call("BANKA", "POST", "/v1/transfers", item)
    assert (status, data["status"]) == (201, "settled")
    assert await baseline.position("BANKA") == 0
    assert await baseline.position("BANKB") == 2 * FUNDING


async def test_refusals_move_nothing(baseline: Baseline) -> None:
    body = msgspec.json.encode(transfer("BANKB", 10))
    headers = baseline.signed("BANKA", "POST", "/v1/transfers", body)
    assert (await baseline.send("POST", "/v1/transfers", body, headers))[0] == 201
    replayed, problem = await baseline.send("POST", "/v1/transfers", body, headers)
    assert replayed == 401
    assert "replay" in problem["detail"]

    over, problem = await baseline.call("BANKA", "POST", "/v1/transfers",
                                        transfer("BANKB", FUNDING))
    assert (over, problem["code"]) == (422, "exceeds_credits")
    unknown, problem = await baseline.call("BANKA", "POST", "/v1/transfers",
                                           transfer("BANKZ", 1))
    assert (unknown, problem["code"]) == (422, "payee_bank_unknown")

    assert await baseline.position("BANKA") == FUNDING - 10
    assert await baseline.position("BANKB") == FUNDING + 10


async def test_a_batch_answers_item_by_item(baseline: Baseline) -> None:
    items = [transfer("BANKB", 100), transfer("BANKZ", 5), transfer("BANKB", 2_000),
             transfer("BANKB", 1)]
    status, data = await baseline.call("BANKA", "POST", "/v1/transfers/batch",
                                       {"transfers": items})
    assert status == 200
    assert [r["status"] for r in data["results"]] == ["settled", "rejected", "rejected",
                                                      "settled"]
    assert [r.get("code") for r in data["results"]] == [None, "payee_bank_unknown",
                                                        "exceeds_credits", None]
    assert (data["settled"], data["rejected"]) == (2, 2)
    assert await baseline.position("BANKA") == FUNDING - 101
    assert await baseline.position("BANKB") == FUNDING + 101


async def test_an_unsigned_request_is_refused(baseline: Baseline) -> None:
    body = msgspec.json.encode(transfer("BANKB", 1))
    status, problem = await baseline.send("POST", "/v1/transfers", body,
                                          {"Content-Type": "application/json",
                                           "Idempotency-Key": str(uuid.uuid4())})
    assert status == 401
    assert problem["title"]
    assert await baseline.position("BANKB") == FUNDING
