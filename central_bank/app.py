"""The central bank's aiohttp application: `create_app(settings, database_url)`.

`cleanup_ctx` owns everything with a lifetime: the settlement engine (its pool and the
ledger's writer), the operator registry, the request log and its pruner.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from cbdc.heap import freeze_after_startup
from cbdc.http_metrics import METRICS, Metrics, metrics_middleware
from cbdc.keyfiles import load_or_create_key
from cbdc.problems import problem_middleware
from cbdc.settings import Settings
from central_bank import accounts as chart
from central_bank.auth import TokenBucket
from central_bank.keys import (
    ADMIN_TOKEN,
    CENTRAL_BANK,
    LEDGER_KEY,
    OPENAPI,
    RATE_LIMITER,
    REQUEST_LOG,
)
from central_bank.openapi import build_openapi
from central_bank.operators import OperatorRegistry
from central_bank.request_log import RequestLog, rows_to_write
from central_bank.routes import add_routes
from central_bank.service import CentralBank
from settlement.engine import Engine

log = logging.getLogger("central_bank")

MAX_BODY_BYTES = 4 * 1024 * 1024  # a batch of 8,000 transfers is about 2 MiB of JSON


def ledger_key_path(settings: Settings) -> Path:
    return settings.data_dir / "keys" / "central-bank-ledger.pem"


def admin_token(settings: Settings) -> str:
    """The configured token, or one generated once into the data folder (owner-only)."""
    if settings.admin_token:
        return settings.admin_token
    path = settings.data_dir / "central-bank-admin-token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def create_app(settings: Settings, database_url: str) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES,
                          middlewares=[metrics_middleware, problem_middleware(log)])
    app[ADMIN_TOKEN] = admin_token(settings)
    app[RATE_LIMITER] = TokenBucket(settings.operator_rate)
    app[OPENAPI] = build_openapi()
    add_routes(app)

    async def ledger_context(app: web.Application) -> AsyncIterator[None]:
        key = load_or_create_key(ledger_key_path(settings))
        engine = await Engine.open(database_url, key=key, timezone=settings.timezone,
                                   max_events=settings.batch_max_events,
                                   max_wait=settings.batch_max_wait_ms / 1000)
        try:
            # The ledger writes a money-moving request's claim with its transfers.
            writer = await engine.ledger(chart.LEDGER, attachments=rows_to_write)
            registry = OperatorRegistry(engine.pool)
            await registry.load()
            central = CentralBank(writer, registry)
            await central.open_books()
            request_log = RequestLog(engine.pool)
            await request_log.start()
            app[CENTRAL_BANK] = central
            app[REQUEST_LOG] = request_log
            app[LEDGER_KEY] = key.public
            app[METRICS] = Metrics(writer)
            try:
                yield
            finally:
                await request_log.close()
        finally:
            await engine.close()

    async def end_long_polls(app: web.Application) -> None:
        if CENTRAL_BANK in app:
            app[CENTRAL_BANK].closing.set()

    app.cleanup_ctx.append(ledger_context)
    app.on_startup.append(freeze_after_startup)  # after the contexts: aiohttp runs them first
    app.on_shutdown.append(end_long_polls)
    return app


async def serve(settings: Settings, database_url: str, *, host: str | None = None,
                port: int | None = None) -> web.AppRunner:
    """Start the central bank listening; the caller keeps the runner and cleans it up."""
    runner = web.AppRunner(create_app(settings, database_url), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or settings.central_bank_host,
                       port or settings.central_bank_port)
    await site.start()
    return runner
