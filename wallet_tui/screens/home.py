"""Balance, class, how much of today's and this year's limit is used, recent activity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ProgressBar, Static

from cbdc.errors import CbdcError
from cbdc.money import format_fen

if TYPE_CHECKING:
    from wallet_tui.app import WalletApp

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


class HomeScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "send", "Send"),
        Binding("r", "receive", "Receive"),
        Binding("h", "history", "History"),
        Binding("u", "refresh", "Update"),
    ]

    @property
    def wallet_app(self) -> WalletApp:
        return cast("WalletApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="home"):
            yield Static("", id="balance")
            yield Static("", id="wallet-class")
            with Horizontal(classes="limit-row"):
                yield Label("Today     ", classes="limit-label")
                yield ProgressBar(id="daily-bar", show_eta=False, show_percentage=True)
                yield Static("", id="daily-text", classes="limit-text")
            with Horizontal(classes="limit-row"):
                yield Label("This year ", classes="limit-label")
                yield ProgressBar(id="yearly-bar", show_eta=False, show_percentage=True)
                yield Static("", id="yearly-text", classes="limit-text")
            yield Label("Recent activity", classes="heading")
            yield Static("Loading…", id="recent")
            yield Static("", id="home-status", classes="status")
        yield Footer()

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load()

    @work(exclusive=True)
    async def load(self) -> None:
        session = self.wallet_app.require_session()
        try:
            summary = await session.summary()
            entries = await session.history(RECENT)
        except CbdcError as exc:
            self.query_one("#home-status", Static).update(str(exc))
            return
        self.show(summary, entries)

    def show(self, summary: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        limits = summary["limits"]
        self.query_one("#balance", Static).update(
            f"Balance  {format_fen(summary['balance'])}")
        self.query_one("#wallet-class", Static).update(
            f"Class {summary['class']} wallet ({summary['status']}), "
            f"cap {format_fen(limits['balance_cap'])}, "
            f"single payment up to {format_fen(limits['single'])}")
        for period in ("daily", "yearly"):
            usage = limits[period]
            bar = self.query_one(f"#{period}-bar", ProgressBar)
            bar.update(total=max(1, usage["limit"]), progress=usage["used"])
            self.query_one(f"#{period}-text", Static).update(
                f"{format_fen(usage['used'])} of {format_fen(usage['limit'])}")
        lines = [describe_entry(e) for e in reversed(entries[-RECENT:])]
        self.query_one("#recent", Static).update("\n".join(lines) or "No payments yet.")
        self.query_one("#home-status", Static).update("")

    def action_send(self) -> None:
        from wallet_tui.screens.send import SendScreen

        self.app.push_screen(SendScreen(self.wallet_app.require_session().address))

    def action_receive(self) -> None:
        from wallet_tui.screens.receive import ReceiveScreen

        self.app.push_screen(ReceiveScreen(self.wallet_app.require_session().address))

    def action_history(self) -> None:
        from wallet_tui.screens.history import HistoryScreen

        self.app.push_screen(HistoryScreen())
