"""HTTP handlers of a commercial bank's wallet API: parse, authorise, call, answer."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from cbdc.payment_orders import OrderRejected, SignedOrder
from cbdc.problems import (
    ProblemError,
    json_response,
    query_value,
    read_json,
    transfer_id,
    unauthorized,
    validation,
)
from cbdc.wire import Fen, TransferId, is_digits
from commercial_bank.keys import ADMIN_TOKEN, BANK, SESSIONS
from commercial_bank.sessions import LoginRefused, SessionStoreUnavailable, require_session
from commercial_bank.wallets import Wallet, parse_public_key

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OpenWallet(msgspec.Struct, forbid_unknown_fields=True):
    public_key_pem: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    phone: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class ChallengeRequest(msgspec.Struct, forbid_unknown_fields=True):
    address: Annotated[str, msgspec.Meta(max_length=64)]


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    address: Annotated[str, msgspec.Meta(max_length=64)]
    challenge: Annotated[str, msgspec.Meta(max_length=256)]
    signature: Annotated[str, msgspec.Meta(max_length=256)]


class ClassChange(msgspec.Struct, forbid_unknown_fields=True):
    wallet_class: Annotated[int, msgspec.Meta(ge=1, le=4)] = msgspec.field(name="class")
    name: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    resident_id: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    bank_card: bool = False
    in_person: bool = False


class MoneyMove(msgspec.Struct, forbid_unknown_fields=True):
    id: TransferId
    amount: Fen


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["active", "frozen", "lost"]


MAX_RECEIVABLE_CHECKS = 1000


class ReceivableCheck(msgspec.Struct, forbid_unknown_fields=True):
    address: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    amount: Fen


class ReceivableChecks(msgspec.Struct, forbid_unknown_fields=True):
    checks: Annotated[list[ReceivableCheck],
                      msgspec.Meta(min_length=1, max_length=MAX_RECEIVABLE_CHECKS)]


# ------------------------------------------------------------------- helpers
async def session_wallet(request: web.Request) -> Wallet:
    """The wallet named in the path, which the session must belong to."""
    bank = request.app[BANK]
    address = bank.parse_own(request.match_info["address"])
    try:
        owner = await require_session(request, request.app[SESSIONS])
    except SessionStoreUnavailable:
        raise ProblemError(503, "https://cbdc.example/problems/sessions-unavailable",
                           "Service Unavailable",
                           "logins are unavailable for a moment; payments still work") from None
    if owner != str(address):
        raise unauthorized("this session belongs to another wallet; log in with this one")
    return await bank.wallets.require(address.number)


def check_admin(request: web.Request) -> None:
    token = request.app[ADMIN_TOKEN]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise unauthorized("teller and admin calls need 'Authorization: Bearer <admin token>'")


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = query_value(request, name)
    if text is None:
        return default
    if not is_digits(text) or not low <= int(text) <= high:
        raise validation(name, "range", f"{name} must be a whole number from {low} to {high}")
    return int(text)


# ------------------------------------------------------------------- wallets
async def open_wallet(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, OpenWallet)
    bank = request.app[BANK]
    wallet = await bank.open_wallet(parse_public_key(body.public_key_pem), body.phone)
    return json_response(await bank.summary(wallet), status=201)


async def challenge(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, ChallengeRequest)
    address = request.app[BANK].parse_own(body.address)
    try:
        issued = await request.app[SESSIONS].challenge(str(address))
    except SessionStoreUnavailable:
        raise ProblemError(503, "https://cbdc.example/problems/sessions-unavailable",
                           "Service Unavailable",
                           "logins are unavailable for a moment; payments still work") from None
    return json_response({"challenge": issued.challenge, "expires": issued.expires})


async def login(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, LoginRequest)
    bank = request.app[BANK]
    address = bank.parse_own(body.address)
    wallet = await bank.wallets.require(address.number)
    try:
        session = await request.app[SESSIONS].login(str(address), body.challenge,
                                                    body.signature, wallet.public_key)
    except LoginRefused as exc:
        raise unauthorized(str(exc)) from None
    except SessionStoreUnavailable:
        raise ProblemError(503, "https://cbdc.example/problems/sessions-unavailable",
                           "Service Unavailable",
                           "logins are unavailable for a moment; payments still work") from None
    return json_response({"token": session.token, "expires": session.expires})


async def wallet_summary(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    return json_response(await request.app[BANK].summary(wallet))


async def change_class(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    body = await read_json(request, ClassChange)
    bank = request.app[BANK]
    updated = await bank.change_class(wallet, body.wallet_class, name=body.name,
                                      resident_id=body.resident_id, bank_card=body.bank_card)
    return json_response(await bank.summary(updated))


async def change_status(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    body = await read_json(request, StatusChange)
    bank = request.app[BANK]
    updated = await bank.set_status(wallet, body.status)
    if body.status == "lost":
        await _end_sessions(request, bank.address(wallet.number))
    return json_response(await bank.summary(updated))


async def close_wallet(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    bank = request.app[BANK]
    closed = await bank.close(wallet)
    await _end_sessions(request, bank.address(wallet.number))
    return json_response(await bank.summary(closed))


async def _end_sessions(request: web.Request, address: str) -> None:
    """End a wallet's sessions; if Redis is away they expire on their own soon."""
    try:
        await request.app[SESSIONS].end_all(address)
    except SessionStoreUnavailable:
        log.warning("sessions of %s not ended (Redis unavailable); they will expire", address)


