"""Every payment, top-up and redemption of the wallet, newest first, with filters; Enter
opens one with its receipt checked."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Input, Static

from cbdc.money import format_fen
from wallet_tui.screens.base import WalletScreen
from wallet_tui.screens.detail import DetailScreen

COLUMNS = ("When", "Amount", "Kind", "Counterparty", "Memo", "Status")
DIRECTIONS = ("both", "in", "out")
KINDS = ("all", "payment", "top_up", "redeem")
LOADED = 500


def when(timestamp_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp_ns / 1e9).astimezone()
    return moment.strftime("%m-%d %H:%M")


def matches(entry: dict[str, Any], kind: str, text: str) -> bool:
    """Does the entry pass the kind filter and contain `text` (address, memo, amount)?"""
    if kind != "all" and entry.get("kind") != kind:
        return False
    if not text:
        return True
    haystack = " ".join(str(entry.get(f) or "") for f in ("counterparty", "memo", "status"))
    haystack += " " + format_fen(int(entry["amount"]))
    return text.lower() in haystack.lower()


class HistoryScreen(WalletScreen):
    AUTO_FOCUS = "#history"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("d", "direction", "In/out"),
        Binding("k", "kind", "Kind"),
        Binding("slash", "search", "Search"),
        Binding("u", "refresh", "Update"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.direction = "both"
        self.kind = "all"
        self.entries: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("", id="history-filters")
        yield Input(placeholder="search address, memo or amount (Enter)", id="search")
        yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
        yield Static("", id="history-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.query_one("#search", Input).display = False
        self._show_filters()
        self.action_refresh()

    def wallet_changed(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load()

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            search.value = ""
            search.display = False
            self.query_one(DataTable).focus()
            return
        self.app.pop_screen()

    def action_direction(self) -> None:
        self.direction = DIRECTIONS[(DIRECTIONS.index(self.direction) + 1) % len(DIRECTIONS)]
        self._show_filters()
        self.action_refresh()

    def action_kind(self) -> None:
        self.kind = KINDS[(KINDS.index(self.kind) + 1) % len(KINDS)]
        self._show_filters()
        self.show()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    @on(Input.Changed, "#search")
    def search_changed(self) -> None:
        self.show()

    @on(Input.Submitted, "#search")
    def search_done(self) -> None:
        self.query_one(DataTable).focus()

    def _show_filters(self) -> None:
        direction = {"both": "in and out", "in": "in only", "out": "out only"}[self.direction]
        kind = "all kinds" if self.kind == "all" else self.kind.replace("_", " ")
        self.query_one("#history-filters", Static).update(
            f"Showing {direction}, {kind}   (d: in/out, k: kind, /: search, Enter: "
            "details)")

    @work(exclusive=True)
    async def load(self) -> None:
        entries = await self.ask("#history-status",
                                 self.session.history(LOADED, self.direction))
        if entries is not None:
            self.entries = entries
            self.show()

    def show(self) -> None:
        table = self.query_one(DataTable)
        text = self.query_one("#search", Input).value.strip()
        table.clear()
        shown = [e for e in reversed(self.entries) if matches(e, self.kind, text)]
        for entry in shown:
            sign = "-" if entry.get("direction") == "out" else "+"
            table.add_row(when(int(entry["timestamp"])),
                          f"{sign}{format_fen(int(entry['amount']))}",
                          str(entry.get("kind", "")).replace("_", " "),
                          entry.get("counterparty") or "", entry.get("memo") or "",
                          entry.get("status", ""), key=str(entry["id"]))
        total = len(self.entries)
        self.say("#history-status", f"{len(shown)} of {total} entries" if total
                 else "No payments yet.")
        if not self.query_one("#search", Input).display:
            table.focus()

    @on(DataTable.RowSelected)
    def open_entry(self, event: DataTable.RowSelected) -> None:
        wanted = event.row_key.value
        for entry in self.entries:
            if str(entry["id"]) == wanted:
                self.app.push_screen(DetailScreen(entry))
                return

