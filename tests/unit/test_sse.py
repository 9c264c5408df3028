"""Reading a bank's event stream: named events, joined data, comments passed over."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cbdc.sse import read_events


async def _lines(*lines: bytes) -> AsyncIterator[bytes]:
    for line in lines:
        yield line


async def test_events_are_read_as_the_bank_sends_them() -> None:
    stream = _lines(b"retry: 3000\n", b"\n", b"event: status\n", b'data: {"live": true}\n',
                    b"\n", b": keepalive\n", b"\n", b"event: payment\r\n", b'data: {"a":\n',
                    b"data: 1}\n", b"\n", b'data: {"unnamed": 1}\n', b"\n",
                    b"event: cut\n", b"data: never ended\n")
    events = [event async for event in read_events(stream)]
    assert events == [("status", '{"live": true}'), ("payment", '{"a":1}'),
                      ("message", '{"unnamed": 1}')]
