"""A commercial bank's aiohttp application: `create_app(config)`.

One process per operator bank, each with its own database, Redis prefix and operator
key. `cleanup_ctx` owns the settlement engine, the Redis client and the central bank
client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
import redis.asyncio
from aiohttp import web

from cbdc.bank_client import CentralBankClient
from cbdc.heap import freeze_after_startup
from cbdc.http_metrics import METRICS, Metrics, metrics_middleware
from cbdc.problems import problem_middleware
from cbdc.signing import SigningKey
from commercial_bank import accounts as chart
from commercial_bank.interbank import Interbank
from commercial_bank.keys import ADMIN_TOKEN, BANK, SESSIONS
from commercial_bank.live import LIVE, LiveEvents, Notifier, close_streams
from commercial_bank.openapi import OPENAPI, build_openapi
from commercial_bank.payment_requests import PAYMENT_REQUESTS, PaymentRequests
from commercial_bank.routes import add_routes
from commercial_bank.service import Bank, FloatPolicy
from commercial_bank.sessions import Sessions
from commercial_bank.wallet_classes import LimitPreset
from commercial_bank.wallets import Wallets
from settlement.engine import Engine

log = logging.getLogger("commercial_bank")


@dataclass(frozen=True)
class BankConfig:
    code: str
    database_url: str
    redis_url: str
    central_bank_url: str
    operator_key_id: str
    operator_key: SigningKey
    ledger_key: SigningKey
    admin_token: str
    preset: LimitPreset
    float_policy: FloatPolicy = field(default_factory=FloatPolicy)
    timezone: str = "Asia/Shanghai"
    batch_max_events: int = 8190  # the ledger writer's batch bounds (CBDC_BATCH_*)
    batch_max_wait_ms: float = 0.0
    peers: Mapping[str, str] = field(default_factory=dict)  # other banks' wallet APIs
    clock: Callable[[], int] = time.time_ns  # ns since the epoch; tests move it by hand
    redis_prefix: str = "cbdc:"  # keys and channels are <redis_prefix><code>:...


def create_app(config: BankConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024,
                          middlewares=[metrics_middleware, problem_middleware(log)])
    app[ADMIN_TOKEN] = config.admin_token
    app[OPENAPI] = build_openapi(config.code)
    add_routes(app)
    app.on_shutdown.append(close_streams)  # else cleanup waits for open event streams

    async def context(app: web.Application) -> AsyncIterator[None]:
        engine = await Engine.open(config.database_url, key=config.ledger_key,
                                   timezone=config.timezone, clock=config.clock,
                                   max_events=config.batch_max_events,
                                   max_wait=config.batch_max_wait_ms / 1000)
        cache = redis.asyncio.Redis.from_url(config.redis_url, socket_timeout=2,
                                             socket_connect_timeout=2)
        central = CentralBankClient(config.central_bank_url, key_id=config.operator_key_id,
                                    key=config.operator_key)
        try:
            writer = await engine.ledger(chart.LEDGER)
            bank = Bank(config.code, writer, Wallets(engine.pool), central, config.preset,
                        config.float_policy, config.timezone, clock=config.clock)
            await bank.open_books()
            peer_session = aiohttp.ClientSession()
            bank.interbank = Interbank(config.code, writer, central, config.peers,
                                       peer_session)
            app[BANK] = bank
            app[METRICS] = Metrics(writer)
            app[METRICS].registry.register(bank.interbank.stages.histogram)
            keys = f"{config.redis_prefix}{config.code}:"
            app[SESSIONS] = Sessions(cache, prefix=keys, bank=config.code)
            # Payment events: request matching, then live delivery, off the payment path.
            live = app[LIVE] = LiveEvents(cache, prefix=keys)
            requests = app[PAYMENT_REQUESTS] = PaymentRequests(
                cache, prefix=keys, bank=bank)
            notifier = Notifier(requests.on_payment, batch_hooks=[live.publish_many])
            bank.notify = notifier
            live.start()
            notifier.start()
            bank.interbank.start(bank)
            try:
                yield
            finally:
                await bank.interbank.close()
                await notifier.close()
                await live.close()
                await peer_session.close()
        finally:
            await central.close()
            await cache.aclose()
            await engine.close()

    app.cleanup_ctx.append(context)
    app.on_startup.append(freeze_after_startup)  # after the contexts: aiohttp runs them first
    return app
