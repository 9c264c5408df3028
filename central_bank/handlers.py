"""HTTP handlers of the central bank: parse, authorise, call the service, answer."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from cbdc import wire
from cbdc.problems import (
    json_response,
    not_found,
    query_value,
    read_empty,
    read_json,
    read_json_checked,
    transfer_id,
    validation,
)
from central_bank.auth import SIGNED_BY, authenticate_operator, check_admin
from central_bank.keys import (
    ADMIN_TOKEN,
    CENTRAL_BANK,
    LEDGER_KEY,
    OPENAPI,
    RATE_LIMITER,
    REQUEST_LOG,
)
from central_bank.operators import OperatorBank
from central_bank.request_log import Claim, rows_to_write
from settlement.audit import export_lines

OperatorHandler = Callable[[web.Request, OperatorBank], Awaitable[web.StreamResponse]]
ClaimingHandler = Callable[[web.Request, OperatorBank, Claim],
                          Awaitable[web.StreamResponse]]
MAX_WAIT_SECONDS = 30.0


def operator_call(handler: OperatorHandler) -> Callable[[web.Request],
                                                         Awaitable[web.StreamResponse]]:
    """Run `handler` for the bank that signed the request, once every check passed and
    the request's claim is durable."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        app = request.app
        bank, claim = await authenticate_operator(request, app[CENTRAL_BANK].registry,
                                                  app[REQUEST_LOG], app[RATE_LIMITER])
        await app[REQUEST_LOG].settle(claim)
        return await handler(request, bank)

    return wrapped


