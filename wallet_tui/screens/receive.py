"""The wallet's address, and a QR code a payer can scan."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from cbdc.addresses import parse_address
from cbdc.payment_orders import PaymentRequest, qr_text


def receive_uri(address: str) -> str:
    """A payment request for any amount: the payer enters it."""
    return PaymentRequest(payee=parse_address(address), amount=None, memo="", expires=None,
                          request_id="wallet").to_uri()


class ReceiveScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def compose(self) -> ComposeResult:
        uri = receive_uri(self.address)
        yield Header(show_clock=False)
        with Vertical(id="receive"):
            yield Static(f"Your address: [b]{self.address}[/b]", id="receive-address")
            with Center():
                yield Static(qr_text(uri), id="qr")
            yield Static(uri, id="receive-uri")
        yield Footer()
