"""Calls to another service that go together when they queue up.

A bank asks other services the same question for many payments at once: the payee's
bank whether a wallet can receive, the central bank to settle a transfer. Each call
costs a request (and at the central bank a signature) whatever it carries, so under
load `Coalescer` sends what has queued as one batch call, while a lone call still goes
at once:

    checks = Coalescer(ask_one, ask_many, max_in_flight=2)
    answer = await checks(question)

At most `max_in_flight` calls are under way. An item that finds a slot free goes at
once, alone, through `alone`; items that arrive while every slot is busy wait for the
first to free and go together (at most `max_items`) through `together`, which returns
one outcome per item, in order: the answer, or an exception that item's caller gets.
`together` raises `SendAlone` to have each of its items sent alone instead (the other
side refused the batch as a whole); any other exception goes to every caller of the
batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer", "SendAlone"]

T = TypeVar("T")
R = TypeVar("R")


class SendAlone(Exception):
    """Raised by a batch call: send each of its items alone instead."""


class Coalescer(Generic[T, R]):
    def __init__(self, alone: Callable[[T], Awaitable[R]],
                 together: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]], *,
                 max_in_flight: int = 2, max_items: int = 1000, name: str = "coalesced") -> None:
        if max_in_flight < 1 or max_items < 1:
            raise ValueError("max_in_flight and max_items must be positive")
        self._alone = alone
        self._together = together
        self.max_in_flight = max_in_flight
        self.max_items = max_items
        self.name = name
        self.calls = self.batched = 0  # calls made; items that went in a batch call
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start_calls()
        return await future

    def _start_calls(self) -> None:
        while self._waiting and self._in_flight < self.max_in_flight:
            batch = self._waiting[:self.max_items]
            del self._waiting[:self.max_items]
            self._in_flight += 1
            task = asyncio.create_task(self._call(batch), name=self.name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            self.calls += 1
            if len(batch) == 1:
                await self._send_alone(*batch[0])
                return
            self.batched += len(batch)
            try:
                outcomes = await self._together([item for item, _ in batch])
            except SendAlone:
                await asyncio.gather(*(self._send_alone(item, future)
                                       for item, future in batch))
                return
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{self.name}: {len(outcomes)} answers for "
                                   f"{len(batch)} items")
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        except BaseException as exc:  # every caller still waiting hears of it
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._in_flight -= 1
            self._start_calls()

    async def _send_alone(self, item: T, future: asyncio.Future[R]) -> None:
        try:
            answer = await self._alone(item)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(answer)

    async def close(self) -> None:
        """Cancel the calls under way (their callers get CancelledError)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
