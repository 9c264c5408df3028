"""Top up the wallet from the linked deposit account, or redeem back into it."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Input, Label, Static

from cbdc.money import format_fen, parse_cny
from wallet_tui.screens.base import WalletScreen
from wallet_tui.screens.send import amount_problem

MONEY_ADVICE = {
    "no_deposit_account": "Link one first with Ctrl+L.",
    "insufficient_funds": "Move less: the lines above say what each side holds.",
    "exceeds_balance_cap": "Top up less, or upgrade the wallet's class (c on the home "
                           "screen) to hold more.",
}


class MoneyScreen(WalletScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+t", "move('top-up')", "Top up"),
        Binding("ctrl+r", "move('redeem')", "Redeem"),
        Binding("ctrl+l", "link", "Link deposit account"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with VerticalScroll(id="money-form", classes="form"):
            yield Static("Loading…", id="money-balances")
            yield Label("Amount in CNY")
            yield Input(placeholder="100.00", id="money-amount")
            yield Static("Ctrl+T tops the wallet up from the deposit account (Enter too); "
                         "Ctrl+R redeems e-CNY back into it.", id="money-help")
            yield Static("", id="money-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#money-amount", Input).focus()
        self.load()

    def wallet_changed(self) -> None:
        self.load()

    @work(exclusive=True, group="money-load")
    async def load(self) -> None:
        summary = await self.ask("#money-status", self.session.summary())
        if summary is not None:
            self.show(summary)

    def show(self, summary: dict[str, Any]) -> None:
        deposit = summary.get("deposit_account")
        cap = summary["limits"]["balance_cap"]
        lines = [f"Wallet {format_fen(summary['balance'])} (holds at most {format_fen(cap)})"]
        lines.append(f"Deposit account {deposit['number']}: {format_fen(deposit['balance'])}"
                     if deposit else "No deposit account linked yet: Ctrl+L links one.")
        self.query_one("#money-balances", Static).update("\n".join(lines))

    @on(Input.Submitted, "#money-amount")
    def submitted(self) -> None:
        self.action_move("top-up")

    def action_move(self, what: str) -> None:
        text = self.query_one("#money-amount", Input).value.strip()
        problem = amount_problem(text) if text else "enter an amount"
        if problem is not None:
            self.say("#money-status", f"{problem[0].upper()}{problem[1:]}.", error=True)
            return
        amount = int(parse_cny(text))
        verb = "Topping up" if what == "top-up" else "Redeeming"
        self.say("#money-status", f"{verb} {format_fen(amount)}…")
        self.move(what, amount)

    @work(exclusive=True, group="money-move")
    async def move(self, what: str, amount: int) -> None:
        session = self.session
        summary = await self.ask("#money-status", session.top_up(amount) if what == "top-up"
                                 else session.redeem(amount), "Not done: ", MONEY_ADVICE)
        if summary is None:
            return
        self.query_one("#money-amount", Input).value = ""
        done = "Topped up" if what == "top-up" else "Redeemed"
        self.say("#money-status", f"{done} {format_fen(amount)}.")
        self.show(summary)

    def action_link(self) -> None:
        self.link()

    @work(exclusive=True, group="money-move")
    async def link(self) -> None:
        summary = await self.ask("#money-status", self.session.link_deposit())
        if summary is None:
            return
        self.say("#money-status", "Deposit account linked.")
        self.show(summary)
