"""The event loop a `cbdc` process runs on.

    exit_code = loops.run(main())

Services and load generators run on uvloop (libuv's event loop, the same asyncio API)
where it is installed: it spends less CPU per request in the transport and the loop
itself, which on a 2-core machine shared by servers, PostgreSQL and the load is
throughput and tail latency. Elsewhere (Windows) asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default) without uvloop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new loop, as asyncio.run does."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
