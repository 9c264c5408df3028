"""The terminal wallet: a Textual app that holds the key and signs every payment itself."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from wallet_tui.client import BankClient, WalletSession
from wallet_tui.keystore import Keystore
from wallet_tui.screens.unlock import UnlockScreen


class WalletApp(App[None]):
    """Unlock or create a profile, then home; send, receive and history from there."""

    CSS_PATH = "wallet.tcss"
    TITLE = "e-CNY wallet"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(self, bank_url: str, *, keystore_dir: Path | str | None = None,
                 profile: str | None = None) -> None:
        super().__init__()
        self.keystore = Keystore(keystore_dir)
        self.client = BankClient(bank_url)
        self.profile_name = profile
        self.session: WalletSession | None = None

    def on_mount(self) -> None:
        self.push_screen(UnlockScreen(self.profile_name))

    async def on_unmount(self) -> None:
        await self.client.close()

    def signed_in(self, session: WalletSession) -> None:
        from wallet_tui.screens.home import HomeScreen

        self.session = session
        self.sub_title = session.address
        self.switch_screen(HomeScreen())

    def require_session(self) -> WalletSession:
        if self.session is None:
            raise RuntimeError("no wallet is unlocked")
        return self.session