async def link_deposit(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    bank = request.app[BANK]
    return json_response(await bank.summary(await bank.link_deposit(wallet)))


async def top_up(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    body = await read_json(request, MoneyMove)
    bank = request.app[BANK]
    await bank.top_up(wallet, transfer_id(body.id, "$.id"), body.amount)
    return json_response(await bank.summary(wallet))


async def redeem(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    body = await read_json(request, MoneyMove)
    bank = request.app[BANK]
    await bank.redeem(wallet, transfer_id(body.id, "$.id"), body.amount)
    return json_response(await bank.summary(wallet))


async def history(request: web.Request) -> web.StreamResponse:
    wallet = await session_wallet(request)
    direction = query_value(request, "direction")
    if direction is None:
        direction = "both"
    if direction not in ("both", "in", "out"):
        raise validation("direction", "enum", "direction must be both, in or out")
    after_text = query_value(request, "after")
    if after_text is not None and (not is_digits(after_text) or int(after_text) >= 1 << 63):
        raise validation("after", "cursor", "after must be a cursor this API returned")
    page = await request.app[BANK].history(
        wallet, after=int(after_text or 0), limit=query_int(request, "limit", 50, 1, 500),
        direction=direction, since=_query_time(request, "since"),
        until=_query_time(request, "until"))
    return json_response(page)


def _query_time(request: web.Request, name: str) -> int | None:
    text = query_value(request, name)
    if text is None:
        return None
    if not is_digits(text) or int(text) > 9_000_000_000:
        raise validation(name, "unix-seconds", f"{name} must be a time in unix seconds")
    return int(text) * 1_000_000_000


# ------------------------------------------------------------------ payments
async def pay(request: web.Request) -> web.StreamResponse:
    """A signed payment order; no session needed, the signature is the authority."""
    body = await request.read()
    try:
        signed = SignedOrder.from_json(body)
    except OrderRejected as exc:
        raise validation(f"order.{exc.field}" if exc.field else "order", exc.reason,
                         str(exc)) from None
    bank = request.app[BANK]
    result = await bank.pay(signed, bank.now_seconds())
    return json_response(result, status=201)


# --------------------------------------------------------------------- teller
async def teller_class(request: web.Request) -> web.StreamResponse:
    check_admin(request)
    bank = request.app[BANK]
    wallet = await bank.wallets.require(bank.parse_own(request.match_info["address"]).number)
    body = await read_json(request, ClassChange)
    updated = await bank.change_class(wallet, body.wallet_class, name=body.name,
                                      resident_id=body.resident_id, bank_card=body.bank_card,
                                      in_person=body.in_person, by_teller=True)
    return json_response(await bank.summary(updated))


async def cash_in(request: web.Request) -> web.StreamResponse:
    check_admin(request)
    text = request.match_info["number"]
    if not is_digits(text):
        raise validation("number", "integer", "a deposit account number is digits only")
    body = await read_json(request, MoneyMove)
    await request.app[BANK].cash_in(int(text), transfer_id(body.id, "$.id"), body.amount)
    return json_response({"id": body.id, "status": "settled"}, status=201)


async def receivable(request: web.Request) -> web.StreamResponse:
    """Can this wallet receive `amount` now? Asked by payer banks before they pay."""
    from cbdc.addresses import AddressError, parse_address

    try:
        address = parse_address(request.match_info["address"])
    except AddressError as exc:
        raise validation("address", "address", str(exc)) from None
    amount = query_int(request, "amount", 1, 1, (1 << 63) - 1)
    reason = await request.app[BANK].receivable(address, amount)
    return json_response({"receivable": reason is None, "reason": reason})


async def receivable_batch(request: web.Request) -> web.StreamResponse:
    """The same question for many wallets at once, one answer each, in order: asked by a
    payer's bank with many payments on their way."""
    from cbdc.addresses import AddressError, parse_address

    body = await read_json(request, ReceivableChecks)
    checks = []
    for index, check in enumerate(body.checks):
        try:
            checks.append((parse_address(check.address), check.amount))
        except AddressError as exc:
            raise validation(f"$.checks[{index}].address", "address", str(exc)) from None
    reasons = await request.app[BANK].receivable_many(checks)
    return json_response({"results": [{"receivable": reason is None, "reason": reason}
                                      for reason in reasons]})


async def health(request: web.Request) -> web.StreamResponse:
    bank = request.app[BANK]
    return json_response({"status": "ok", "bank": bank.code,
                          "ledger_height": bank.ledger.tip.height})

