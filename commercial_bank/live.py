"""Live payment events for wallets: Redis pub/sub in, Server-Sent Events out.

A payment in or out of a wallet is announced by `Bank.announce` once it is durable. The
app sets `Bank.notify` to a `Notifier`, which queues the event and returns at once, so a
payment never waits for Redis (a hung Redis takes the client's whole socket timeout,
2 s, per call); a background task hands the events, in order, to each hook: payment
request matching (`commercial_bank.payment_requests`), then `LiveEvents.publish_many`,
which publishes each waiting event (one pipeline to Redis) as JSON on the channel

    <prefix>wallet:<address>

Each bank process keeps one pub/sub connection, subscribed to a control channel
(``<prefix>live``, on which nothing is published: it shows that the connection stands)
and to the channel of each wallet it serves an open stream of, and fans messages out to
those streams, however many there are (`LiveEvents.subscribe`). A wallet's channel is
subscribed when its first stream opens (the stream says live only once Redis confirmed
it) and unsubscribed when its last one ends, so a bank is sent only the events of
wallets someone follows there, not every payment of every bank. A wallet app follows its wallet with

    GET /v1/wallets/{address}/events        (session of that wallet; text/event-stream)

    retry: 3000

    event: status
    data: {"live": true}

    event: payment
    data: {"type": "payment_in", "id": "...", "status": "settled", "amount": 1234, ...}

    : keepalive                             (a comment, every `heartbeat` seconds)

Redis holds nothing money depends on (design: "Where each store fits"), and pub/sub keeps
no history: events published while Redis is away are lost. So when the connection to
Redis breaks, every open stream gets ``event: status`` ``{"live": false}``, the process
resubscribes with exponential backoff, and then sends ``{"live": true}``; a client should
reload the wallet's history when it sees that. A stream cannot be opened while Redis is
away: the answer is a 503 problem, "live events are unavailable; payments still work".

A stream ends when the client goes away (noticed within `POLL_S`), when the session it
was opened with ends (checked at each heartbeat: logout, wallet reported lost), when the
client reads so slowly that `queue_limit` events pile up, or when the app shuts down
(`on_shutdown` ends every stream, so `AppRunner.cleanup` does not wait for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final

import msgspec
from aiohttp import hdrs, web
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from cbdc.problems import ProblemError, problem_type
from commercial_bank.handlers import session_wallet
from commercial_bank.keys import BANK, SESSIONS
from commercial_bank.sessions import SessionStoreUnavailable

__all__ = [
    "LIVE",
    "LiveEvents",
    "LiveUnavailable",
    "Notifier",
    "Subscription",
    "close_streams",
    "wallet_events",
]

log = logging.getLogger(__name__)

Event = dict[str, Any]
Hook = Callable[[str, Event], Awaitable[None]]
BatchHook = Callable[[Sequence[tuple[str, Event]]], Awaitable[None]]

HEARTBEAT_S: Final = 15.0  # a comment line this often keeps proxies from closing the stream
PING_S: Final = 15.0  # how often a quiet pub/sub connection checks that Redis answers
POLL_S: Final = 1.0  # how often a quiet stream checks that its client is still there
RETRY_AFTER_S: Final = 5  # what a 503 tells the client to wait
CLIENT_RETRY_MS: Final = 3000  # the SSE `retry:` a browser's EventSource reconnects after


class LiveUnavailable(Exception):
    """Live events cannot be followed now: Redis is unreachable, or the app is stopping."""


def unavailable_problem() -> ProblemError:
    return ProblemError(
        503, problem_type("live-events-unavailable"), "Service Unavailable",
        "live events are unavailable; payments still work",
        headers={"Retry-After": str(RETRY_AFTER_S)})


class Subscription:
    """The events of one wallet for one open stream: a bounded queue, and why it ended."""

    def __init__(self, address: str, limit: int) -> None:
        self.address = address
        self.limit = limit
        self.ended: str | None = None  # "shutdown", "lagging", ... once it has ended
        self._items: deque[tuple[str, Event]] = deque()
        self._wake = asyncio.Event()

    def push(self, name: str, data: Event) -> bool:
        """Queue an event; False (and the subscription ends) if the reader lags too far."""
        if self.ended is not None:
            return False
        if len(self._items) >= self.limit:
            self.end("lagging")
            return False
        self._items.append((name, data))
        self._wake.set()
        return True

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self._wake.set()

    async def next(self, seconds: float) -> tuple[str, Event] | None:
        """The next queued event, or None after `seconds` or once it has ended."""
        if not self._items and self.ended is None:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        if self.ended is not None or not self._items:
            return None
        return self._items.popleft()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


# PUBLISH each (channel, message) pair of ARGV, in order: one command for a batch of
# events. A pipeline of one PUBLISH each cost the bank's Redis client 285 us of CPU for
# eight events (its cost is per command, packing and parsing each); this script, 160 us.
_PUBLISH_ALL = """
for i = 1, #ARGV, 2 do
    redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""


