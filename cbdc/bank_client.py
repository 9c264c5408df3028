"""The client an operator bank uses to call the central bank.

    async with CentralBankClient("http://127.0.0.1:8700", key_id="banka-1", key=key) as cb:
        await cb.issue(new_id(), 100_000)                  # swap 1,000.00 CNY of reserves
        result = await cb.transfer(new_id(), "BANKB", 2_500, "w:alice", "w:bob")

Every request is signed (`cbdc.httpsig`) over its method, path, query, body digest and
`Idempotency-Key`. The client retries connection failures and 5xx answers with backoff,
sending the same body under the same idempotency key with a fresh signature each time,
so a retried call is applied at most once by the server. Errors:

    CbdcError                       (cbdc.errors)
    ├── CentralBankError            the central bank answered 4xx/5xx (.status, .problem)
    └── CentralBankUnreachable      no answer after every attempt (.url)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import aiohttp
import msgspec

from cbdc.errors import CbdcError
from cbdc.httpsig import signed_headers
from cbdc.signing import SigningKey
from cbdc.wire import InterbankTransfer, IssueRequest, id_to_text, is_digits

__all__ = ["CentralBankClient", "CentralBankError", "CentralBankUnreachable", "IdLike"]

IdLike = int | str | uuid.UUID  # a 128-bit id as an int, or in UUID form
MAX_BACKOFF = 5.0  # seconds between two attempts at most (also caps Retry-After)


class CentralBankError(CbdcError):
    """The central bank answered with an error status; `problem` is its RFC 9457 body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem: dict[str, Any] = dict(problem)
        title = self.problem.get("title") or f"HTTP {status}"
        detail = self.problem.get("detail")
        super().__init__(f"{title}: {detail}" if detail else str(title))

    @property
    def type(self) -> str | None:
        value = self.problem.get("type")
        return value if isinstance(value, str) else None

    @property
    def code(self) -> str | None:
        """The ledger result code of a rejected operation (e.g. ``exceeds_credits``)."""
        value = self.problem.get("code")
        return value if isinstance(value, str) else None

    @property
    def field(self) -> str | None:
        value = self.problem.get("field")
        return value if isinstance(value, str) else None


