"""The terminal wallet: a Textual app that holds the key and signs every payment itself.

After a profile is unlocked the app follows the wallet's live events (a worker on
`GET /v1/wallets/{address}/events`): a payment that arrives is announced at once and the
screen on top reloads. When the bank cannot be reached the header says so, and the worker
keeps reconnecting (1 s, doubling to 10 s); once it is back the screen reloads, since
events sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive

from cbdc.errors import CbdcError
from cbdc.money import format_fen
from wallet_tui.client import BankClient, BankError, BankUnreachable, WalletSession
from wallet_tui.keystore import Keystore
from wallet_tui.screens.base import WalletScreen
from wallet_tui.screens.unlock import UnlockScreen

RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 10.0


class WalletApp(App[None]):
    """Unlock or create a profile, then home; every other screen is reached from there."""

    CSS_PATH = "wallet.tcss"
    TITLE = "e-CNY wallet"
    ENABLE_COMMAND_PALETTE = False  # every action has a key in the footer
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    online: reactive[bool] = reactive(True)
    live_ok: reactive[bool] = reactive(True)  # the bank's live events flow

    def __init__(self, bank_url: str, *, keystore_dir: Path | str | None = None,
                 profile: str | None = None, live: bool = True) -> None:
        super().__init__()
        self.keystore = Keystore(keystore_dir)
        self.client = BankClient(bank_url)
        self.profile_name = profile
        self.session: WalletSession | None = None
        self.live = live  # follow live events (snapshot tests turn it off)

    def on_mount(self) -> None:
        self.push_screen(UnlockScreen(self.profile_name))

    async def on_unmount(self) -> None:
        await self.client.close()

    # ------------------------------------------------------------- session
    def signed_in(self, session: WalletSession) -> None:
        from wallet_tui.screens.home import HomeScreen

        self.session = session
        self.profile_name = session.profile.name
        self.online = True
        self.live_ok = True
        self._show_connection()
        self.switch_screen(HomeScreen())
        if self.live:
            self.follow_events()

    def lock(self, profile: str | None = None, bank_url: str | None = None) -> None:
        """Forget the unlocked key and go back to the unlock screen (switching profile
        or bank)."""
        self.workers.cancel_group(self, "live")
        self.session = None
        self.client.token = ""
        if bank_url:
            self.use_bank(bank_url)
        self.profile_name = profile
        self.sub_title = ""
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(UnlockScreen(profile))

    def use_bank(self, bank_url: str) -> None:
        """Talk to the bank at `bank_url` from now on (the unlock screen logs in there)."""
        if bank_url.rstrip("/") != self.client.base_url:
            old, self.client = self.client, BankClient(bank_url)
            self.run_worker(old.close(), exit_on_error=False)

    def require_session(self) -> WalletSession:
        if self.session is None:
            raise RuntimeError("no wallet is unlocked")
        return self.session

    # ---------------------------------------------------------- connection
    def watch_online(self) -> None:
        self._show_connection()

    def watch_live_ok(self) -> None:
        self._show_connection()

    def _show_connection(self) -> None:
        if self.session is None:
            return
        if not self.online:
            state = "OFFLINE: cannot reach the bank, retrying"
        elif not self.live_ok:
            state = "online, live updates paused (u reloads)"
        else:
            state = "online"
        self.sub_title = f"{self.session.address} · {state}"

    def bank_failed(self, error: CbdcError) -> None:
        """A screen's call failed; if the bank is unreachable, say so in the header."""
        if isinstance(error, BankUnreachable):
            self.online = False

    def bank_answered(self) -> None:
        if not self.online:
            self.online = True
            self._wallet_changed()

    @work(exclusive=True, group="live")
    async def follow_events(self) -> None:
        delay = RECONNECT_FIRST_S
        statuses = 0
        while self.session is not None:
            session = self.session
            try:
                async for name, data in session.client.events(session.address):
                    delay = RECONNECT_FIRST_S
                    if name == "status":
                        was_ok, self.live_ok = self.live_ok, bool(data.get("live"))
                        statuses += 1
                        if not self.online:
                            self.bank_answered()  # back: reloads what the screens show
                        elif self.live_ok and (statuses > 1 or not was_ok):
                            self._wallet_changed()  # events may have been missed meanwhile
                    elif name == "payment":
                        self.payment_event(data)
            except BankUnreachable:
                self.online = False
            except BankError as exc:
                self.live_ok = False  # e.g. 503: the bank's live events are away
                if exc.status == 401:  # the session expired: log in again with the key
                    try:
                        await session.relogin()
                        continue
                    except BankUnreachable:
                        self.online = False
                    except BankError:
                        pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def payment_event(self, event: dict[str, object]) -> None:
        amount = event.get("amount")
        amount_text = format_fen(amount) if isinstance(amount, int) else "a payment"
        if event.get("type") == "payment_in":
            memo = f' "{event["memo"]}"' if event.get("memo") else ""
            self.notify(f"Received {amount_text} from {event.get('payer')}{memo}",
                        title="Payment in")
        self._wallet_changed()

    def _wallet_changed(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, WalletScreen):
                screen.wallet_changed()
