"""A small async client for a commercial bank's wallet API, and the signed-in wallet.

`BankClient` speaks HTTP (aiohttp) and turns every problem answer (RFC 9457) into a
`BankError` whose message is the bank's `detail`: one sentence a person understands
("over the daily limit of ¥1,000.00: ¥200.00 left, resets at ...").
`WalletSession` is an unlocked profile logged in to its bank: it builds and signs
payment orders here, with the next sequence number, stored before the order is sent.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from cbdc.addresses import parse_address
from cbdc.errors import CbdcError
from cbdc.login import login_message
from cbdc.payment_orders import PaymentOrder
from cbdc.signing import SigningKey
from cbdc.sse import read_events
from wallet_tui.keystore import Keystore, UnlockedProfile, read_private_pem

ORDER_LIFETIME_S = 300
TIMEOUT = aiohttp.ClientTimeout(total=30)
EVENTS_SILENCE_S = 40  # the bank sends a keepalive every 15 s: this much silence is a cut


class BankError(CbdcError):
    """The bank refused a request or could not be reached; `str()` is for a person."""

    def __init__(self, message: str, *, status: int = 0, code: str | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


class BankUnreachable(BankError):
    """No answer from the bank (connection refused, reset or timed out)."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def as_sentence(text: str) -> str:
    """An error message as a sentence: a capital first, a full stop last."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


class BankClient:
    """HTTP calls to one bank; `token` is the session once logged in."""

    def __init__(self, base_url: str, history_page: int = 500) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = ""
        self.history_page = history_page  # entries per history request (the API's most)
        self._session: aiohttp.ClientSession | None = None
        self._history_pages: dict[tuple[str, str], tuple[list[dict[str, Any]], str]] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None, *,
                      raw: bytes | None = None, params: dict[str, str] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        kwargs: dict[str, Any] = {"json": body} if raw is None else {
            "data": raw, "headers": {**headers, "Content-Type": "application/json"}}
        kwargs.setdefault("headers", headers)
        try:
            async with self._session.request(method, self.base_url + path, params=params,
                                             **kwargs) as response:
                data = await response.json(content_type=None) if response.content_length != 0 \
                    else None
                if response.status >= 400:
                    raise self._problem(response.status, data)
                return data
        except (aiohttp.ClientConnectionError, TimeoutError):
            raise BankUnreachable(f"Cannot reach the bank at {self.base_url}; check the "
                                  "connection. The wallet keeps trying and reloads once "
                                  "the bank is back.") from None
        except (aiohttp.ContentTypeError, ValueError):
            raise BankError(f"The bank at {self.base_url} answered with something that is "
                            "not JSON.") from None

    @staticmethod
    def _problem(status: int, data: Any) -> BankError:
        if not isinstance(data, dict):
            return BankError(f"The bank refused the request (HTTP {status}).", status=status)
        detail = data.get("detail") or data.get("title") or f"HTTP {status}"
        field = data.get("field")
        return BankError(as_sentence(str(detail)), status=status, code=data.get("code"),
                         field=field if isinstance(field, str) else None)

    # ------------------------------------------------------------- wallet API
    async def open_wallet(self, key: SigningKey, phone: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/v1/wallets", {
            "public_key_pem": key.public.to_pem().decode("ascii"), "phone": phone})
        return result

    async def login(self, address: str, key: SigningKey) -> None:
        bank = parse_address(address).bank
        issued = await self.request("POST", "/v1/sessions/challenge", {"address": address})
        challenge = str(issued["challenge"])
        signature = key.sign(login_message(bank, address, challenge))
        session = await self.request("POST", "/v1/sessions", {
            "address": address, "challenge": challenge, "signature": _b64url(signature)})
        self.token = str(session["token"])

    async def summary(self, address: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/wallets/{address}")
        return result

    async def history(self, address: str, limit: int = 50, direction: str = "both"
                      ) -> list[dict[str, Any]]:
        """The newest `limit` entries, oldest first. The API pages from the oldest, so
        the full pages already read are kept (with the cursor after them) and the next
        call reads on from there: a full page never changes, unless it holds a payment
        still pending, so the pages are kept only up to the first such one."""
        key = (address, direction)
        kept, after = self._history_pages.get(key, ([], ""))
        entries, settled = list(kept), True
        while True:
            params = {"limit": str(self.history_page), "direction": direction}
            if after:
                params["after"] = after
            page = await self.request("GET", f"/v1/wallets/{address}/history", params=params)
            entries.extend(page["entries"])
            after = page.get("next_after") or ""
            if not after:
                return entries[-limit:]
            settled = settled and all(e.get("status") != "pending" for e in page["entries"])
            if settled:
                self._history_pages[key] = (list(entries), after)

    async def receipts(self, address: str, entry_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/wallets/{address}/receipts/{entry_id}")
        return result

    async def ledger_keys(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/ledger-keys")
        return result

    async def payment_request(self, address: str, amount: int | None, memo: str
                              ) -> dict[str, Any]:
        body: dict[str, Any] = {"memo": memo}
        if amount is not None:
            body["amount"] = amount
        result: dict[str, Any] = await self.request(
            "POST", f"/v1/wallets/{address}/payment-requests", body)
        return result

    async def payment_request_status(self, address: str, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/wallets/{address}/payment-requests/{request_id}")
        return result

    async def change_class(self, address: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"/v1/wallets/{address}/class",
                                                    body)
        return result

    async def events(self, address: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The wallet's live events, `(event name, data)`, until the stream ends.
        Raises BankUnreachable if the stream cannot be opened or breaks."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        try:
            async with self._session.get(
                    f"{self.base_url}/v1/wallets/{address}/events", headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=5,
                                                  sock_read=EVENTS_SILENCE_S)) as response:
                if response.status >= 400:
                    raise self._problem(response.status,
                                        await response.json(content_type=None))
                async for name, data in read_events(response.content):
                    try:
                        event = json.loads(data)
                    except ValueError:
                        continue  # not JSON: not an event of this API
                    if isinstance(event, dict):
                        yield name, event
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
            raise BankUnreachable(f"Lost the connection to the bank at {self.base_url}; "
                                  "retrying.") from None
        raise BankUnreachable("The bank ended the live event stream; reconnecting.")

    async def pay(self, signed_json: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/v1/payments",
                                                    raw=signed_json.encode("utf-8"))
        return result

    async def link_deposit(self, address: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", f"/v1/wallets/{address}/deposit-account")
        return result

    async def move(self, address: str, what: str, amount: int) -> dict[str, Any]:
        """`what` is "top-up" (deposit account to wallet) or "redeem" (the reverse)."""
        result: dict[str, Any] = await self.request(
            "POST", f"/v1/wallets/{address}/{what}", {"id": str(uuid.uuid4()),
                                                      "amount": amount})
        return result


class WalletSession:
    """An unlocked profile and its bank: what the screens call."""

    def __init__(self, keystore: Keystore, profile: UnlockedProfile, client: BankClient
                 ) -> None:
        self.keystore = keystore
        self.profile = profile
        self.client = client

    @property
    def address(self) -> str:
        return self.profile.address

    @classmethod
    async def onboard(cls, keystore: Keystore, client: BankClient, *, name: str,
                      passphrase: str, phone: str) -> WalletSession:
        """Open a class-4 wallet (phone number only) at the bank and save its profile."""
        keystore.path(name)  # refuse a bad name before the bank opens anything
        if keystore.exists(name):
            raise BankError(f"Profile {name!r} already exists; unlock it instead.")
        key = SigningKey.generate()
        opened = await client.open_wallet(key, phone)
        profile = keystore.create(name, passphrase, bank_url=client.base_url,
                                  address=str(opened["address"]), key=key)
        await client.login(profile.address, key)
        return cls(keystore, profile, client)

    @classmethod
    async def import_key(cls, keystore: Keystore, client: BankClient, *, name: str,
                         passphrase: str, pem: bytes, address: str) -> WalletSession:
        """A profile for an existing key, stored only after the bank let it log in as
        `address` (so a key that does not hold that wallet is never stored)."""
        keystore.path(name)
        if keystore.exists(name):
            raise BankError(f"Profile {name!r} already exists; choose another name.")
        key = read_private_pem(pem)
        await client.login(address, key)
        profile = keystore.create(name, passphrase, bank_url=client.base_url,
                                  address=address, key=key)
        return cls(keystore, profile, client)

    @classmethod
    async def unlock(cls, keystore: Keystore, client: BankClient, *, name: str,
                     passphrase: str) -> WalletSession:
        profile = keystore.unlock(name, passphrase)
        await client.login(profile.address, profile.key)
        return cls(keystore, profile, client)

    async def summary(self) -> dict[str, Any]:
        return await self.client.summary(self.address)

    async def history(self, limit: int = 50, direction: str = "both"
                      ) -> list[dict[str, Any]]:
        return await self.client.history(self.address, limit, direction)

    async def relogin(self) -> None:
        await self.client.login(self.address, self.profile.key)

    def sign_order(self, payee: str, amount: int, memo: str = "",
                   now: int | None = None) -> str:
        """A signed order with the next sequence number, which is stored first: a crash
        after sending can never lead to a second order under the same number."""
        sequence = self.profile.last_sequence + 1
        order = PaymentOrder(payer=parse_address(self.address), payee=parse_address(payee),
                             amount=amount, sequence=sequence,
                             expires=(now or int(time.time())) + ORDER_LIFETIME_S, memo=memo)
        self.profile.last_sequence = sequence
        self.keystore.update(self.profile)
        return order.sign(self.profile.key).to_json()

    async def pay(self, payee: str, amount: int, memo: str = "") -> dict[str, Any]:
        return await self.client.pay(self.sign_order(payee, amount, memo))

    async def ledger_keys(self) -> tuple[dict[str, Any], list[str]]:
        """The keys that verify receipts, as pinned in the profile: a key seen for the
        first time is pinned; a key the bank now passes on that differs from the pinned
        one is replaced by the pinned one (so receipts signed with it do not verify),
        with a warning."""
        keys = dict(await self.client.ledger_keys())
        pins = self.profile.ledger_keys
        warnings, changed = [], False
        for slot, name in (("bank_key_pem", str(keys.get("bank"))),
                           ("central_bank_key_pem", "central_bank")):
            offered = keys.get(slot)
            if not offered:
                continue
            pinned = pins.get(name)
            if pinned is None:
                pins[name], changed = str(offered), True
            elif pinned != offered:
                who = "the central bank" if name == "central_bank" else name
                warnings.append(f"The ledger key of {who} differs from the one this wallet "
                                "pinned; receipts are checked with the pinned key.")
                keys[slot] = pinned
        if changed:
            self.keystore.update(self.profile)
        return keys, warnings

    async def top_up(self, amount: int) -> dict[str, Any]:
        return await self.client.move(self.address, "top-up", amount)

    async def redeem(self, amount: int) -> dict[str, Any]:
        return await self.client.move(self.address, "redeem", amount)

    async def link_deposit(self) -> dict[str, Any]:
        return await self.client.link_deposit(self.address)
