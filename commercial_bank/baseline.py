"""The baseline `cbdc bench retail` measures same-bank payments against: a bank's payment
endpoint as one would first write it by hand, with a row per wallet and one statement
per payment.

It keeps everything but the ledger the same, so the ratio says what the ledger engine
buys: aiohttp as the server, the same signed payment orders (`cbdc.payment_orders`:
canonical JSON, the wallet key's signature, low S, expiry), the same problem answers.
Behind that, a payment is one PostgreSQL statement that locks both wallets' rows (in
number order, so two payments never deadlock), checks the payer's single, daily and
yearly limits and balance and the payee's balance cap, records the payment (payer and
sequence are its key: a retry finds it and moves nothing) and updates both rows, the
payer's outflow of the day and year with it.

It serves `POST /v1/payments` between wallets of its own bank and `GET /health`, and
leaves out what would only slow it down: payments to other banks, wallet status, live
events, history, metrics. Its wallets are given when it starts (`BaselineWallet`), each
with its public key, opening balance and class limits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from cbdc.payment_orders import OrderRejected, SignedOrder, verify
from cbdc.problems import json_response, problem_middleware, rejected, validation
from cbdc.signing import VerifyingKey
from commercial_bank.wallet_classes import ClassLimits

log = logging.getLogger(__name__)

POOL_SIZE = 32  # connections: the upper end of the 8-32 a hand-written service would use

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_wallets (
    number        bigint PRIMARY KEY,
    public_key    bytea NOT NULL,
    balance       bigint NOT NULL CHECK (balance >= 0),
    cap           bigint NOT NULL,
    single_limit  bigint NOT NULL,
    daily_limit   bigint NOT NULL,
    yearly_limit  bigint NOT NULL,
    day           int NOT NULL DEFAULT 0,      -- the day (ordinal) day_out counts
    day_out       bigint NOT NULL DEFAULT 0,
    year          int NOT NULL DEFAULT 0,
    year_out      bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS baseline_payments (
    payer       bigint NOT NULL,
    sequence    bigint NOT NULL,
    payee       bigint NOT NULL,
    amount      bigint NOT NULL,
    memo        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payer, sequence)
);
"""
_OPEN = """
INSERT INTO baseline_wallets (number, public_key, balance, cap, single_limit, daily_limit,
                              yearly_limit)
SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::bigint[])
ON CONFLICT (number) DO NOTHING
"""
# $1 payer, $2 payee, $3 amount, $4 sequence, $5 today (ordinal), $6 this year, $7 memo.
# Answers 'ok' or the rule the payment breaks; money moves only on a first 'ok'.
_PAY = """
WITH locked AS (
    SELECT number, balance, cap, single_limit, daily_limit, yearly_limit,
           CASE WHEN day = $5::int THEN day_out ELSE 0 END AS day_out,
           CASE WHEN year = $6::int THEN year_out ELSE 0 END AS year_out
    FROM baseline_wallets WHERE number = $1::bigint OR number = $2::bigint
    ORDER BY number FOR UPDATE
), verdict AS (
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM baseline_payments WHERE payer = $1 AND sequence = $4)
            THEN 'ok'  -- a retry: answered as the first time, the insert below moves nothing
        WHEN payee.number IS NULL THEN 'payee_unknown'
        WHEN $3::bigint > payer.single_limit THEN 'exceeds_single_limit'
        WHEN payer.day_out + $3 > payer.daily_limit THEN 'exceeds_daily_limit'
        WHEN payer.year_out + $3 > payer.yearly_limit THEN 'exceeds_yearly_limit'
        WHEN payer.balance < $3 THEN 'exceeds_credits'
        WHEN payee.balance + $3 > payee.cap THEN 'exceeds_balance_cap'
        ELSE 'ok' END AS code
    FROM locked payer
    LEFT JOIN locked payee ON payee.number = $2 AND $2 <> $1
    WHERE payer.number = $1
), inserted AS (
    INSERT INTO baseline_payments (payer, sequence, payee, amount, memo)
    SELECT $1, $4::bigint, $2, $3, $7::text FROM verdict WHERE code = 'ok'
    ON CONFLICT (payer, sequence) DO NOTHING
    RETURNING 1
), moved AS (
    UPDATE baseline_wallets w SET
        balance = w.balance + CASE WHEN w.number = $1 THEN -$3 ELSE $3 END,
        day_out = CASE WHEN w.number = $1 THEN l.day_out + $3 ELSE w.day_out END,
        day = CASE WHEN w.number = $1 THEN $5 ELSE w.day END,
        year_out = CASE WHEN w.number = $1 THEN l.year_out + $3 ELSE w.year_out END,
        year = CASE WHEN w.number = $1 THEN $6 ELSE w.year END
    FROM locked l
    WHERE l.number = w.number AND EXISTS (SELECT 1 FROM inserted)
)
SELECT code FROM verdict
"""
# Wallets whose balance is not their opening balance moved by exactly the payments
# recorded to and from them, and how many payments are recorded.
_BOOKS = """
SELECT (SELECT count(*) FROM baseline_wallets w WHERE w.balance <> $1
            - (SELECT coalesce(sum(amount), 0) FROM baseline_payments WHERE payer = w.number)
            + (SELECT coalesce(sum(amount), 0) FROM baseline_payments WHERE payee = w.number)),
       (SELECT count(*) FROM baseline_payments)
"""
_REASONS = {
    "payee_unknown": "no other wallet with the payee's number is at this bank",
    "exceeds_single_limit": "the amount is over the payer's single-payment limit",
    "exceeds_daily_limit": "the payment would take the payer over its daily limit",
    "exceeds_yearly_limit": "the payment would take the payer over its yearly limit",
    "exceeds_credits": "the payer's balance does not cover the amount",
    "exceeds_balance_cap": "the payee's wallet would go over its balance cap",
}


