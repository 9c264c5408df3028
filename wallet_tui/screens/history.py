"""Every payment, top-up and redemption of the wallet, newest first."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from cbdc.errors import CbdcError
from cbdc.money import format_fen

if TYPE_CHECKING:
    from wallet_tui.app import WalletApp

COLUMNS = ("When", "Amount", "Kind", "Counterparty", "Memo", "Status")


def when(timestamp_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp_ns / 1e9).astimezone()
    return moment.strftime("%m-%d %H:%M")


class HistoryScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back"),
                Binding("u", "refresh", "Update")]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
        yield Static("", id="history-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load()

    @work(exclusive=True)
    async def load(self) -> None:
        session = cast("WalletApp", self.app).require_session()
        try:
            entries = await session.history(200)
        except CbdcError as exc:
            self.query_one("#history-status", Static).update(str(exc))
            return
        self.show(entries)

    def show(self, entries: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for entry in reversed(entries):
            sign = "-" if entry.get("direction") == "out" else "+"
            table.add_row(when(int(entry["timestamp"])),
                          f"{sign}{format_fen(int(entry['amount']))}",
                          str(entry.get("kind", "")).replace("_", " "),
                          entry.get("counterparty") or "", entry.get("memo") or "",
                          entry.get("status", ""), key=str(entry["id"]))
        self.query_one("#history-status", Static).update(
            f"{len(entries)} entries" if entries else "No payments yet.")
        table.focus()
