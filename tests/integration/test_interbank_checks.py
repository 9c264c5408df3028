"""A payer bank's checks of payees at another bank (`Interbank.payee_problem`) against a
stand-in for that bank over real HTTP: checks asked together go in one
POST /v1/receivable, and when the other bank cannot answer that (an older bank without
the route, an error) each check is asked alone, with the answer a lone check gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cbdc.addresses import WalletAddress
from commercial_bank.interbank import Interbank

FULL = 7  # the wallet number the stand-in says cannot receive


class PayeeBank:
    """Answers receivable checks: wallet FULL cannot receive, any other can; every
    request is noted, and each batch is held until the test lets it go."""

    def __init__(self, *, batches: bool = True) -> None:
        self.batches = batches
        self.asked: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    @staticmethod
    def answer(number: int) -> dict[str, Any]:
        if number == FULL:
            return {"receivable": False, "reason": "the payee's wallet would go over its cap"}
        return {"receivable": True, "reason": None}

    async def one(self, request: web.Request) -> web.Response:
        self.asked.append("GET")
        await self.gate.wait()
        number = int(request.match_info["address"].split("-")[1])
        return web.json_response(self.answer(number))

    async def many(self, request: web.Request) -> web.Response:
        self.asked.append("POST")
        await self.gate.wait()
        if not self.batches:
            raise web.HTTPNotFound()
        body = await request.json()
        return web.json_response({"results": [
            self.answer(int(check["address"].split("-")[1])) for check in body["checks"]]})


@pytest.fixture
async def peer() -> AsyncIterator[tuple[PayeeBank, TestServer]]:
    bank = PayeeBank()
    app = web.Application()
    app.router.add_get("/v1/receivable/{address}", bank.one)
    app.router.add_post("/v1/receivable", bank.many)
    async with TestServer(app) as server:
        yield bank, server


async def checks_at_once(interbank: Interbank, bank: PayeeBank,
                         numbers: list[int]) -> list[str | None]:
    """The first check takes one of the two slots, the second the other, while the
    stand-in holds its answers; the rest queue and go together."""
    bank.gate.clear()
    tasks = [asyncio.create_task(interbank.payee_problem(WalletAddress("BANKB", n), 100))
             for n in numbers]
    await asyncio.sleep(0.05)
    bank.gate.set()
    return list(await asyncio.gather(*tasks))


@pytest.mark.parametrize("batches", [True, False])
async def test_checks_asked_together_get_the_answers_asked_alone_get(
        peer: tuple[PayeeBank, TestServer], batches: bool) -> None:
    bank, server = peer
    bank.batches = batches
    async with aiohttp.ClientSession() as session:
        interbank = Interbank("BANKA", None, None,  # type: ignore[arg-type]
                              {"BANKB": str(server.make_url("")).rstrip("/")}, session)
        numbers = [1, 2, FULL, 3, FULL, 4]
        answers = await checks_at_once(interbank, bank, numbers)
        alone = [await interbank.payee_problem(WalletAddress("BANKB", n), 100)
                 for n in numbers]
        await interbank.close()
    assert answers == alone
    assert [a is None for a in answers] == [n != FULL for n in numbers]
    first_two, rest = bank.asked[:2], bank.asked[2:]
    assert first_two == ["GET", "GET"]  # a lone check goes at once, as it always did
    assert rest[0] == "POST"  # the four that queued, together
    if batches:
        assert rest.count("POST") == 1
    else:  # refused as a whole: each of the four is asked alone
        assert rest[1:5] == ["GET"] * 4