def writing_call(handler: ClaimingHandler) -> Callable[[web.Request],
                                                        Awaitable[web.StreamResponse]]:
    """Run `handler`, which writes (money moves, an acknowledged cursor), once every
    check passed: it writes the request's claim with its effect (the ledger with its
    transfers), so both are durable in one commit. A claim the handler did not write (it
    refused the request first, or its commit failed) is written before the answer goes
    out."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        app = request.app
        log = app[REQUEST_LOG]
        bank, claim = await authenticate_operator(request, app[CENTRAL_BANK].registry,
                                                  log, app[RATE_LIMITER])
        try:
            response = await handler(request, bank, claim)
        except BaseException:
            with contextlib.suppress(Exception):
                await log.settle(claim)  # or, failing that, forgotten: nothing was written
            raise
        await log.settle(claim)
        return response

    return wrapped


def admin_call(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
               ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        check_admin(request, request.app[ADMIN_TOKEN])
        return await handler(request)

    return wrapped


def path_id(request: web.Request) -> int:
    return transfer_id(request.match_info["id"])


def query_cursor(request: web.Request, name: str = "after") -> int | None:
    text = query_value(request, name)
    if text is None:
        return None
    if not wire.is_digits(text) or len(text) > 20:
        raise validation(name, "cursor", f"{name} must be a cursor this API returned")
    return int(text)


def query_number(request: web.Request, name: str, default: float, low: float, high: float,
                 *, integer: bool) -> float:
    text = query_value(request, name)
    if text is None:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise validation(name, "number", f"{name} must be a number") from None
    if not low <= value <= high:
        raise validation(name, "range", f"{name} must be between {low:g} and {high:g}")
    return value


# -------------------------------------------------------------------- operator
async def _swap(request: web.Request, bank: OperatorBank, claim: Claim,
                kind: str) -> web.StreamResponse:
    """Issuance or redemption: reserves and e-CNY swapped one to one."""
    body = await read_json(request, wire.IssueRequest)
    central = request.app[CENTRAL_BANK]
    swap = central.issue if kind == "issue" else central.redeem
    result = await swap(bank.code, transfer_id(body.id, "$.id"), body.amount, claim)
    return json_response(result, status=201)


@writing_call
async def issue(request: web.Request, bank: OperatorBank, claim: Claim) -> web.StreamResponse:
    return await _swap(request, bank, claim, "issue")


@writing_call
async def redeem(request: web.Request, bank: OperatorBank, claim: Claim
                 ) -> web.StreamResponse:
    return await _swap(request, bank, claim, "redeem")


@writing_call
async def transfer(request: web.Request, bank: OperatorBank, claim: Claim
                   ) -> web.StreamResponse:
    body = await read_json(request, wire.InterbankTransfer)
    result = await request.app[CENTRAL_BANK].transfer(bank.code, body, claim)
    return json_response(result, status=201)


@writing_call
async def transfer_batch(request: web.Request, bank: OperatorBank, claim: Claim
                         ) -> web.StreamResponse:
    body = await read_json_checked(request, wire.UncheckedTransferBatch,
                                   lambda batch: wire.batch_patterns_hold(batch.transfers),
                                   wire.TransferBatch)
    result = await request.app[CENTRAL_BANK].transfer_batch(bank.code, body.transfers, claim)
    return json_response(result)


@operator_call
async def get_transfer(request: web.Request, bank: OperatorBank) -> web.StreamResponse:
    view = await request.app[CENTRAL_BANK].transfer_view(bank.code, path_id(request))
    return json_response(view)


@operator_call
async def get_receipt(request: web.Request, bank: OperatorBank) -> web.StreamResponse:
    return json_response(await request.app[CENTRAL_BANK].receipt(bank.code, path_id(request)))


@operator_call
async def positions(request: web.Request, bank: OperatorBank) -> web.StreamResponse:
    return json_response(await request.app[CENTRAL_BANK].positions(bank.code))


@operator_call
async def statement(request: web.Request, bank: OperatorBank) -> web.StreamResponse:
    after = query_cursor(request) or 0
    limit = int(query_number(request, "limit", 100, 1, 1000, integer=True))
    return json_response(await request.app[CENTRAL_BANK].statement(bank.code, after, limit))


_ACKNOWLEDGE = (
    "INSERT INTO event_cursors (operator_code, acknowledged) VALUES ($1, $2) "
    "ON CONFLICT (operator_code) DO UPDATE SET acknowledged = "
    "greatest(event_cursors.acknowledged, EXCLUDED.acknowledged), updated_at = now()")


@writing_call
async def events(request: web.Request, bank: OperatorBank, claim: Claim
                 ) -> web.StreamResponse:
    """Credits after `after` (or after the cursor last acknowledged); asking for what
    comes after a cursor acknowledges it, durably, in one statement with the request's
    claim (a bank polls the feed back to back: one commit a poll, not two)."""
    central = request.app[CENTRAL_BANK]
    after = query_cursor(request)
    wait = query_number(request, "wait", 0.0, 0.0, MAX_WAIT_SECONDS, integer=False)
    pool = central.ledger.store.pool
    if after is None:
        after = await pool.fetchval(
            "SELECT acknowledged FROM event_cursors WHERE operator_code = $1", bank.code) or 0
    else:
        rows = rows_to_write([claim])
        if rows is None:
            await pool.execute(_ACKNOWLEDGE, bank.code, after)
        else:
            await pool.execute(f"WITH {rows.ctes(2)} {_ACKNOWLEDGE}", bank.code, after,
                               *rows.arguments)
            claim.written = True
    return json_response(await central.events(bank.code, after, wait))


@operator_call
async def confirm_key(request: web.Request, bank: OperatorBank) -> web.StreamResponse:
    """Signed with the pending key itself: proves the bank holds it, then activates it
    and retires the key it replaces."""
    await read_empty(request)
    registry = request.app[CENTRAL_BANK].registry
    return json_response((await registry.confirm_key(request[SIGNED_BY])).to_wire())


# ----------------------------------------------------------------------- admin
@admin_call
async def register_operator(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, wire.RegisterOperator)
    bank = await request.app[CENTRAL_BANK].register(body.code, body.name, body.key_id,
                                                     body.public_key_pem)
    return json_response(bank.to_wire(), status=201)


@admin_call
async def list_operators(request: web.Request) -> web.StreamResponse:
    return json_response([b.to_wire() for b in request.app[CENTRAL_BANK].registry.all()])


@admin_call
async def suspend(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    registry = request.app[CENTRAL_BANK].registry
    bank = await registry.set_status(request.match_info["code"], "suspended")
    return json_response(bank.to_wire())


@admin_call
async def reactivate(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    registry = request.app[CENTRAL_BANK].registry
    bank = await registry.set_status(request.match_info["code"], "active")
    return json_response(bank.to_wire())


@admin_call
async def add_key(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, wire.AddKey)
    registry = request.app[CENTRAL_BANK].registry
    bank = await registry.add_key(request.match_info["code"], body.key_id, body.public_key_pem)
    return json_response(bank.to_wire(), status=201)


@admin_call
async def fund_reserves(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, wire.FundReserves)
    result = await request.app[CENTRAL_BANK].fund_reserves(
        request.match_info["code"], transfer_id(body.id, "$.id"), body.amount)
    return json_response(result, status=201)


@admin_call
async def supply(request: web.Request) -> web.StreamResponse:
    return json_response(await request.app[CENTRAL_BANK].supply())


@admin_call
async def block(request: web.Request) -> web.StreamResponse:
    text = request.match_info["height"]
    if not wire.is_digits(text) or len(text) > 18:
        raise validation("height", "integer", "height must be a positive integer")
    stored = await request.app[CENTRAL_BANK].ledger.store.block(int(text))
    if stored is None:
        raise not_found(f"no block at height {text}")
    return json_response({
        "header": stored.header.to_json(),
        "hash": stored.hash.hex(),
        "signature": stored.signature.hex(),
        "entries": [entry.hex() for entry in stored.entries],
    })


@admin_call
async def chain(request: web.Request) -> web.StreamResponse:
    ledger = request.app[CENTRAL_BANK].ledger
    blocks = [b async for b in ledger.store.blocks()]
    lines = export_lines(ledger.ledger, request.app[LEDGER_KEY], blocks)
    return web.Response(body="".join(line + "\n" for line in lines).encode(),
                        content_type="application/x-ndjson")


# ---------------------------------------------------------------------- public
async def health(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok",
                          "ledger_height": request.app[CENTRAL_BANK].ledger.tip.height})


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.Response(body=msgspec.json.encode(request.app[OPENAPI]),
                        content_type="application/json")


async def ledger_key(request: web.Request) -> web.StreamResponse:
    return json_response({"public_key_pem": request.app[LEDGER_KEY].to_pem().decode(),
                          "ledger": request.app[CENTRAL_BANK].ledger.ledger})
