"""Balance, class, how much of today's and this year's limit is used, recent activity."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Label, ProgressBar, Static

from cbdc.money import format_fen
from wallet_tui.formatting import reset_time
from wallet_tui.screens.base import WalletScreen

RECENT = 5


def describe_entry(entry: dict[str, Any]) -> str:
    """One line of activity: '+¥12.00  payment from BANKB-…  "Tea"'."""
    sign = "-" if entry.get("direction") == "out" else "+"
    kind = str(entry.get("kind", "other")).replace("_", " ")
    other = entry.get("counterparty")
    where = f" {'to' if sign == '-' else 'from'} {other}" if other else ""
    memo = f'  "{entry["memo"]}"' if entry.get("memo") else ""
    status = "" if entry.get("status") == "settled" else f" ({entry.get('status')})"
    return f"{sign}{format_fen(int(entry['amount']))}  {kind}{where}{memo}{status}"


def usage_text(usage: dict[str, Any]) -> str:
    return f"{format_fen(usage['used'])} of {format_fen(usage['limit'])}"


def left_text(limits: dict[str, Any]) -> str:
    daily, yearly = limits["daily"], limits["yearly"]
    return (f"Left to pay: {format_fen(daily['left'])} today (resets "
            f"{reset_time(daily['resets_at'])}), {format_fen(yearly['left'])} this year")


class HomeScreen(WalletScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "send", "Send"),
        Binding("r", "receive", "Receive"),
        Binding("h", "history", "History"),
        Binding("t", "money", "Top up"),
        Binding("c", "upgrade", "Class"),
        Binding("p", "settings", "Profile"),
        Binding("u", "refresh", "Update"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="home"):
            yield Static("", id="balance")
            yield Static("", id="wallet-class")
            yield Static("", id="deposit")
            with Horizontal(classes="limit-row"):
                yield Label("Today", classes="limit-label")
                yield ProgressBar(id="daily-bar", show_eta=False, show_percentage=True)
                yield Static("", id="daily-text", classes="limit-text")
            with Horizontal(classes="limit-row"):
                yield Label("This year", classes="limit-label")
                yield ProgressBar(id="yearly-bar", show_eta=False, show_percentage=True)
                yield Static("", id="yearly-text", classes="limit-text")
            yield Static("", id="limits-left")
            yield Label("Recent activity", classes="heading")
            yield Static("Loading…", id="recent")
            yield Static("", id="home-status", classes="status")
        yield Footer()

    def on_screen_resume(self) -> None:
        if self.wallet_app.session is not None:  # not while locking
            self.action_refresh()

    def wallet_changed(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load()

    @work(exclusive=True)
    async def load(self) -> None:
        session = self.session
        summary = await self.ask("#home-status", session.summary())
        entries = await self.ask("#home-status", session.history(RECENT)) \
            if summary is not None else None
        if summary is not None and entries is not None:
            self.show(summary, entries)

    def show(self, summary: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        limits = summary["limits"]
        self.query_one("#balance", Static).update(
            f"Balance  {format_fen(summary['balance'])}")
        self.query_one("#wallet-class", Static).update(
            f"Class {summary['class']} wallet ({summary['status']}), "
            f"cap {format_fen(limits['balance_cap'])}, "
            f"single payment up to {format_fen(limits['single'])}")
        deposit = summary.get("deposit_account")
        self.query_one("#deposit", Static).update(
            f"Deposit account {deposit['number']}: {format_fen(deposit['balance'])}"
            if deposit else "No deposit account linked (t to link one)")
        for period in ("daily", "yearly"):
            usage = limits[period]
            bar = self.query_one(f"#{period}-bar", ProgressBar)
            bar.update(total=max(1, usage["limit"]), progress=usage["used"])
            self.query_one(f"#{period}-text", Static).update(usage_text(usage))
        self.query_one("#limits-left", Static).update(left_text(limits))
        lines = [describe_entry(e) for e in reversed(entries[-RECENT:])]
        self.query_one("#recent", Static).update("\n".join(lines) or "No payments yet.")
        self.say("#home-status", "")

    def action_send(self) -> None:
        from wallet_tui.screens.send import SendScreen

        self.app.push_screen(SendScreen(self.session.address))

    def action_receive(self) -> None:
        from wallet_tui.screens.receive import ReceiveScreen

        self.app.push_screen(ReceiveScreen(self.session.address))

    def action_history(self) -> None:
        from wallet_tui.screens.history import HistoryScreen

        self.app.push_screen(HistoryScreen())

    def action_money(self) -> None:
        from wallet_tui.screens.money import MoneyScreen

        self.app.push_screen(MoneyScreen())

    def action_upgrade(self) -> None:
        from wallet_tui.screens.upgrade import UpgradeScreen

        self.app.push_screen(UpgradeScreen())

    def action_settings(self) -> None:
        from wallet_tui.screens.settings import SettingsScreen

        self.app.push_screen(SettingsScreen())
