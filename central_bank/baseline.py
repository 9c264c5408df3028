"""The baseline `cbdc bench central-bank` measures the central bank against: the same API
as one would first write it by hand, with a row per bank and a transaction per request.

It keeps everything but the ledger the same, so the ratio says what the ledger engine
buys: aiohttp as the server, the same request bodies (decoded by `cbdc.wire` with
msgspec), the same RFC 9421 signature check (`cbdc.httpsig`), the same problem answers.
Behind that:

* a single transfer is one PostgreSQL transaction: claim the signature's nonce (a
  replay fails it), then one statement that locks both banks' position rows (in code
  order, so two transfers never deadlock), checks the payer's balance, inserts the
  transfer (its id is the primary key: a retry finds it and moves nothing) and updates
  both positions;
* a batch is one transaction that runs the same statement for its items in turn.

It serves only what the bench calls (`POST /v1/transfers`, `POST /v1/transfers/batch`,
`GET /v1/positions`, `GET /health`) and leaves out what would only slow it down:
idempotency-key bodies, blocks and receipts, the events feed, metrics and rate limits.
The operators and their active keys are read from the central bank's own tables in the
same database when it starts; each bank's position starts at `funding` fen.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web

from cbdc import wire
from cbdc.httpsig import SignatureRejected, verify_request
from cbdc.problems import (
    json_response,
    problem_middleware,
    read_json,
    read_json_checked,
    rejected,
    unauthorized,
)
from cbdc.signing import VerifyingKey
from central_bank.app import MAX_BODY_BYTES

log = logging.getLogger(__name__)

POOL_SIZE = 32  # connections: the upper end of the 8-32 a hand-written service would use

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_positions (
    bank  text PRIMARY KEY,
    ecny  bigint NOT NULL CHECK (ecny >= 0)
);
CREATE TABLE IF NOT EXISTS baseline_transfers (
    id         uuid PRIMARY KEY,
    payer      text NOT NULL,
    payee      text NOT NULL,
    amount     bigint NOT NULL,
    payer_ref  text NOT NULL,
    payee_ref  text NOT NULL,
    memo_ref   text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS baseline_nonces (
    key_id  text NOT NULL,
    nonce   text NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
"""
_KEYS = """
SELECT k.key_id, k.operator_code, k.public_key FROM operator_keys k
JOIN operators o ON o.code = k.operator_code
WHERE k.status = 'active' AND o.status = 'active'
"""
_CLAIM_NONCE = ("INSERT INTO baseline_nonces (key_id, nonce) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING 1")
# One transfer in one statement (one round trip): lock both positions, check, insert the
# transfer unless its id is there already, move the money only when it was inserted.
_SETTLE = """
WITH locked AS (
    SELECT bank, ecny FROM baseline_positions WHERE bank = $2 OR bank = $3
    ORDER BY bank FOR UPDATE
), covered AS (
    SELECT 1 FROM locked payer, locked payee
    WHERE payer.bank = $2 AND payee.bank = $3 AND $2 <> $3 AND (payer.ecny >= $4
          OR EXISTS (SELECT 1 FROM baseline_transfers WHERE id = $1))  -- a retry
), inserted AS (
    INSERT INTO baseline_transfers (id, payer, payee, amount, payer_ref, payee_ref, memo_ref)
    SELECT $1, $2, $3, $4, $5, $6, $7 FROM covered
    ON CONFLICT (id) DO NOTHING
    RETURNING amount
), moved AS (
    UPDATE baseline_positions SET ecny = ecny + CASE WHEN bank = $2 THEN -$4 ELSE $4 END
    WHERE (bank = $2 OR bank = $3) AND EXISTS (SELECT 1 FROM inserted)
)
SELECT EXISTS (SELECT 1 FROM locked WHERE bank = $3 AND bank <> $2) AS payee_known,
       EXISTS (SELECT 1 FROM covered) AS covered
"""

POOL = web.AppKey("pool", asyncpg.Pool)
KEYS = web.AppKey("keys", dict)  # key id -> (bank code, verifying key)


