"""A running central bank for tests: the real aiohttp service on a real PostgreSQL, on a
loopback port, with operator banks whose keys the tests hold."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import unused_port

from cbdc.bank_client import CentralBankClient
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
