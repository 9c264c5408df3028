"""Merchant payment requests: a ``cbdc:`` URI and QR code to be paid, and whether it was.

    POST /v1/wallets/{address}/payment-requests      (session of the payee wallet)
        {"amount"?: fen (none: the payer chooses), "memo"?: at most 119 characters,
         "expires_in"?: seconds, 1 to 7 days, 900 by default}
     -> 201 {"uri": "cbdc:...", "qr": "<half-block text>", "request_id": "...",
             "expires": <unix seconds>}
    GET  /v1/wallets/{address}/payment-requests/{request_id}
     -> 200 {"request_id", "status": "open" | "paid" | "expired", "amount", "memo",
             "expires", "paid_by"?, "payment_id"?}

The payer's wallet reads the URI (`cbdc.payment_orders.parse_payment_uri`) and signs an
order whose memo starts with the request id, ``req:<id>`` (`request_memo`; the
merchant's memo follows after a space). A payment fills the request when it arrives in
the payee's wallet, settled, before the request expires, with that memo and, if the
request names an amount, that amount. The first payment that fills it is kept: a second
one is an ordinary payment (the bank never refuses a payment because of a request).

Requests live in Redis (design: "Where each store fits"), each a hash

    <prefix>payment-request:<id>   payee, amount ("" if the payer chooses), memo,
                                   expires (unix s), created (ns), paid (JSON, once paid)

kept `RETENTION_S` after it expires, so the merchant can still read how it ended (after
that, 404). While Redis is away both calls answer 503; payments go on regardless.
`on_payment` marks a request paid from `Bank.announce` (through the app's `Notifier`).
The ledger is the record, though: when a request still looks open or expired, the status
call also looks for a payment that filled it in the wallet's history since the request
was made, so a mark lost while Redis was away is found again.

`request_memo` and `request_id_in` are pure; the terminal wallet builds its memo with
the same rule, so they belong next to `PaymentRequest` in `cbdc.payment_orders`.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, ParamSpec, TypeVar

import msgspec
from aiohttp import web
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from cbdc.payment_orders import (
    MEMO_MAX,
    REQUEST_ID,
    REQUEST_TAG,
    PaymentRequest,
    PaymentUriError,
    memo_problem,
    qr_text,
    request_id_in,
    request_memo,
)
from cbdc.problems import (
    ProblemError,
    json_response,
    not_found,
    problem_type,
    read_json,
    validation,
)
from cbdc.wire import Fen
from commercial_bank.handlers import session_wallet
from commercial_bank.keys import BANK
from commercial_bank.service import Bank
from commercial_bank.wallets import Wallet

__all__ = [
    "PAYMENT_REQUESTS",
    "REQUEST_TAG",
    "NewPaymentRequest",
    "PaymentRequests",
    "create_request",
    "request_id_in",
    "request_memo",
    "request_status",
]

REQUEST_ID_BYTES: Final = 12  # 96 bits: 16 base64url characters
REQUEST_ID_LENGTH: Final = 16
# The longest merchant memo that still fits an order's memo after "req:<id> ".
MEMO_LIMIT: Final = MEMO_MAX - len(REQUEST_TAG) - REQUEST_ID_LENGTH - 1
DEFAULT_EXPIRES_IN: Final = 900  # 15 minutes
MAX_EXPIRES_IN: Final = 7 * 86_400
RETENTION_S: Final = 86_400  # a request stays readable this long after it expires
HISTORY_PAGE: Final = 200
HISTORY_PAGES: Final = 5  # how far back the status call looks in the ledger
RETRY_AFTER_S: Final = 5


# KEYS[1] the request; ARGV[1] the payment, JSON. Sets it once, only on a live request:
# 1 set, 0 already paid, -1 no such request (HSETNX alone would create one, without TTL).
_MARK_PAID = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call('HSETNX', KEYS[1], 'paid', ARGV[1])
"""


# ------------------------------------------------------------------- store
P = ParamSpec("P")
T = TypeVar("T")


def unavailable_problem() -> ProblemError:
    return ProblemError(
        503, problem_type("payment-requests-unavailable"), "Service Unavailable",
        "payment requests are unavailable for a moment; payments still work",
        headers={"Retry-After": str(RETRY_AFTER_S)})