async def prepare(conn: asyncpg.Connection, funding: int) -> None:
    """Create the baseline's tables and give every operator bank a position."""
    await conn.execute(SCHEMA)
    await conn.execute("INSERT INTO baseline_positions (bank, ecny) SELECT code, $1 "
                       "FROM operators ON CONFLICT (bank) DO NOTHING", funding)


async def settle(conn: asyncpg.Connection, payer: str, item: wire.TransferItem
                 ) -> wire.TransferResult:
    """One transfer, inside the caller's transaction (a retry of one already made moves
    nothing and is answered as settled)."""
    payee_known, covered = await conn.fetchrow(
        _SETTLE, item.id, payer, item.payee_bank, item.amount, item.payer_ref,
        item.payee_ref, item.memo_ref)
    if not payee_known:
        return wire.TransferResult(id=item.id, status="rejected", code="payee_bank_unknown",
                                   detail=f"no other operator bank with code {item.payee_bank}")
    if not covered:
        return wire.TransferResult(id=item.id, status="rejected", code="exceeds_credits",
                                   detail=f"{payer}'s e-CNY position does not cover the amount")
    return wire.TransferResult(id=item.id, status="settled")


async def signed_by(request: web.Request) -> tuple[str, str, str]:
    """(bank, key id, nonce) of a request whose signature checks out; else a 401."""
    keys: dict[str, tuple[str, VerifyingKey]] = request.app[KEYS]

    def resolve(key_id: str) -> VerifyingKey | None:
        entry = keys.get(key_id)
        return entry[1] if entry else None

    try:
        verified = verify_request(request.method, str(request.url), request.headers,
                                  await request.read(), resolve_key=resolve)
    except SignatureRejected as exc:
        raise unauthorized(f"request signature refused: {exc.reason}") from None
    return keys[verified.key_id][0], verified.key_id, verified.nonce


async def claim_nonce(conn: asyncpg.Connection, key_id: str, nonce: str) -> None:
    if not await conn.fetchval(_CLAIM_NONCE, key_id, nonce):
        raise unauthorized("this signature's nonce was used before: the request is a replay")


async def transfer(request: web.Request) -> web.StreamResponse:
    bank, key_id, nonce = await signed_by(request)
    item = await read_json(request, wire.InterbankTransfer)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await claim_nonce(conn, key_id, nonce)
        result = await settle(conn, bank, item)
    if result.status != "settled":
        raise rejected(result.code or "rejected", result.detail or "", field="amount")
    return json_response(result, status=201)


async def transfer_batch(request: web.Request) -> web.StreamResponse:
    bank, key_id, nonce = await signed_by(request)
    body = await read_json_checked(request, wire.UncheckedTransferBatch,
                                   lambda batch: wire.batch_patterns_hold(batch.transfers),
                                   wire.TransferBatch)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await claim_nonce(conn, key_id, nonce)
        results = [await settle(conn, bank, item) for item in body.transfers]
    settled = sum(r.status == "settled" for r in results)
    return json_response(wire.BatchResult(results=results, settled=settled,
                                          rejected=len(results) - settled))


async def positions(request: web.Request) -> web.StreamResponse:
    bank, _, _ = await signed_by(request)
    ecny = await request.app[POOL].fetchval(
        "SELECT ecny FROM baseline_positions WHERE bank = $1", bank)
    return json_response({"bank": bank, "reserves": 0, "ecny": ecny or 0})


async def health(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


def create_app(database_url: str, funding: int) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES,
                          middlewares=[problem_middleware(log)])

    async def database(app: web.Application) -> Any:
        async with asyncpg.create_pool(database_url, min_size=POOL_SIZE,
                                       max_size=POOL_SIZE) as pool:
            async with pool.acquire() as conn:
                await prepare(conn, funding)
                app[KEYS] = {r["key_id"]: (r["operator_code"],
                                           VerifyingKey.from_der(bytes(r["public_key"])))
                             for r in await conn.fetch(_KEYS)}
            app[POOL] = pool
            yield

    app.cleanup_ctx.append(database)
    app.add_routes([
        web.post("/v1/transfers", transfer),
        web.post("/v1/transfers/batch", transfer_batch),
        web.get("/v1/positions", positions),
        web.get("/health", health),
    ])
    return app
