"""Pay another wallet: the address is checked as it is typed, then confirmed, then sent."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Static

from cbdc.addresses import AddressError, check_partial, parse_address
from cbdc.money import format_fen, parse_cny
from cbdc.payment_orders import (
    PaymentUriError,
    memo_problem,
    parse_payment_uri,
    request_memo,
)
from wallet_tui.screens.base import WalletScreen
from wallet_tui.screens.confirm import ConfirmPayment, PaymentDraft
from wallet_tui.screens.detail import DetailScreen

# What to do next after the bank refused a payment, by the problem's `code`.
PAYMENT_ADVICE = {
    "exceeds_single_limit": "Pay less at once, or upgrade the wallet's class (c on the "
                            "home screen) for a higher limit.",
    "exceeds_daily_limit": "Pay at most what is left today, or upgrade the class (c).",
    "exceeds_yearly_limit": "Pay at most what is left this year, or upgrade the class (c).",
    "insufficient_funds": "Top up from your deposit account (t on the home screen) or pay "
                          "less.",
    "payee_cannot_receive": "Ask the payee to check their wallet, or pay another address.",
    "payee_unknown": "Check the address with the payee.",
    "wallet_frozen": "Ask your bank to unfreeze the wallet.",
}


def amount_problem(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        amount = parse_cny(text)
    except ValueError as exc:
        return str(exc)
    return None if amount > 0 else "the amount must be more than ¥0.00"


class SendScreen(WalletScreen):
    """Type an address (or paste a `cbdc:` payment request: it fills amount and memo)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back"),
                Binding("ctrl+s", "review", "Review and send")]

    def __init__(self, payer: str) -> None:
        super().__init__()
        self.payer = payer

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with VerticalScroll(id="send-form", classes="form"):
            yield Static(f"From {self.payer}", id="send-from")
            yield Label("Pay to (address, or a cbdc: payment request)")
            yield Input(placeholder="BANKB-000000000001-23", id="payee")
            yield Static("", id="payee-error", classes="error")
            yield Label("Amount in CNY (at most two decimals)")
            yield Input(placeholder="12.34", id="amount")
            yield Static("", id="amount-error", classes="error")
            yield Label("Memo (optional)")
            yield Input(placeholder="Tea", id="memo", max_length=140)
            yield Button("Review", id="review", variant="primary")
            yield Static("", id="send-result", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#payee", Input).focus()

    @on(Input.Changed, "#payee")
    def payee_changed(self, event: Input.Changed) -> None:
        text = event.value.strip()
        if text.lower().startswith("cbdc:"):
            self.fill_from_request(event.input, text)
            return
        problem = check_partial(event.value)
        self.query_one("#payee-error", Static).update(problem or "")

    def fill_from_request(self, payee: Input, uri: str) -> None:
        """A pasted payment request: its payee, amount and memo (tagged with its id)."""
        try:
            request = parse_payment_uri(uri)
        except PaymentUriError as exc:
            self.query_one("#payee-error", Static).update(f"Not a payment request: {exc}.")
            return
        payee.value = str(request.payee)
        if request.amount is not None:
            yuan, fen = divmod(request.amount, 100)
            self.query_one("#amount", Input).value = f"{yuan}.{fen:02d}"
        self.query_one("#memo", Input).value = request_memo(request.request_id, request.memo)
        self.query_one("#payee-error", Static).update("")

    @on(Input.Changed, "#amount")
    def amount_changed(self, event: Input.Changed) -> None:
        self.query_one("#amount-error", Static).update(amount_problem(event.value) or "")

    def draft(self) -> PaymentDraft | None:
        """The payment the form describes, or None after showing what is wrong."""
        payee_text = self.query_one("#payee", Input).value
        amount_text = self.query_one("#amount", Input).value
        memo = self.query_one("#memo", Input).value
        payee_error = self.query_one("#payee-error", Static)
        amount_error = self.query_one("#amount-error", Static)
        try:
            payee = str(parse_address(payee_text))
        except AddressError as exc:
            payee_error.update(str(exc) if payee_text.strip() else "Enter the payee's address.")
            self.query_one("#payee", Input).focus()
            return None
        if payee == self.payer:
            payee_error.update("That is this wallet's own address.")
            return None
        problem = amount_problem(amount_text) if amount_text.strip() else "Enter an amount."
        if problem is not None:
            amount_error.update(problem)
            self.query_one("#amount", Input).focus()
            return None
        memo_error = memo_problem(memo)
        if memo_error is not None:
            self._result(memo_error, error=True)
            return None
        return PaymentDraft(payee, int(parse_cny(amount_text)), memo)

    @on(Input.Submitted)
    @on(Button.Pressed, "#review")
    def action_review(self) -> None:
        draft = self.draft()
        if draft is not None:
            self._result("Checking your limits…")
            self.review(draft)

    @work(exclusive=True)
    async def review(self, draft: PaymentDraft) -> None:
        session = self.session
        summary = await self.ask("#send-result", session.summary())
        if summary is None:
            return
        self._result("")
        if await self.app.push_screen_wait(ConfirmPayment(draft, summary)):
            self._result(f"Sending {format_fen(draft.amount)}…")
            self.send(draft)
        else:
            self._result("Not sent.")

    @work(exclusive=True, group="pay")
    async def send(self, draft: PaymentDraft) -> None:
        session = self.session
        payment = await self.ask("#send-result", session.pay(draft.payee, draft.amount,
                                                             draft.memo), "Not sent: ",
                                 PAYMENT_ADVICE)
        if payment is None:
            return
        self.show_sent(payment, draft.memo)

    def show_sent(self, payment: dict[str, Any], memo: str) -> None:
        self._result(f"Sent {format_fen(int(payment['amount']))} to {payment['payee']}: "
                     f"{payment['status']}. Press Esc to go back.")
        for field in ("#payee", "#amount", "#memo"):
            self.query_one(field, Input).value = ""
        entry = {"id": payment["id"], "amount": payment["amount"], "direction": "out",
                 "kind": "payment", "counterparty": payment["payee"], "memo": memo,
                 "status": payment["status"]}
        self.app.push_screen(DetailScreen(entry, "Sent"))

    def _result(self, text: str, *, error: bool = False) -> None:
        self.say("#send-result", text, error=error)
