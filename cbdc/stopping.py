"""Serve until asked to stop: Ctrl-C (SIGINT) or SIGTERM, as an exit code.

    runner = await start_service()
    try:
        code = await until_stopped()
    finally:
        await runner.cleanup()
    return code

The signals are handled by the event loop, so a stop request never raises inside
whatever task happens to run when it arrives: the waiting coroutine returns and the
service's own clean-up runs in order. A signal the process inherited as ignored (a job
a shell started in the background ignores SIGINT) stays ignored, as a shell expects.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def until_stopped() -> int:
    """Wait for SIGINT or SIGTERM; return the conventional exit code (130 or 143).

    Once the first signal has arrived the handlers the process had before come back, so
    a second Ctrl-C during the clean-up hurries the stop the usual way.
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()
    installed: list[tuple[signal.Signals, Any]] = []

    def on_signal(signum: int) -> None:
        if not received.done():
            received.set_result(signum)

    for sig in STOP_SIGNALS:
        previous = signal.getsignal(sig)
        if previous is signal.SIG_IGN:
            continue
        loop.add_signal_handler(sig, on_signal, sig)
        installed.append((sig, previous))
    try:
        signum = await received
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            # The handler it had (asyncio's or Python's for SIGINT, the storage's
            # SystemExit for SIGTERM), not the bare default that would skip the stores'
            # stop.
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
    return 128 + signum
