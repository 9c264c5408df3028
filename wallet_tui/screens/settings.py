"""Settings: the bank this wallet talks to, and the profile (switch to another, or lock)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Input, Label, OptionList, Static

from wallet_tui.formatting import bank_url_problem
from wallet_tui.screens.base import WalletScreen


class SettingsScreen(WalletScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "save_bank", "Use this bank"),
        Binding("ctrl+l", "lock", "Lock"),
    ]

    def compose(self) -> ComposeResult:
        app = self.wallet_app
        yield Header(show_clock=False)
        with VerticalScroll(id="settings-form", classes="form"):
            yield Static(f"Profile [b]{self.session.profile.name}[/b], wallet "
                         f"{self.session.address}", id="settings-profile")
            yield Label("Bank URL (Ctrl+S to use it; you unlock again)")
            yield Input(value=app.client.base_url, id="bank-url")
            yield Label("Profiles (Enter switches; you unlock the other one)")
            yield OptionList(*app.keystore.profiles(), id="profiles")
            yield Static(f"Keystore: {app.keystore.folder}", id="settings-keystore")
            yield Static("", id="settings-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#profiles", OptionList).focus()

    @on(Input.Submitted, "#bank-url")
    def action_save_bank(self) -> None:
        url = self.query_one("#bank-url", Input).value.strip()
        problem = bank_url_problem(url)
        if problem is not None:
            self.say("#settings-status", problem, error=True)
            return
        profile = self.session.profile
        profile.bank_url = url
        self.wallet_app.keystore.update(profile)
        self.wallet_app.lock(profile.name, bank_url=url)

    @on(OptionList.OptionSelected, "#profiles")
    def switch(self, event: OptionList.OptionSelected) -> None:
        name = str(event.option.prompt)
        bank = self.wallet_app.keystore.bank_url(name)
        self.wallet_app.lock(name, bank_url=bank or None)

    def action_lock(self) -> None:
        self.wallet_app.lock(self.session.profile.name)
