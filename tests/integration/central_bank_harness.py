"""A running central bank for tests: the real aiohttp service on a real PostgreSQL, on a
loopback port, with operator banks whose keys the tests hold."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from cbdc.bank_client import CentralBankClient
from cbdc.processes import unused_port
from cbdc.settings import Settings
from cbdc.signing import SigningKey
from central_bank.app import create_app
from tests.openapi_check import OpenApiChecker

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Operator:
    code: str
    key_id: str
    key: SigningKey
    client: CentralBankClient


@dataclass
class CentralBankUnderTest:
    url: str
    database_url: str
    data_dir: Path
    session: aiohttp.ClientSession
    runner: web.AppRunner | None = None
    port: int = 0
    operators: dict[str, Operator] = field(default_factory=dict)
    checker: OpenApiChecker | None = None
    operator_rate: float = 20_000

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method, self.url + path, json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response:
            data = await response.json(content_type=None)
            self.check(method, path, response.status, response.content_type, data)
            return response.status, data

    def check(self, method: str, path: str, status: int, content_type: str, body: Any) -> None:
        if self.checker is not None:
            self.checker.check(method, path, status, content_type, body)

    async def add_operator(self, code: str, *, reserves: int = 0) -> Operator:
        key = SigningKey.generate()
        key_id = f"{code.lower()}-key-1"
        status, _ = await self.admin("POST", "/v1/admin/operators", {
            "code": code, "name": f"Bank {code}", "key_id": key_id,
            "public_key_pem": key.public.to_pem().decode()})
        assert status == 201
        client = CentralBankClient(self.url, key_id=key_id, key=key, session=self.session,
                                   retries=0)
        operator = Operator(code, key_id, key, client)
        self.operators[code] = operator
        if reserves:
            status, _ = await self.admin("POST", f"/v1/admin/operators/{code}/reserves",
                                         {"id": new_id(), "amount": reserves})
            assert status == 201
        return operator

    async def supply(self) -> dict[str, Any]:
        status, data = await self.admin("GET", "/v1/admin/supply")
        assert status == 200
        return dict(data)

    async def start(self) -> None:
        settings = Settings(data_dir=self.data_dir, admin_token=ADMIN_TOKEN,
                            database_url=self.database_url, operator_rate=self.operator_rate)
        self.runner = web.AppRunner(create_app(settings, self.database_url))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@asynccontextmanager
async def running_central_bank(database_url: str, data_dir: Path, *,
                               operator_rate: float = 20_000,
                               ) -> AsyncIterator[CentralBankUnderTest]:
    port = unused_port()
    async with aiohttp.ClientSession() as session:
        bank = CentralBankUnderTest(url=f"http://127.0.0.1:{port}", database_url=database_url,
                                    data_dir=data_dir, session=session, port=port,
                                    operator_rate=operator_rate)
        await bank.start()
        try:
            async with session.get(bank.url + "/openapi.json") as response:
                bank.checker = OpenApiChecker(await response.json())
            yield bank
        finally:
            await bank.stop()


async def signed_call(bank: CentralBankUnderTest, operator: Operator, method: str, path: str,
                      body: Any = None, *, idempotency_key: str | None = None,
                      tamper: Any = None, check: bool = True) -> tuple[int, Any]:
    """One signed request, sent raw so a test sees the status; `tamper(headers, body)`
    may alter the signed request before it is sent (returning new headers and body)."""
    import msgspec

    from cbdc.httpsig import sign_request

    url = bank.url + path
    content = b"" if body is None else msgspec.json.encode(body)
    headers = {"Idempotency-Key": idempotency_key or new_id()}
    if body is not None:
        headers["Content-Type"] = "application/json"
    headers |= sign_request(method, url, headers, content, key_id=operator.key_id,
                            key=operator.key)
    if tamper is not None:
        headers, content, url = tamper(headers, content, url)
    async with bank.session.request(method, url, data=content or None,
                                    headers=headers) as response:
        data = await response.json(content_type=None)
        if check:
            route = path.split("?", maxsplit=1)[0]
            bank.check(method, route, response.status, response.content_type, data)
        return response.status, data


async def ledger_height(bank: CentralBankUnderTest) -> int:
    async with bank.session.get(bank.url + "/health") as response:
        return int((await response.json())["ledger_height"])


def _replace(headers: dict[str, str], name: str, value: str) -> dict[str, str]:
    return {**headers, name: value}


async def assert_forgeries_refused(central_bank: CentralBankUnderTest, a: Operator) -> None:
    """The request-signing rejection matrix: each forged, replayed, stale or unauthorised
    request of operator `a` is refused with 401 and writes nothing (the ledger height
    stays)."""
    body = {"id": new_id(), "amount": 1_000}
    height_before = await ledger_height(central_bank)

    async def refused(tamper: Any, expected: int = 401, **kwargs: Any) -> str:
        status, problem = await signed_call(central_bank, a, "POST", "/v1/issuance", body,
                                            tamper=tamper, **kwargs)
        assert status == expected, problem
        return str(problem.get("detail"))

    assert "digest" in (await refused(lambda h, c, u: (h, c.replace(b"1000", b"9000"), u))).lower()
    await refused(lambda h, c, u: (h, c, u.replace("/v1/issuance", "/v1/redemption")))
    await refused(lambda h, c, u: (_replace(h, "Idempotency-Key", new_id()), c, u))
    await refused(lambda h, c, u: ({k: v for k, v in h.items() if k != "Signature"}, c, u))

    # A signature that leaves out a covered component.
    import http_message_signatures as hms

    from cbdc.httpsig import KeyResolver

    def partial(headers: dict[str, str], content: bytes, url: str):  # type: ignore[no-untyped-def]
        message = type("M", (), {})()
        message.method, message.url = "POST", url
        message.headers = {"Idempotency-Key": headers["Idempotency-Key"]}
        hms.HTTPMessageSigner(signature_algorithm=hms.algorithms.ECDSA_P256_SHA256,
                              key_resolver=KeyResolver(signing={a.key_id: a.key})).sign(
            message, key_id=a.key_id, nonce=new_id(), label="cbdc",
            covered_component_ids=("@method", "@path", "@query", "content-digest"),
            body=content)
        return {**headers, **message.headers}, content, url

    assert "idempotency-key" in await refused(partial)

    # Replay: the very same signed request twice.
    captured: dict[str, Any] = {}

    def keep(headers: dict[str, str], content: bytes, url: str):  # type: ignore[no-untyped-def]
        captured.update(headers=headers, content=content, url=url)
        return headers, content, url

    status, _ = await signed_call(central_bank, a, "GET", "/v1/positions", tamper=keep)
    assert status == 200
    async with central_bank.session.get(captured["url"], headers=captured["headers"]) as again:
        assert again.status == 401
        assert "replay" in (await again.json())["detail"]

    # Stale and future `created`.
    from cbdc.httpsig import sign_request

    for created in (int(time.time()) - 120, int(time.time()) + 60):
        def dated(headers: dict[str, str], content: bytes, url: str, created: int = created
                  ):  # type: ignore[no-untyped-def]
            base = {"Idempotency-Key": headers["Idempotency-Key"],
                    "Content-Type": "application/json"}
            return base | sign_request("POST", url, base, content, key_id=a.key_id, key=a.key,
                                       created=created), content, url
        await refused(dated)

    # Unknown key.
    stranger = Operator("BANKA", "nobody-key", SigningKey.generate(), a.client)
    status, _ = await signed_call(central_bank, stranger, "POST", "/v1/issuance", body)
    assert status == 401
    assert await ledger_height(central_bank) == height_before
