"""Reading Server-Sent Events (the `text/event-stream` of a bank's live wallet events).

Only what the banks send is read: `event:` names, `data:` lines (joined), a blank line
ending each event; comments (`: keepalive`), `retry:` and `id:` lines are passed over.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def read_events(lines: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, str]]:
    """`(event name, data)` for each event of the stream, until it ends."""
    name, data = "message", ""
    async for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line:
            if data:
                yield name, data
            name, data = "message", ""
