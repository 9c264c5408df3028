"""Long-lived objects, kept out of the cyclic collector's walks.

A full collection walks every container the collector tracks. What a service builds to
serve (its engine and ledger state, pools, request log, route tables, metrics) lives as
long as the process, and a load generator's pre-built requests live as long as its
phase: walking them finds nothing to free, it only stalls every request in flight, for
longer the more there is (a retail bench's load generator stalled for 43 to 59 ms in each
of its full collections, inside the latencies it measured). `freeze_long_lived` moves
everything alive to the collector's permanent generation (`gc.freeze`); reference
counting still frees whatever of it is later dropped.

The ledger writer freezes its state again as the state grows (`settlement.writer`), and
what a service keeps adding while it runs is built so the collector never tracks it (the
central bank's request log).
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Locust files use this module too, and import no aiohttp
    from aiohttp import web


def freeze_long_lived() -> None:
    """Collect the garbage there is, then freeze what is left: call it once what is
    about to run (a service, a timed phase) has everything it will keep."""
    gc.collect()
    gc.freeze()


async def freeze_after_startup(app: web.Application) -> None:
    """`app.on_startup` hook: aiohttp runs it after every cleanup context has started."""
    del app
    freeze_long_lived()