class CentralBankUnreachable(CbdcError):
    """No answer from the central bank (connection refused, reset, timed out)."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


def _id_text(value: IdLike) -> str:
    """An id in the UUID form the wire uses; ValueError for anything else."""
    if isinstance(value, uuid.UUID):
        value = value.int
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"an id is an int or a UUID string, not {type(value).__name__}")
    number = value if isinstance(value, int) else uuid.UUID(value).int
    if not 0 < number < 1 << 128:
        raise ValueError("an id must be from 1 to 2**128 - 1")
    return id_to_text(number)


def _with_text_id(item: Mapping[str, Any] | InterbankTransfer) -> Any:
    if isinstance(item, InterbankTransfer):
        return item
    return {**item, "id": _id_text(item["id"])} if "id" in item else dict(item)


class CentralBankClient:
    """Signed, retrying calls from one operator bank to the central bank.

    `session` may be shared (the caller closes it); without one the client opens its
    own and closes it on `close()` / leaving `async with`. `retries` is how many times
    a call is tried again after a connection failure or a 5xx answer, waiting
    `backoff`, then twice that, ... (at most MAX_BACKOFF seconds, or the server's
    Retry-After when longer).
    """

    def __init__(
        self,
        base_url: str,
        *,
        key_id: str,
        key: SigningKey,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
    ) -> None:
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("retries and backoff must not be negative, timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self._key = key
        self._session = session
        self._owns_session = session is None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    async def __aenter__(self) -> Self:
        self._open_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    # ------------------------------------------------------------------ transport
    async def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        idempotency_key: str | None = None,
        retries: int | None = None,
        extra_time: float = 0.0,
    ) -> tuple[int, Any]:
        """Send one signed call; return its status and decoded JSON (None when empty).

        `path` is encoded and may carry a query. `body` is encoded with msgspec (no body
        when None). The idempotency key (random unless given) and the body stay the
        same on every retry; `retries` overrides the client's count for this call and
        `extra_time` lengthens each attempt's timeout (a long poll). Raises
        CentralBankError for 4xx/5xx answers and CentralBankUnreachable when no attempt
        got an answer.
        """
        method = method.upper()
        url = self.base_url + path
        content = b"" if body is None else msgspec.json.encode(body)
        idempotency_key = idempotency_key or str(uuid.uuid4())
        attempts = 1 + (self.retries if retries is None else retries)
        client_timeout = aiohttp.ClientTimeout(total=self.timeout + max(extra_time, 0.0))
        session = self._open_session()
        for attempt in range(attempts):
            last = attempt == attempts - 1
            # A fresh nonce and creation time every attempt: the server refuses a nonce
            # it has seen, and the idempotency key is what ties the attempts together.
            signed = signed_headers(
                method, url, content, key_id=self.key_id, key=self._key,
                idempotency_key=idempotency_key,
            )
            try:
                async with session.request(
                    method, url, data=content or None, headers=signed, timeout=client_timeout
                ) as response:
                    status = response.status
                    raw = await response.read()
                    content_type = response.content_type
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                if last:
                    raise CentralBankUnreachable(
                        f"no answer from the central bank at {url} after {attempts}"
                        f" attempt{'s' if attempts > 1 else ''}: {exc or type(exc).__name__}",
                        url=url,
                    ) from exc
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if status >= 500 and not last:
                await asyncio.sleep(self._delay(attempt, retry_after))
                continue
            data = _decode(raw, content_type)
            if status >= 400:
                raise CentralBankError(status, _problem(status, data, raw))
            return status, data
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.backoff * 2.0**attempt, MAX_BACKOFF)
        if retry_after is not None and is_digits(retry_after):
            delay = max(delay, min(float(retry_after), MAX_BACKOFF))
        return delay

    async def _call(
        self,
        method: str,
        path: str,
        body: object | None = None,
        query: Mapping[str, object] | None = None,
        *,
        extra_time: float = 0.0,
    ) -> Any:
        present = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if present:
            path += "?" + urlencode(present)
        _, data = await self.request(method, path, body, extra_time=extra_time)
        return data

    # --------------------------------------------------------------------- routes
    async def issue(self, id: IdLike, amount: int) -> Any:
        """Swap `amount` fen of reserves for e-CNY (POST /v1/issuance)."""
        return await self._call("POST", "/v1/issuance", IssueRequest(_id_text(id), amount))

    async def redeem(self, id: IdLike, amount: int) -> Any:
        """Swap `amount` fen of e-CNY back for reserves (POST /v1/redemption)."""
        return await self._call("POST", "/v1/redemption", IssueRequest(_id_text(id), amount))

    async def transfer(
        self,
        id: IdLike,
        payee_bank: str,
        amount: int,
        payer_ref: str,
        payee_ref: str,
        memo_ref: str | None = None,
    ) -> Any:
        """Move `amount` fen of e-CNY to `payee_bank` (POST /v1/transfers)."""
        transfer = InterbankTransfer(
            id=_id_text(id),
            payee_bank=payee_bank,
            amount=amount,
            payer_ref=payer_ref,
            payee_ref=payee_ref,
            memo_ref=memo_ref,
        )
        return await self._call("POST", "/v1/transfers", transfer)

    async def transfer_batch(self, items: Sequence[Mapping[str, Any] | InterbankTransfer]) -> Any:
        """Many transfers in one call, a result per item (POST /v1/transfers/batch)."""
        transfers = [_with_text_id(item) for item in items]
        return await self._call("POST", "/v1/transfers/batch", {"transfers": transfers})

    async def get_transfer(self, id: IdLike) -> Any:
        return await self._call("GET", f"/v1/transfers/{_id_text(id)}")

    async def receipt(self, id: IdLike) -> Any:
        """The transfer's block and Merkle proof (GET /v1/transfers/{id}/receipt)."""
        return await self._call("GET", f"/v1/transfers/{_id_text(id)}/receipt")

    async def ledger_key(self) -> Any:
        """The key that signs the central bank's blocks (GET /v1/ledger-key, public)."""
        return await self._call("GET", "/v1/ledger-key")

    async def positions(self) -> Any:
        return await self._call("GET", "/v1/positions")

    async def statement(self, after: str | None = None, limit: int = 100) -> Any:
        return await self._call("GET", "/v1/statement", query={"after": after, "limit": limit})

    async def events(self, after: str | None = None, wait: float = 0.0) -> Any:
        """Transfers after cursor `after`; waits up to `wait` seconds for a first one."""
        return await self._call(
            "GET",
            "/v1/events",
            query={"after": after, "wait": wait},
            extra_time=wait,
        )

    async def confirm_key(self) -> Any:
        """Activate the pending key this client signs with (POST /v1/keys/confirm)."""
        return await self._call("POST", "/v1/keys/confirm")


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            pass
    return raw.decode("utf-8", errors="replace")


def _problem(status: int, data: Any, raw: bytes) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    # Not a problem document (a proxy's HTML page, say): keep a readable excerpt.
    excerpt = raw[:200].decode("utf-8", errors="replace").strip()
    return {"status": status, "title": f"HTTP {status}", "detail": excerpt or None}
