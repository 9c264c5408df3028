"""The central bank's URL map (the OpenAPI document describes the same routes)."""

from __future__ import annotations

from aiohttp import web

from cbdc.http_metrics import metrics_handler
from central_bank import handlers as h


def add_routes(app: web.Application) -> None:
    app.router.add_routes([
        # Operator banks, signed requests.
        web.post("/v1/issuance", h.issue),
        web.post("/v1/redemption", h.redeem),
        web.post("/v1/transfers", h.transfer),
        web.post("/v1/transfers/batch", h.transfer_batch),
        # "/v1/transfers/batch" is not a transfer's path, so a wrong method there is told
        # it may only POST (any other id is read, and a malformed one named in a 422).
        web.get("/v1/transfers/{id:(?!batch$)[^/]+}", h.get_transfer),
        web.get("/v1/transfers/{id}/receipt", h.get_receipt),
        web.get("/v1/positions", h.positions),
        web.get("/v1/statement", h.statement),
        web.get("/v1/events", h.events),
        web.post("/v1/keys/confirm", h.confirm_key),
        # The central bank's administrator, bearer token.
        web.post("/v1/admin/operators", h.register_operator),
        web.get("/v1/admin/operators", h.list_operators),
        web.post("/v1/admin/operators/{code}/suspend", h.suspend),
        web.post("/v1/admin/operators/{code}/reactivate", h.reactivate),
        web.post("/v1/admin/operators/{code}/keys", h.add_key),
        web.post("/v1/admin/operators/{code}/reserves", h.fund_reserves),
        web.get("/v1/admin/supply", h.supply),
        web.get("/v1/admin/blocks/{height}", h.block),
        web.get("/v1/admin/chain", h.chain),
        # Anyone.
        web.get("/health", h.health),
        web.get("/metrics", metrics_handler),
        web.get("/openapi.json", h.openapi),
        web.get("/v1/ledger-key", h.ledger_key),
    ])
