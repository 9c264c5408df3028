"""What every screen of an unlocked wallet shares: the app, the session, and a hook the
app calls when the wallet changed (a live event, or the bank is back)."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, TypeVar, cast

from textual.screen import Screen
from textual.widgets import Static

from cbdc.errors import CbdcError
from wallet_tui.client import BankError, as_sentence
from wallet_tui.formatting import humane_times

if TYPE_CHECKING:
    from wallet_tui.app import WalletApp
    from wallet_tui.client import WalletSession


T = TypeVar("T")


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

    def failed(self, selector: str, error: CbdcError, prefix: str = "",
               advice: Mapping[str, str] | None = None) -> None:
        """Show a bank's refusal as its sentence, then what to do next when `advice`
        has a line for its code; an unreachable bank also goes to the header."""
        self.wallet_app.bank_failed(error)
        text = f"{prefix}{as_sentence(humane_times(str(error)))}"
        code = error.code if isinstance(error, BankError) else None
        if advice and code is not None and code in advice:
            text += " " + advice[code]
        self.say(selector, text, error=True)

    def answered(self) -> None:
        self.wallet_app.bank_answered()

    async def ask(self, selector: str, call: Awaitable[T], prefix: str = "",
                  advice: Mapping[str, str] | None = None) -> T | None:
        """The bank's answer to `call`, or None after its refusal was shown in
        `selector` (see `failed`)."""
        try:
            result = await call
        except CbdcError as exc:
            self.failed(selector, exc, prefix, advice)
            return None
        self.answered()
        return result
