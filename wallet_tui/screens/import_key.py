"""Import an existing wallet key (an unencrypted P-256 PEM file) into a new profile.

The key is checked by logging in with it before anything is stored: a key that does not
hold the address is refused, and the profile is sealed with the passphrase."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static

from cbdc.addresses import AddressError, parse_address
from cbdc.errors import CbdcError
from wallet_tui.client import WalletSession, as_sentence
from wallet_tui.formatting import bank_url_problem

if TYPE_CHECKING:
    from wallet_tui.app import WalletApp


class ImportScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "submit", "Import"),
    ]

    @property
    def wallet_app(self) -> WalletApp:
        return cast("WalletApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with VerticalScroll(id="import-form", classes="form"):
            yield Static("Import the key of a wallet you already hold; the bank checks it "
                         "by a login before it is stored.", id="import-intro")
            yield Static("", id="import-status", classes="status")
            yield Label("Bank URL (the wallet's bank)")
            yield Input(value=self.wallet_app.client.base_url, id="import-bank")
            yield Label("Key file (PEM)")
            yield Input(placeholder=".cbdc/keys/wallet-alice.pem", id="import-file")
            yield Label("Wallet address")
            yield Input(placeholder="BANKA-000000100001-23", id="import-address")
            yield Label("New profile name")
            yield Input(placeholder="alice", id="import-profile")
            yield Label("Passphrase to seal it with (8 characters or more)")
            yield Input(password=True, id="import-passphrase")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#import-file", Input).focus()

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#import-status", Static)
        status.update(as_sentence(text) if error else text)
        status.set_class(error, "error")

    @on(Input.Submitted)
    def action_submit(self) -> None:
        path = Path(self.query_one("#import-file", Input).value.strip()).expanduser()
        address = self.query_one("#import-address", Input).value
        name = self.query_one("#import-profile", Input).value.strip()
        passphrase = self.query_one("#import-passphrase", Input).value
        try:
            pem = path.read_bytes()
        except OSError as exc:
            self._status(f"Cannot read the key file {path}: {exc.strerror or exc}.",
                         error=True)
            return
        try:
            canonical = str(parse_address(address))
        except AddressError as exc:
            self._status(f"The wallet address: {exc}.", error=True)
            return
        if not name or not passphrase:
            self._status("Enter a profile name and a passphrase.", error=True)
            return
        bank = self.query_one("#import-bank", Input).value.strip()
        problem = bank_url_problem(bank)
        if problem is not None:
            self._status(problem, error=True)
            return
        self.wallet_app.use_bank(bank)
        self._status("Checking the key with the bank…")
        self.import_key(name, passphrase, pem, canonical)

    @work(exclusive=True)
    async def import_key(self, name: str, passphrase: str, pem: bytes, address: str) -> None:
        app = self.wallet_app
        try:
            session = await WalletSession.import_key(app.keystore, app.client, name=name,
                                                     passphrase=passphrase, pem=pem,
                                                     address=address)
        except CbdcError as exc:
            self._status(f"Not imported: {exc}", error=True)
            return
        app.signed_in(session)
