"""What `cbdc up` shows of the retail tier: two testers' wallets at two banks, funded from
their deposit accounts, one paying the other across banks with a signed order."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import aiohttp

from cbdc.addresses import parse_address
from cbdc.keyfiles import load_or_create_key
from cbdc.login import login_message
from cbdc.money import format_fen
from cbdc.payment_orders import PaymentOrder
from cbdc.settings import Settings
from cbdc.signing import SigningKey
from commercial_bank.run import bank_url, teller_token

DEMO_WALLETS = (("alice", "BANKA", "13800138001"), ("bob", "BANKB", "13800138002"))
CREDIT_WAIT_S = 30.0  # how long the demo waits to show bob's credit arrive


class DemoWallet:
    def __init__(self, session: aiohttp.ClientSession, url: str, code: str, key: SigningKey,
                 address: str | None) -> None:
        self.session, self.url, self.code, self.key = session, url, code, key
        self.address = address or ""
        self.token = ""

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        kwargs: dict[str, Any] = {"json": body} if raw is None else {"data": raw}
        async with self.session.request(method, self.url + path, headers=headers,
                                        **kwargs) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {data.get('detail', data)}")
            return data

    async def open(self, phone: str) -> None:
        if not self.address:
            reply = await self.call("POST", "/v1/wallets", {
                "public_key_pem": self.key.public.to_pem().decode(), "phone": phone})
            self.address = reply["address"]
        reply = await self.call("POST", "/v1/sessions/challenge", {"address": self.address})
        signature = self.key.sign(login_message(self.code, self.address, reply["challenge"]))
        reply = await self.call("POST", "/v1/sessions", {
            "address": self.address, "challenge": reply["challenge"],
            "signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode()})
        self.token = reply["token"]


async def run_demo(settings: Settings, ports: dict[str, int]) -> None:
    book = settings.data_dir / "demo-wallets.json"
    known: dict[str, str] = json.loads(book.read_text()) if book.exists() else {}
    async with aiohttp.ClientSession() as session:
        wallets = {}
        for name, code, phone in DEMO_WALLETS:
            key = load_or_create_key(settings.data_dir / "keys" / f"wallet-{name}.pem")
            wallet = DemoWallet(session, bank_url(settings, ports[code]), code, key,
                                known.get(name))
            await wallet.open(phone)
            known[name] = wallet.address
            wallets[name] = wallet
        book.write_text(json.dumps(known, indent=2) + "\n")
        alice, bob = wallets["alice"], wallets["bob"]
        summary = await alice.call("POST", f"/v1/wallets/{alice.address}/deposit-account")
        deposit = summary["deposit_account"]["number"]
        await alice.call("POST", f"/v1/teller/deposits/{deposit}/cash-in",
                         {"id": str(uuid.uuid4()), "amount": 50_000},
                         token=teller_token(settings, "BANKA"))
        await alice.call("POST", f"/v1/wallets/{alice.address}/top-up",
                         {"id": str(uuid.uuid4()), "amount": 50_000})
        print(f"retail: alice {alice.address} tops up {format_fen(50_000)} from her deposit")
        order = PaymentOrder(payer=parse_address(alice.address),
                             payee=parse_address(bob.address), amount=8_888,
                             sequence=int(time.time() * 1000), expires=int(time.time()) + 300,
                             memo="demo: tea")
        reply = await alice.call("POST", "/v1/payments",
                                 raw=order.sign(alice.key).to_json().encode())
        print(f"  alice pays bob {bob.address} at BANKB {format_fen(8_888)}: {reply['status']}")
        # Bob's bank books the credit when the central bank's feed reports it: moments
        # on an idle machine, longer on a busy one; the demo shows the arrival, not a race.
        deadline = time.monotonic() + CREDIT_WAIT_S
        while True:
            history = await bob.call("GET", f"/v1/wallets/{bob.address}/history?limit=500")
            if any(e["id"] == reply["id"] for e in history["entries"]):
                break
            if time.monotonic() > deadline:
                print(f"  bob's bank has not booked the payment after {CREDIT_WAIT_S:g} s; "
                      "it will when the central bank's feed reaches it")
                break
            await asyncio.sleep(0.05)
        # Read after the booking showed: read before it, the balance could miss it.
        bob_summary = await bob.call("GET", f"/v1/wallets/{bob.address}")
        alice_summary = await alice.call("GET", f"/v1/wallets/{alice.address}")
        for name, data in (("alice", alice_summary), ("bob", bob_summary)):
            print(f"  {name}: class {data['class']}, balance {format_fen(data['balance'])}, "
                  f"today {format_fen(data['limits']['daily']['used'])} of "
                  f"{format_fen(data['limits']['daily']['limit'])}")
        print(f"  wallet keys: {settings.data_dir / 'keys'}/wallet-*.pem; "
              f"addresses in {book}")

