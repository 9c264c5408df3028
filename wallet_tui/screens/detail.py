"""One payment in full, and whether its receipts check out here, with the published keys.

Shown after a payment is sent (the result, with its receipt) and for a row of the
history. "verified" appears only when `wallet_tui.receipt_check` passed.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Header, Static

from cbdc.money import format_fen
from wallet_tui.receipt_check import judge
from wallet_tui.screens.base import WalletScreen


def when(timestamp_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp_ns / 1e9).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def entry_lines(entry: dict[str, Any]) -> list[str]:
    out = entry.get("direction") == "out"
    kind = str(entry.get("kind", "payment")).replace("_", " ")
    lines = [f"{kind.capitalize()} {'out' if out else 'in'}: "
             f"[b]{'-' if out else '+'}{format_fen(int(entry['amount']))}[/b]"]
    if entry.get("counterparty"):
        lines.append(f"{'To' if out else 'From'} {entry['counterparty']}")
    lines.append(f"Memo: {entry['memo']}" if entry.get("memo") else "No memo")
    lines.append(f"Status: {entry.get('status', '')}")
    if entry.get("timestamp"):
        lines.append(f"Time: {when(int(entry['timestamp']))}")
    lines.append(f"Id: {entry['id']}")
    return lines


class DetailScreen(WalletScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("v", "verify", "Check receipt again"),
    ]

    def __init__(self, entry: dict[str, Any], heading: str = "Payment") -> None:
        super().__init__()
        self.entry = entry
        self.heading = heading

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="detail"):
            yield Static(f"[b]{self.heading}[/b]", classes="heading")
            yield Static("\n".join(entry_lines(self.entry)), id="detail-entry")
            yield Static("Receipt", classes="heading")
            yield Static("Checking the receipt…", id="detail-receipt")
        yield Footer()

    def on_mount(self) -> None:
        self.action_verify()

    def action_verify(self) -> None:
        self.say("#detail-receipt", "Checking the receipt…")
        self.verify()

    @work(exclusive=True)
    async def verify(self) -> None:
        session = self.session
        receipts = await self.ask("#detail-receipt", session.client.receipts(
            session.address, str(self.entry["id"])), "No receipt yet: ")
        pinned = await self.ask("#detail-receipt", session.ledger_keys()) \
            if receipts is not None else None
        if receipts is None or pinned is None:
            return
        keys, warnings = pinned
        check = judge(receipts, keys, str(self.entry["id"]), int(self.entry["amount"]))
        good = check.bank_verified and check.central_verified is not False
        self.say("#detail-receipt", "\n".join([*check.lines, *warnings]), error=not good)
