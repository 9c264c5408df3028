"""The wallet's address and its QR code; or a payment request (amount and memo) as a
`cbdc:` URI and QR code, which says when it is paid."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Label, Static

from cbdc.addresses import parse_address
from cbdc.money import format_fen, parse_cny
from cbdc.payment_orders import PaymentRequest, memo_problem, qr_text
from wallet_tui.screens.base import WalletScreen
from wallet_tui.screens.send import amount_problem


def receive_uri(address: str) -> str:
    """A payment request for any amount: the payer enters it."""
    return PaymentRequest(payee=parse_address(address), amount=None, memo="", expires=None,
                          request_id="wallet").to_uri()


class ReceiveScreen(WalletScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+r", "request", "Request payment"),
    ]

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self.request: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        uri = receive_uri(self.address)
        yield Header(show_clock=False)
        with Horizontal(id="receive"):
            with VerticalScroll(id="qr-box"):
                yield Static(qr_text(uri), id="qr")
            with Vertical(id="request-form", classes="form"):
                yield Static(f"Your address\n[b]{self.address}[/b]", id="receive-address")
                yield Label("Ask for an amount (CNY, optional)")
                yield Input(placeholder="12.34", id="request-amount")
                yield Label("Memo (optional)")
                yield Input(placeholder="Invoice 42", id="request-memo", max_length=100)
                yield Static("Enter or Ctrl+R makes a payment request.", id="request-status",
                             classes="status")
                yield Static(uri, id="receive-uri")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#request-amount", Input).focus()

    @on(Input.Submitted)
    def action_request(self) -> None:
        amount_text = self.query_one("#request-amount", Input).value.strip()
        memo = self.query_one("#request-memo", Input).value
        problem = amount_problem(amount_text) or memo_problem(memo)
        if problem is not None:
            self.say("#request-status", f"{problem[0].upper()}{problem[1:]}.", error=True)
            return
        amount = int(parse_cny(amount_text)) if amount_text else None
        self.say("#request-status", "Asking the bank for a payment request…")
        self.make_request(amount, memo)

    @work(exclusive=True)
    async def make_request(self, amount: int | None, memo: str) -> None:
        session = self.session
        made = await self.ask("#request-status",
                              session.client.payment_request(session.address, amount, memo))
        if made is None:
            return
        self.request = made
        self.query_one("#qr", Static).update(qr_text(made["uri"]))
        self.query_one("#receive-uri", Static).update(made["uri"])
        asked = format_fen(amount) if amount is not None else "any amount"
        self.say("#request-status", f"Requesting {asked}: waiting for payment. Show the "
                 "code or send the URI below.")

    def wallet_changed(self) -> None:
        if self.request is not None:
            self.check_request(str(self.request["request_id"]))

    @work(exclusive=True, group="request-status")
    async def check_request(self, request_id: str) -> None:
        session = self.session
        status = await self.ask("#request-status", session.client.payment_request_status(
            session.address, request_id))
        if status is None:
            return
        if status["status"] == "paid":
            self.say("#request-status", f"Paid by {status.get('paid_by')}.")
        elif status["status"] == "expired":
            self.say("#request-status", "The request expired unpaid; make a new one.",
                     error=True)