class LiveEvents:
    """Publishes wallet events to Redis and follows them for this process's streams.

    `start()` begins following (it retries for as long as Redis is away); `close()` ends
    every stream and stops. `live` is True while the pub/sub subscription stands.
    """

    def __init__(self, redis: Redis, *, prefix: str, heartbeat: float = HEARTBEAT_S,
                 backoff: tuple[float, float] = (0.1, 5.0), queue_limit: int = 256,
                 open_wait: float = 1.0, ping_every: float = PING_S) -> None:
        self._redis = redis
        self._publish_all = redis.register_script(_PUBLISH_ALL)
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.backoff = backoff
        self.queue_limit = queue_limit
        self.open_wait = open_wait  # how long opening a stream waits for the subscription
        self.ping_every = ping_every  # a quiet subscription pings Redis; 3 unanswered: lost
        self._channel_prefix = f"{prefix}wallet:"
        self._control = f"{prefix}live"
        self._streams: dict[str, set[Subscription]] = {}
        self._live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._pubsub: PubSub | None = None
        # Channels SUBSCRIBEd (and not since UNSUBSCRIBEd) on the current connection, and
        # the confirmations still awaited. Commands go out under the lock, each decided
        # on the state it finds then, so a quick unsubscribe-subscribe keeps its order.
        self._subscribed: set[str] = set()
        self._confirming: dict[str, asyncio.Future[None]] = {}
        self._commands = asyncio.Lock()
        self._chores: set[asyncio.Task[None]] = set()

    # --------------------------------------------------------------- publish
    def channel(self, address: str) -> str:
        return f"{self._channel_prefix}{address}"

    async def publish(self, address: str, event: Event) -> None:
        """Publish `event` to the streams of wallet `address` (in every process)."""
        await self._redis.publish(self.channel(address), msgspec.json.encode(event))

    async def publish_many(self, events: Sequence[tuple[str, Event]]) -> None:
        """Publish each (address, event), in order, in one command to Redis.

        A bank under load announces hundreds of payments a second: one command per
        batch of them costs one write and one read where a PUBLISH each cost as many
        (the round trips were about a tenth of a bank's CPU per payment), and less client
        CPU than a pipeline of PUBLISHes. The channels and messages are the same as
        `publish` sends one by one."""
        if len(events) == 1:
            await self.publish(*events[0])
            return
        args: list[str | bytes] = []
        for address, event in events:
            args += (self.channel(address), msgspec.json.encode(event))
        await self._publish_all(args=args)

    # ------------------------------------------------------------- subscribe
    @property
    def live(self) -> bool:
        return self._live.is_set()

    async def subscribe(self, address: str) -> Subscription:
        """A new subscription to `address`'s events; `LiveUnavailable` if Redis is away
        (after waiting up to `open_wait` seconds for the subscription to stand)."""
        if self._closing or self._task is None:
            raise LiveUnavailable("live events are not running")
        subscription = Subscription(address, self.queue_limit)
        self._streams.setdefault(address, set()).add(subscription)
        try:
            async with asyncio.timeout(self.open_wait):
                while not self._live.is_set():
                    await self._live.wait()
                await self._ensure_subscribed(self.channel(address))
        except TimeoutError:
            self.unsubscribe(subscription)
            raise LiveUnavailable("Redis cannot be reached") from None
        except Exception as exc:  # Redis errors, OSError: the follower reconnects
            self.unsubscribe(subscription)
            raise LiveUnavailable(f"Redis cannot be reached: {exc}") from None
        if self._closing:
            self.unsubscribe(subscription)
            raise LiveUnavailable("the bank is shutting down")
        return subscription

    async def _ensure_subscribed(self, channel: str) -> None:
        """Return once Redis has confirmed this connection's subscription to `channel`."""
        async with self._commands:
            pubsub = self._pubsub
            if pubsub is None or not self._live.is_set():
                raise ConnectionError("not subscribed to Redis")
            waiting = self._confirming.get(channel)
            if channel not in self._subscribed:
                if waiting is None:
                    waiting = self._confirming[channel] = \
                        asyncio.get_running_loop().create_future()
                self._subscribed.add(channel)
                try:
                    await pubsub.subscribe(channel)
                except BaseException:
                    self._subscribed.discard(channel)
                    raise
        if waiting is not None:
            await asyncio.shield(waiting)

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.end("closed")
        subs = self._streams.get(subscription.address)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._streams[subscription.address]
                self._chore(self._drop_channel(subscription.address))

    def _chore(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _drop_channel(self, address: str) -> None:
        """UNSUBSCRIBE from a wallet's channel, unless a stream of it opened meanwhile."""
        channel = self.channel(address)
        with contextlib.suppress(Exception):
            async with self._commands:
                pubsub = self._pubsub
                if address in self._streams or channel not in self._subscribed \
                        or pubsub is None or self._closing:
                    return
                self._subscribed.discard(channel)
                await pubsub.unsubscribe(channel)

    def _broadcast(self, name: str, data: Event) -> None:
        for subs in list(self._streams.values()):
            for subscription in list(subs):
                if not subscription.push(name, data):
                    self.unsubscribe(subscription)

    def _dispatch(self, channel: str, data: bytes | str) -> None:
        subs = self._streams.get(channel.removeprefix(self._channel_prefix))
        if not subs:
            return
        try:
            event = json.loads(data)
        except ValueError:
            log.warning("live events: %s carried a message that is not JSON", channel)
            return
        if not isinstance(event, dict):
            return
        for subscription in list(subs):
            if not subscription.push("payment", event):
                log.info("live events: a stream of %s lagged behind and was ended",
                         subscription.address)
                self.unsubscribe(subscription)

    def _confirmed(self, channel: str) -> None:
        waiting = self._confirming.pop(channel, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    # -------------------------------------------------------------- follower
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow_forever(), name="live-events")

    async def _follow_forever(self) -> None:
        delay = self.backoff[0]
        warned = False
        # Ended by the flag as well as by cancellation: redis-py can swallow a
        # cancellation inside a read, and asyncio.run would then wait for this task
        # forever at exit.
        while not self._closing:
            pubsub = self._pubsub = self._redis.pubsub()
            try:
                await self._follow(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis errors, OSError, timeouts: resubscribe
                if self._live.is_set() or not warned:
                    log.warning("live events: Redis pub/sub unavailable (%s); resubscribing "
                                "with backoff", exc)
                    warned = True
                if self._live.is_set():
                    delay = self.backoff[0]
                self._set_live(False)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff[1])

    async def _follow(self, pubsub: PubSub) -> None:
        async with self._commands:
            # A new connection: the control channel and every wallet followed here.
            self._subscribed = {self._control,
                                *(self.channel(address) for address in self._streams)}
            channels = sorted(self._subscribed - {self._control})
            await pubsub.subscribe(self._control, *channels)
        async with asyncio.timeout(5):
            confirmed = 0
            while confirmed < 1 + len(channels):
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    confirmed += 1
                    self._confirmed(_text(message["channel"]))
                elif message["type"] == "message":
                    self._dispatch(_text(message["channel"]), message["data"])
        self._set_live(True)
        ping_every = self.ping_every
        heard = pinged = time.monotonic()
        while not self._closing:
            message = await pubsub.get_message(timeout=min(1.0, ping_every))
            now = time.monotonic()
            if message is None:
                if now - heard > 3 * ping_every:
                    raise ConnectionError("Redis stopped answering pings")
                if now - pinged >= ping_every:
                    await pubsub.ping()
                    pinged = now
                continue
            heard = now
            kind = message["type"]
            if kind == "message":
                self._dispatch(_text(message["channel"]), message["data"])
            elif kind == "subscribe":
                self._confirmed(_text(message["channel"]))

    def _set_live(self, live: bool) -> None:
        if live == self._live.is_set():
            return
        if live:
            self._live.set()
            log.info("live events: following %s and %d wallets", self._control,
                     len(self._subscribed) - 1)
        else:
            self._live.clear()
            self._subscribed = set()
            for waiting in self._confirming.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionError("Redis pub/sub was lost"))
                    waiting.exception()  # retrieved: nobody may be waiting any more
            self._confirming.clear()
        self._broadcast("status", {"live": live})

    # ---------------------------------------------------------------- close
    def close_streams(self) -> None:
        """End every open stream and refuse new ones (the app is shutting down)."""
        self._closing = True
        for subs in list(self._streams.values()):
            for subscription in list(subs):
                subscription.end("shutdown")
        self._streams.clear()

    async def close(self) -> None:
        self.close_streams()  # sets _closing, which also ends the follower's loops
        self._live.clear()
        if self._pubsub is not None:
            # Close the subscription's connection ourselves: a read that swallowed its
            # cancellation ends with it, and no connection outlives the app (an embedded
            # Redis is only stopped once nobody is connected).
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        for chore in list(self._chores):
            chore.cancel()
        if self._task is not None:
            self._task.cancel()
            # Bounded: redis-py's pub/sub read can swallow a cancellation now and then,
            # and a shutdown must not hang on live events.
            await asyncio.wait({self._task}, timeout=2.0)
            self._task = None


