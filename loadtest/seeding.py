"""Seeding a running network for a load run: wallets at the commercial banks.

`seed_wallets` opens wallets (phone only), logs each in, has a teller upgrade it to class
1 (in person, name, resident ID, bank card) so the limits never cut a run short, links a
deposit account, has a teller pay cash in and tops the wallet up (`WALLET_FUNDING` fen
each). Operator banks at the central bank are seeded by `central_bank.bench.open_banks`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from stdnum.cn import ric

from cbdc.addresses import WalletAddress, parse_address
from cbdc.errors import CbdcError
from cbdc.login import login_message
from cbdc.signing import SigningKey

WALLET_FUNDING = 1_000_000  # fen topped up into each wallet (10,000 CNY)
WALLET_CLASS = 1  # class 1: 500,000 CNY cap, 100,000 CNY a day; nothing here comes near
SEED_CONCURRENCY = 16


@dataclass(slots=True)
class BenchWallet:
    code: str
    key: SigningKey
    address: WalletAddress | None = None
    token: str = ""
    sequence: int = 0

    @property
    def text(self) -> str:
        assert self.address is not None
        return str(self.address)


class BenchError(CbdcError):
    """A setup call failed: which call, and what the server said."""


async def call(session: aiohttp.ClientSession, method: str, url: str, *, body: Any = None,
               token: str | None = None, expect: int = 200, seconds: float = 30.0) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=seconds)) as response:
        data = await response.json(content_type=None)
        if response.status != expect:
            detail = data.get("detail") if isinstance(data, dict) else data
            raise BenchError(f"bench: {method} {url} answered {response.status}: {detail}")
        return data


def resident_id(index: int) -> str:
    """A valid, distinct resident ID number for tester `index` (Beijing Dongcheng, born
    some day from 1970 on)."""
    born = datetime.date(1970, 1, 1) + datetime.timedelta(days=index // 1000)
    body = f"110101{born:%Y%m%d}{index % 1000:03d}"
    return body + ric.calc_check_digit(body + "?")


async def seed_wallet(session: aiohttp.ClientSession, url: str, code: str, teller: str,
                      index: int) -> BenchWallet:
    """Open, log in, upgrade to class 1 at the teller, link a deposit, cash in, top up."""
    wallet = BenchWallet(code, SigningKey.generate())
    reply = await call(session, "POST", url + "/v1/wallets", expect=201, body={
        "public_key_pem": wallet.key.public.to_pem().decode(),
        "phone": f"139{index:08d}"})
    wallet.address = parse_address(reply["address"])
    address = wallet.text
    reply = await call(session, "POST", url + "/v1/sessions/challenge",
                       body={"address": address})
    signature = wallet.key.sign(login_message(code, address, reply["challenge"]))
    reply = await call(session, "POST", url + "/v1/sessions", body={
        "address": address, "challenge": reply["challenge"],
        "signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode()})
    wallet.token = reply["token"]
    await call(session, "POST", f"{url}/v1/teller/wallets/{address}/class", token=teller,
               body={"class": WALLET_CLASS, "name": f"Bench Tester {index}",
                     "resident_id": resident_id(index), "bank_card": True,
                     "in_person": True})
    reply = await call(session, "POST", f"{url}/v1/wallets/{address}/deposit-account",
                       token=wallet.token)
    deposit = reply["deposit_account"]["number"]
    await call(session, "POST", f"{url}/v1/teller/deposits/{deposit}/cash-in", token=teller,
               expect=201, body={"id": str(uuid.uuid4()), "amount": WALLET_FUNDING})
    await call(session, "POST", f"{url}/v1/wallets/{address}/top-up", token=wallet.token,
               body={"id": str(uuid.uuid4()), "amount": WALLET_FUNDING})
    return wallet


async def seed_wallets(session: aiohttp.ClientSession, urls: dict[str, str],
                       tellers: dict[str, str], count: int) -> dict[str, list[BenchWallet]]:
    limit = asyncio.Semaphore(SEED_CONCURRENCY)

    async def one(code: str, index: int) -> BenchWallet:
        async with limit:
            return await seed_wallet(session, urls[code], code, tellers[code], index)

    per_bank = await asyncio.gather(*(
        asyncio.gather(*(one(code, bank_index * count + i) for i in range(count)))
        for bank_index, code in enumerate(urls)))
    return {code: list(made) for code, made in zip(urls, per_bank, strict=True)}


