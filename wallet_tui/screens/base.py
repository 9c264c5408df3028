"""What every screen of an unlocked wallet shares: the app, the session, and a hook the
app calls when the wallet changed (a live event, or the bank is back)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen
from textual.widgets import Static

from cbdc.errors import CbdcError
from wallet_tui.client import as_sentence

if TYPE_CHECKING:
    from wallet_tui.app import WalletApp
    from wallet_tui.client import WalletSession


class WalletScreen(Screen[None]):
    @property
    def wallet_app(self) -> WalletApp:
        return cast("WalletApp", self.app)

    @property
    def session(self) -> WalletSession:
        return self.wallet_app.require_session()

    def wallet_changed(self) -> None:
        """The balance or history may have changed: reload what the screen shows."""

    def say(self, selector: str, text: str, *, error: bool = False) -> None:
        status = self.query_one(selector, Static)
        status.update(text)
        status.set_class(error, "error")

    def failed(self, selector: str, error: CbdcError, prefix: str = "") -> None:
        """Show a bank's refusal as its sentence; an unreachable bank also goes to the
        header."""
        self.wallet_app.bank_failed(error)
        self.say(selector, f"{prefix}{as_sentence(str(error))}", error=True)

    def answered(self) -> None:
        self.wallet_app.bank_answered()
