"""Upgrade the wallet's class with identity evidence (KYC), raising its limits."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Checkbox, Footer, Header, Input, Label, Static

from cbdc.money import format_fen
from wallet_tui.screens.base import WalletScreen

CLASSES = {
    3: "class 3: name and resident ID number, checked remotely",
    2: "class 2: class 3 plus a linked bank card",
}


class UpgradeScreen(WalletScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "submit", "Upgrade"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with VerticalScroll(id="upgrade-form", classes="form"):
            yield Static("Loading…", id="upgrade-current")
            yield Static("Class 3 needs your name and resident ID number; class 2 also a "
                         "bank card. Class 1 is opened in person at a branch.",
                         id="upgrade-help")
            yield Label("Full name")
            yield Input(placeholder="Zhang San", id="kyc-name")
            yield Label("Resident ID number (18 characters)")
            yield Input(placeholder="11010519491231002X", id="kyc-id")
            yield Checkbox("Link my bank card (class 2)", id="kyc-card")
            yield Static("", id="upgrade-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#kyc-name", Input).focus()
        self.load()

    @work(exclusive=True, group="upgrade-load")
    async def load(self) -> None:
        summary = await self.ask("#upgrade-status", self.session.summary())
        if summary is not None:
            self.show_current(summary)

    def show_current(self, summary: dict[str, Any]) -> None:
        limits = summary["limits"]
        self.query_one("#upgrade-current", Static).update(
            f"Now class {summary['class']}: holds up to {format_fen(limits['balance_cap'])}, "
            f"pays up to {format_fen(limits['single'])} at once, "
            f"{format_fen(limits['daily']['limit'])} a day.")

    @on(Input.Submitted)
    def action_submit(self) -> None:
        name = self.query_one("#kyc-name", Input).value.strip()
        resident_id = self.query_one("#kyc-id", Input).value.strip()
        card = self.query_one("#kyc-card", Checkbox).value
        if not name or not resident_id:
            self.say("#upgrade-status", "Enter your name and resident ID number.", error=True)
            return
        target = 2 if card else 3
        self.say("#upgrade-status", f"Asking the bank for {CLASSES[target]}…")
        self.upgrade({"class": target, "name": name, "resident_id": resident_id,
                      "bank_card": card})

    @work(exclusive=True, group="upgrade")
    async def upgrade(self, body: dict[str, Any]) -> None:
        session = self.session
        summary = await self.ask("#upgrade-status",
                                 session.client.change_class(session.address, body),
                                 "Not upgraded: ")
        if summary is None:
            return
        self.show_current(summary)
        self.say("#upgrade-status", f"Upgraded to class {summary['class']}.")