@dataclass(frozen=True)
class BaselineWallet:
    number: int
    public_key: VerifyingKey
    balance: int  # fen, at the start
    limits: ClassLimits


POOL = web.AppKey("pool", asyncpg.Pool)
KEYS = web.AppKey("keys", dict)  # wallet number -> verifying key


def today(zone: ZoneInfo) -> tuple[int, int]:
    """(day ordinal, year) now in `zone`: the day and year limits count in."""
    date = datetime.now(zone).date()
    return date.toordinal(), date.year


async def open_wallets(conn: asyncpg.Connection, wallets: Sequence[BaselineWallet]) -> None:
    await conn.execute(SCHEMA)
    await conn.execute(
        _OPEN, [w.number for w in wallets], [w.public_key.to_der() for w in wallets],
        [w.balance for w in wallets], [w.limits.balance_cap for w in wallets],
        [w.limits.single for w in wallets], [w.limits.daily for w in wallets],
        [w.limits.yearly for w in wallets])


async def books(conn: asyncpg.Connection, opening: int) -> tuple[int, int]:
    """(wallets whose balance is not `opening` moved by exactly the payments recorded,
    payments recorded): (0, n) when the books hold."""
    broken, payments = await conn.fetchrow(_BOOKS, opening)
    return int(broken), int(payments)


def create_app(database_url: str, code: str, wallets: Sequence[BaselineWallet],
               timezone: str) -> web.Application:
    zone = ZoneInfo(timezone)
    app = web.Application(middlewares=[problem_middleware(log)])
    app[KEYS] = {w.number: w.public_key for w in wallets}

    async def pay(request: web.Request) -> web.StreamResponse:
        try:
            signed = SignedOrder.from_json(await request.read())
            order = signed.order
            if order.payer.bank != code:
                raise validation("order.payer", "this-bank",
                                 f"{order.payer} is a wallet of {order.payer.bank}")
            key = request.app[KEYS].get(order.payer.number)
            if key is None:
                raise validation("order.payer", "known-wallet", f"no wallet {order.payer} here")
            verify(signed, key, now=int(time.time()))
        except OrderRejected as exc:
            raise validation(f"order.{exc.field}" if exc.field else "order", exc.reason,
                             str(exc)) from None
        if order.payee.bank != code:
            raise rejected("other_bank", f"this baseline pays only wallets of {code}",
                           field="order.payee")
        day, year = today(zone)
        verdict = await request.app[POOL].fetchval(
            _PAY, order.payer.number, order.payee.number, order.amount, order.sequence,
            day, year, order.memo)
        if verdict != "ok":
            raise rejected(verdict, _REASONS[verdict], field="order.amount")
        return json_response({"status": "settled", "amount": order.amount,
                              "payer": str(order.payer), "payee": str(order.payee)},
                             status=201)

    async def health(request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok", "bank": code})

    async def database(app: web.Application) -> AsyncIterator[None]:
        async with asyncpg.create_pool(database_url, min_size=POOL_SIZE,
                                       max_size=POOL_SIZE) as pool:
            async with pool.acquire() as conn:
                await open_wallets(conn, wallets)
            app[POOL] = pool
            yield

    app.cleanup_ctx.append(database)
    app.add_routes([web.post("/v1/payments", pay), web.get("/health", health)])
    return app
