"""A fault-injecting HTTP proxy: put it between a commercial bank and the central bank.

Every request is forwarded to the upstream as it came (method, path, query, headers and
body, so signed requests stay valid); the upstream's answer is then, by a seeded draw,
delivered, delivered late, or lost: the proxy closes the connection without a word after
the upstream has already done the work. That is the "committed, but the reply never
arrived" case a retrying client must survive.

    async with FaultProxy(upstream, rng, drop=0.1, delay=0.1) as proxy:
        ... point the bank at proxy.url ...
    proxy.stats  # forwarded, dropped, delayed (Counter)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn, Self

import aiohttp
from aiohttp import web

from cbdc.processes import unused_port

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
              "upgrade", "te", "trailer", "proxy-connection"}


class FaultProxy:
    def __init__(self, upstream: str, rng: random.Random, *, drop: float = 0.0,
                 delay: float = 0.0, max_delay: float = 0.5,
                 applies: Callable[[web.Request], bool] = lambda request: True) -> None:
        self.upstream = upstream.rstrip("/")
        self.rng = rng
        self.drop, self.delay, self.max_delay = drop, delay, max_delay
        self.applies = applies
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stats: Counter[str] = Counter()
        self.dropped_paths: Counter[str] = Counter()
        self.lost: list[tuple[int, Any]] = []  # (status, JSON body) of each dropped answer
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            async with self._session.request(
                    request.method, self.upstream + request.path_qs, headers=headers,
                    data=body or None, timeout=aiohttp.ClientTimeout(total=120)) as upstream:
                payload = await upstream.read()
                status = upstream.status
                reply_headers = {k: v for k, v in upstream.headers.items()
                                 if k.lower() not in HOP_BY_HOP}
        except (aiohttp.ClientError, TimeoutError):
            # The upstream is down: so is the route through us.
            self.stats["upstream down"] += 1
            self._hang_up(request)
        self.stats["forwarded"] += 1
        if self.applies(request):
            draw = self.rng.random()
            if draw < self.drop:
                # The upstream acted; its answer is lost on the way back.
                self.stats["dropped"] += 1
                self.dropped_paths[f"{request.method} {'/'.join(request.path.split('/')[:3])}"] += 1
                with contextlib.suppress(ValueError):
                    self.lost.append((status, json.loads(payload) if payload else None))
                self._hang_up(request)
            if draw < self.drop + self.delay:
                self.stats["delayed"] += 1
                await asyncio.sleep(self.rng.uniform(0.05, self.max_delay))
        return web.Response(status=status, body=payload, headers=reply_headers)

    @staticmethod
    def _hang_up(request: web.Request) -> NoReturn:
        """Close the caller's connection without an answer."""
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
