"""A commercial bank's URL map."""

from __future__ import annotations

from aiohttp import web

from cbdc.http_metrics import metrics_handler
from commercial_bank import handlers as h
from commercial_bank import live, payment_requests, receipts
from commercial_bank.openapi import openapi


def add_routes(app: web.Application) -> None:
    app.router.add_routes([
        web.post("/v1/wallets", h.open_wallet),
        web.post("/v1/sessions/challenge", h.challenge),
        web.post("/v1/sessions", h.login),
        web.get("/v1/wallets/{address}", h.wallet_summary),
        web.post("/v1/wallets/{address}/class", h.change_class),
        web.post("/v1/wallets/{address}/status", h.change_status),
        web.post("/v1/wallets/{address}/close", h.close_wallet),
        web.post("/v1/wallets/{address}/deposit-account", h.link_deposit),
        web.post("/v1/wallets/{address}/top-up", h.top_up),
        web.post("/v1/wallets/{address}/redeem", h.redeem),
        web.get("/v1/wallets/{address}/history", h.history),
        web.get("/v1/wallets/{address}/events", live.wallet_events),
        web.get("/v1/wallets/{address}/receipts/{id}", receipts.receipt),
        web.post("/v1/wallets/{address}/payment-requests", payment_requests.create_request),
        web.get("/v1/wallets/{address}/payment-requests/{request_id}",
                payment_requests.request_status),
        web.post("/v1/payments", h.pay),
        web.get("/v1/receivable/{address}", h.receivable),
        web.post("/v1/receivable", h.receivable_batch),
        web.post("/v1/teller/wallets/{address}/class", h.teller_class),
        web.post("/v1/teller/deposits/{number}/cash-in", h.cash_in),
        web.get("/v1/ledger-keys", receipts.ledger_keys),
        web.get("/health", h.health),
        web.get("/metrics", metrics_handler),
        web.get("/openapi.json", openapi),
    ])