LIVE = web.AppKey("live_events", LiveEvents)


async def close_streams(app: web.Application) -> None:
    """`on_shutdown`: end the open event streams so the server need not wait for them."""
    live = app.get(LIVE)
    if live is not None:
        live.close_streams()


# ------------------------------------------------------------------ notifier
class Notifier:
    """`Bank.notify`: queues each (address, event) and returns at once; a background task
    hands the events, in order, to each hook. A failing hook is logged (once per outage)
    and never stops the others. When `limit` events are waiting, new ones are dropped.

    The task takes every event waiting (up to `max_batch`) at once: each of `hooks` is
    called per event, in order, then each of `batch_hooks` once with the whole list (so
    live delivery publishes a burst of payments in one round trip)."""

    def __init__(self, *hooks: Hook, batch_hooks: Sequence[BatchHook] = (),
                 limit: int = 10_000, max_batch: int = 512) -> None:
        self.hooks = hooks
        self.batch_hooks = tuple(batch_hooks)
        self.max_batch = max_batch
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue(limit)
        self._failing: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, address: str, event: Event) -> None:
        try:
            self._queue.put_nowait((address, event))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("live events: %d dropped, the queue is full", self.dropped)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._deliver(), name="payment-notifier")

    async def _deliver(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                for index, hook in enumerate(self.hooks):
                    for address, event in batch:
                        await self._call(index, hook, hook(address, event))
                for index, batch_hook in enumerate(self.batch_hooks, start=len(self.hooks)):
                    await self._call(index, batch_hook, batch_hook(batch))
            finally:
                for _ in batch:
                    queue.task_done()

    async def _call(self, index: int, hook: object, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as exc:
            if index not in self._failing:
                self._failing.add(index)
                log.warning("payment event hook %s failing: %s",
                            getattr(hook, "__qualname__", hook), exc)
        else:
            if index in self._failing:
                self._failing.discard(index)
                log.info("payment event hook %s works again",
                         getattr(hook, "__qualname__", hook))

    async def close(self, drain: float = 2.0) -> None:
        """Deliver what is queued (for up to `drain` seconds), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                await self._queue.join()
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=2.0)
        self._task = None


# ------------------------------------------------------------------- handler
def _frame(name: str, data: Event) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _bearer_token(request: web.Request) -> str:
    return request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")[2].strip()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def wallet_events(request: web.Request) -> web.StreamResponse:
    """GET /v1/wallets/{address}/events: the wallet's payments as Server-Sent Events."""
    try:
        wallet = await session_wallet(request)
    except ProblemError as exc:
        if exc.status == 503:  # the session store is Redis too
            raise unavailable_problem() from None
        raise
    live = request.app[LIVE]
    address = request.app[BANK].address(wallet.number)
    try:
        subscription = await live.subscribe(address)
    except LiveUnavailable:
        raise unavailable_problem() from None
    token = _bearer_token(request)
    response = web.StreamResponse(headers={
        hdrs.CACHE_CONTROL: "no-store",
        "X-Accel-Buffering": "no",  # nginx: pass each event on at once
    })
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    try:
        await response.prepare(request)
        await response.write(f"retry: {CLIENT_RETRY_MS}\n\n".encode()
                             + _frame("status", {"live": True}))
        next_beat = time.monotonic() + live.heartbeat
        while True:
            wait = max(0.0, min(POLL_S, next_beat - time.monotonic()))
            item = await subscription.next(wait)
            if subscription.ended is not None or _client_gone(request):
                break
            if item is not None:
                await response.write(_frame(*item))
            if time.monotonic() >= next_beat:
                if not await _session_still_open(request, token):
                    break
                await response.write(b": keepalive\n\n")
                next_beat = time.monotonic() + live.heartbeat
    except OSError:  # the client went away mid-write (ClientConnectionResetError, ...)
        pass
    finally:
        live.unsubscribe(subscription)
    return response


async def _session_still_open(request: web.Request, token: str) -> bool:
    """False once the stream's session has ended (logout, wallet reported lost); True if
    Redis cannot say (the stream then just waits, showing live: false). Like any use of
    the session, the check extends it: an open stream keeps its session alive."""
    try:
        return await request.app[SESSIONS].resolve(token) is not None
    except SessionStoreUnavailable:
        return True