def _store_errors(call: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Redis connection failures and timeouts become a 503 problem."""

    @functools.wraps(call)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await call(*args, **kwargs)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError):
            raise unavailable_problem() from None

    return wrapper


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class PaymentRequests:
    """The payment requests of one bank's wallets, in Redis under `prefix`."""

    def __init__(self, redis: Redis, *, prefix: str, bank: Bank,
                 retention: int = RETENTION_S) -> None:
        self._redis = redis
        self.prefix = prefix
        self.bank = bank
        self.retention = retention
        self._mark = redis.register_script(_MARK_PAID)

    def key(self, request_id: str) -> str:
        return f"{self.prefix}payment-request:{request_id}"

    @_store_errors
    async def create(self, payee: str, *, amount: int | None, memo: str,
                     expires_in: int) -> dict[str, Any]:
        request_id = secrets.token_urlsafe(REQUEST_ID_BYTES)
        expires = self.bank.now_seconds() + expires_in
        request = PaymentRequest(payee=self.bank.parse_own(payee), amount=amount, memo=memo,
                                 expires=expires, request_id=request_id)
        uri = request.to_uri()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(request_id), mapping={
                "payee": str(request.payee), "amount": "" if amount is None else amount,
                "memo": memo, "expires": expires, "created": self.bank.clock()})
            pipe.expire(self.key(request_id), expires_in + self.retention)
            await pipe.execute()
        return {"uri": uri, "qr": qr_text(uri), "request_id": request_id, "expires": expires}

    async def _load(self, request_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hgetall(self.key(request_id))
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return {
            "payee": fields.get("payee", ""),
            "amount": int(fields["amount"]) if fields.get("amount") else None,
            "memo": fields.get("memo", ""),
            "expires": int(fields.get("expires", 0)),
            "created": int(fields.get("created", 0)),
            "paid": json.loads(fields["paid"]) if "paid" in fields else None,
        }

    async def _mark_paid(self, request_id: str, payment: dict[str, Any]) -> bool:
        return bool(await self._mark(keys=[self.key(request_id)],
                                     args=[json.dumps(payment, separators=(",", ":"))]) == 1)

    @staticmethod
    def _fills(request: dict[str, Any], amount: object) -> bool:
        return request["amount"] is None or request["amount"] == amount

    @_store_errors
    async def status(self, wallet: Wallet, request_id: str) -> dict[str, Any] | None:
        """The request as its payee sees it, or None if `wallet` has no such request."""
        if not REQUEST_ID.fullmatch(request_id):
            return None
        request = await self._load(request_id)
        payee = self.bank.address(wallet.number)
        if request is None or request["payee"] != payee:
            return None
        if request["paid"] is None:
            found = await self._paid_in_ledger(wallet, request_id, request)
            if found is not None:
                await self._mark_paid(request_id, found)
                request = await self._load(request_id) or {**request, "paid": found}
        answer = {"request_id": request_id, "amount": request["amount"],
                  "memo": request["memo"], "expires": request["expires"]}
        if request["paid"] is not None:
            return {**answer, "status": "paid", "paid_by": request["paid"]["paid_by"],
                    "payment_id": request["paid"]["payment_id"]}
        expired = self.bank.now_seconds() >= request["expires"]
        return {**answer, "status": "expired" if expired else "open"}

    async def _paid_in_ledger(self, wallet: Wallet, request_id: str,
                              request: dict[str, Any]) -> dict[str, Any] | None:
        """The first payment into `wallet` that filled the request, from the ledger."""
        until = request["expires"] * 1_000_000_000 - 1
        after = 0
        for _ in range(HISTORY_PAGES):
            page = await self.bank.history(wallet, after=after, limit=HISTORY_PAGE,
                                           direction="in", since=request["created"],
                                           until=until)
            for entry in page["entries"]:
                if (entry.get("kind") == "payment" and entry.get("status") == "settled"
                        and request_id_in(entry.get("memo") or "") == request_id
                        and self._fills(request, entry["amount"])):
                    return {"paid_by": entry.get("counterparty"), "payment_id": entry["id"],
                            "amount": entry["amount"]}
            if page["next_after"] is None:
                return None
            after = int(page["next_after"])
        return None

    async def on_payment(self, address: str, event: dict[str, Any]) -> None:
        """`Bank.announce` hook: a settled payment into `address` fills the request its
        memo names, if the amount fits and the request is open."""
        if event.get("type") != "payment_in" or event.get("status") != "settled":
            return
        request_id = request_id_in(str(event.get("memo") or ""))
        if request_id is None:
            return
        request = await self._load(request_id)
        if (request is None or request["payee"] != address or request["paid"] is not None
                or not self._fills(request, event.get("amount"))
                or self.bank.now_seconds() >= request["expires"]):
            return
        await self._mark_paid(request_id, {"paid_by": event.get("payer"),
                                           "payment_id": event.get("id"),
                                           "amount": event.get("amount")})


PAYMENT_REQUESTS = web.AppKey("payment_requests", PaymentRequests)


# ------------------------------------------------------------------ handlers
class NewPaymentRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount: Fen | None = None
    memo: Annotated[str, msgspec.Meta(max_length=MEMO_LIMIT)] = ""
    expires_in: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXPIRES_IN)] = DEFAULT_EXPIRES_IN


async def create_request(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    body = await read_json(request, NewPaymentRequest)
    problem = memo_problem(body.memo)
    if problem is not None:
        raise validation("$.memo", "memo", problem)
    address = request.app[BANK].address(wallet.number)
    try:
        created = await request.app[PAYMENT_REQUESTS].create(
            address, amount=body.amount, memo=body.memo, expires_in=body.expires_in)
    except PaymentUriError as exc:
        raise validation(f"$.{exc.field or 'memo'}", "payment-uri", str(exc)) from None
    location = f"/v1/wallets/{address}/payment-requests/{created['request_id']}"
    return json_response(created, status=201, headers={"Location": location})


async def request_status(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    request_id = request.match_info["request_id"]
    status = await request.app[PAYMENT_REQUESTS].status(wallet, request_id)
    if status is None:
        raise not_found(f"this wallet has no payment request {request_id!r} (or it expired "
                        "more than a day ago)")
    return json_response(status)
