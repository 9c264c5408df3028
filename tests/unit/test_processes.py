"""Ports for the services a cluster starts: chosen before they bind, never twice."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from cbdc import processes


class _Offered:
    """A socket whose bind to port 0 gets the next port of a fixed list (the kernel's
    offers), so a repeated offer can be staged."""

    def __init__(self, ports: Iterator[int]) -> None:
        self._ports = ports
        self._port = 0

    def __enter__(self) -> _Offered:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        self._port = next(self._ports)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self._port)


def test_a_port_the_kernel_offers_again_is_not_handed_out_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    offers = iter([41001, 41001, 41001, 41002])

    def offered(*args: Any) -> _Offered:
        return _Offered(offers)

    monkeypatch.setattr(processes, "_HANDED_OUT", set())
    monkeypatch.setattr(socket, "socket", offered)
    assert [processes.unused_port(), processes.unused_port()] == [41001, 41002]


def test_ports_handed_out_are_free_and_distinct() -> None:
    ports = [processes.unused_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # nothing holds it
