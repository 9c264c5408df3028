"""Unlock an existing profile, or create a class-4 wallet with a phone number; F2 imports
an existing key instead."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from cbdc.errors import CbdcError
from wallet_tui.client import WalletSession, as_sentence

if TYPE_CHECKING:
    from wallet_tui.app import WalletApp


class UnlockScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Unlock / create"),
        Binding("f2", "import_key", "Import a key"),
    ]

    def __init__(self, profile: str | None = None) -> None:
        super().__init__()
        self.initial_profile = profile

    @property
    def wallet_app(self) -> WalletApp:
        return cast("WalletApp", self.app)

    def compose(self) -> ComposeResult:
        known = self.wallet_app.keystore.profiles()
        name = self.initial_profile or (known[0] if known else "")
        yield Header(show_clock=False)
        with VerticalScroll(id="unlock-form", classes="form"):
            yield Static("Unlock your wallet, or create a new one (class 4: phone number "
                         "only).", id="unlock-intro")
            yield Static(f"Profiles here: {', '.join(known)}" if known
                         else "No profiles yet.", id="unlock-profiles")
            yield Label("Profile")
            yield Input(value=name, placeholder="e.g. alice", id="profile")
            yield Label("Passphrase (8 characters or more)")
            yield Input(password=True, id="passphrase")
            yield Label("Phone number (new wallet only)", id="phone-label")
            yield Input(placeholder="e.g. 13800138000", id="phone")
            yield Button("Unlock", id="submit", variant="primary")
            yield Static("", id="unlock-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self._show_mode()
        field = "#passphrase" if self.query_one("#profile", Input).value else "#profile"
        self.query_one(field, Input).focus()

    def _is_new(self) -> bool:
        name = self.query_one("#profile", Input).value.strip()
        try:
            return not self.wallet_app.keystore.exists(name)
        except CbdcError:
            return True

    def _show_mode(self) -> None:
        new = self._is_new()
        self.query_one("#submit", Button).label = "Create wallet" if new else "Unlock"
        self.query_one("#phone", Input).display = new
        self.query_one("#phone-label", Label).display = new

    @on(Input.Changed, "#profile")
    def profile_changed(self) -> None:
        self._show_mode()

    @on(Input.Submitted)
    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        name = self.query_one("#profile", Input).value.strip()
        passphrase = self.query_one("#passphrase", Input).value
        phone = self.query_one("#phone", Input).value.strip()
        if not name or not passphrase:
            self._status("Enter a profile name and its passphrase.", error=True)
            return
        if self._is_new() and not phone:
            self._status("A new wallet needs a phone number.", error=True)
            self.query_one("#phone", Input).focus()
            return
        self._status("Working…")
        self.sign_in(name, passphrase, phone if self._is_new() else None)

    def action_import_key(self) -> None:
        from wallet_tui.screens.import_key import ImportScreen

        self.app.push_screen(ImportScreen())

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#unlock-status", Static)
        status.update(as_sentence(text) if error else text)
        status.set_class(error, "error")

    @work(exclusive=True)
    async def sign_in(self, name: str, passphrase: str, phone: str | None) -> None:
        app = self.wallet_app
        try:
            if phone is None:
                stored_bank = app.keystore.bank_url(name)
                if stored_bank:
                    app.use_bank(stored_bank)
                session = await WalletSession.unlock(app.keystore, app.client, name=name,
                                                     passphrase=passphrase)
            else:
                session = await WalletSession.onboard(app.keystore, app.client, name=name,
                                                      passphrase=passphrase, phone=phone)
        except CbdcError as exc:
            self._status(str(exc), error=True)
            return
        app.signed_in(session)
