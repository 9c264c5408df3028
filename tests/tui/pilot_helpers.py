"""Driving the wallet as a person would: type, press, wait for what the screen shows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input, Static

from tests.integration.bank_harness import Network, WalletUnderTest
from wallet_tui.app import WalletApp
from wallet_tui.keystore import Keystore
from wallet_tui.screens.home import HomeScreen

PASS = "correct horse battery"
SIZE = (80, 24)


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str,
                seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    shown = {f"#{w.id}": str(w.render()) for w in pilot.app.screen.query(".status, .error")
             if w.id}
    raise AssertionError(f"timed out waiting for {what}; {pilot.app.screen!r} shows {shown}, "
                         f"focus on {pilot.app.focused!r}")


def text_of(app: WalletApp, selector: str) -> str:
    found = app.screen.query(selector)
    return str(found.first(Static).render()) if found else ""


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    """Click into a field (as a person would before typing) and type; the screen's own
    first focus may land late on a busy machine, so wait until this field has it."""
    field = pilot.app.screen.query_one(selector, Input)
    for _ in range(200):
        field.focus()
        await pilot.pause()
        if pilot.app.focused is field:
            break
    await pilot.press(*text)


async def unlock(pilot: Pilot[None], app: WalletApp) -> None:
    await type_into(pilot, "#passphrase", PASS)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, HomeScreen)
                and text_of(app, "#balance").startswith("Balance"), "the home screen")


def app_for(network: Network, wallet: WalletUnderTest, folder: Path, name: str,
            **kwargs: bool) -> WalletApp:
    """A wallet app whose keystore holds `wallet`'s key as profile `name`."""
    url = network.banks[wallet.bank.code].url
    Keystore(folder).import_key(name, PASS, wallet.key.to_pem(), bank_url=url,
                                address=wallet.address)
    return WalletApp(url, keystore_dir=folder, profile=name, **kwargs)


class CuttableLink:
    """A TCP relay from a local port to the bank: `cut()` drops every connection and
    stops listening (the cable is pulled), `restore()` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@contextlib.asynccontextmanager
async def cuttable_link(target_port: int) -> AsyncIterator[CuttableLink]:
    link = CuttableLink(target_port)
    await link.restore()
    try:
        yield link
    finally:
        with contextlib.suppress(AssertionError, OSError):
            await link.cut()
