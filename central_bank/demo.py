"""What `cbdc up` shows of the central bank: two operator banks, reserves funded by
RTGS, e-CNY issued one to one, an interbank transfer seen in the payee's event feed, a
receipt checked against the published ledger key, and the supply invariant."""

from __future__ import annotations

import uuid

import aiohttp

from cbdc.bank_client import CentralBankClient
from cbdc.keyfiles import load_or_create_key
from cbdc.money import format_fen
from cbdc.receipts import Receipt
from cbdc.settings import Settings
from cbdc.signing import VerifyingKey
from central_bank.app import admin_token

# Operators of their own, so the demo's issuance and transfers never touch the positions
# of the commercial banks `cbdc up` runs (whose ledgers mirror their positions).
DEMO_BANKS = ("CBDEMOA", "CBDEMOB")


def _id() -> str:
    return str(uuid.uuid4())


async def run_demo(url: str, settings: Settings) -> None:
    headers = {"Authorization": f"Bearer {admin_token(settings)}"}
    async with aiohttp.ClientSession(headers=headers) as admin:
        async with admin.get(url + "/v1/admin/operators") as response:
            known = {o["code"] for o in await response.json()}
        clients = {}
        for code in DEMO_BANKS:
            key = load_or_create_key(settings.data_dir / "keys" / f"operator-{code}.pem")
            key_id = f"{code.lower()}-demo"
            if code not in known:
                async with admin.post(url + "/v1/admin/operators", json={
                    "code": code, "name": f"Central bank demo {code[-1]}", "key_id": key_id,
                    "public_key_pem": key.public.to_pem().decode()}) as response:
                    response.raise_for_status()
            clients[code] = CentralBankClient(url, key_id=key_id, key=key)
        async with admin.post(url + "/v1/admin/operators/CBDEMOA/reserves",
                              json={"id": _id(), "amount": 100_000_000}) as response:
            response.raise_for_status()
        async with admin.get(url + "/v1/ledger-key") as response:
            ledger_key = VerifyingKey.from_pem((await response.json())["public_key_pem"].encode())
        a, b = clients["CBDEMOA"], clients["CBDEMOB"]
        try:
            print(f"central bank: RTGS funds CBDEMOA's reserves with {format_fen(100_000_000)}")
            await a.issue(_id(), 20_000_000)
            print(f"  CBDEMOA swaps {format_fen(20_000_000)} of reserves for e-CNY")
            cursor = (await b.events())["cursor"]
            transfer_id = _id()
            await a.transfer(transfer_id, "CBDEMOB", 1_234_500, "demo-wallet-a", "demo-wallet-b",
                             "demo")
            events = await b.events(after=cursor, wait=5)
            print(f"  CBDEMOA pays CBDEMOB {format_fen(1_234_500)}; CBDEMOB's feed shows "
                  f"{len(events['events'])} new credit(s)")
            receipt = Receipt.from_json((await b.receipt(transfer_id))["receipt"])
            print(f"  receipt: block {receipt.header.height}, "
                  f"{receipt.verify(ledger_key) or 'verified with the published ledger key'}")
            for code, client in clients.items():
                p = await client.positions()
                print(f"  {code}: reserves {format_fen(p['reserves'])}, "
                      f"e-CNY {format_fen(p['ecny'])}")
            async with admin.get(url + "/v1/admin/supply") as response:
                supply = await response.json()
            print(f"  e-CNY outstanding {format_fen(supply['ecny_outstanding'])} == "
                  f"positions {format_fen(supply['sum_of_positions'])} == reserves swapped "
                  f"{format_fen(supply['reserves_swapped_in_net'])}: "
                  f"{'balanced' if supply['balanced'] else 'NOT BALANCED'}")
        finally:
            for client in clients.values():
                await client.close()
