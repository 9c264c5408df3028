"""Confirm a payment, seeing what the wallet's limits allow right now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from cbdc.money import format_fen
from wallet_tui.formatting import reset_time


@dataclass(frozen=True, slots=True)
class PaymentDraft:
    payee: str
    amount: int
    memo: str = ""


def allowance(summary: dict[str, Any]) -> tuple[int, str]:
    """The most this wallet may pay now, and which limit sets it."""
    limits = summary["limits"]
    bounds = [
        (int(summary["available"]), "your balance"),
        (int(limits["single"]), "the single-payment limit"),
        (int(limits["daily"]["left"]),
         f"today's limit, which resets {reset_time(limits['daily']['resets_at'])}"),
        (int(limits["yearly"]["left"]), "this year's limit"),
    ]
    return min(bounds, key=lambda bound: bound[0])


class ConfirmPayment(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Send"),
        Binding("n", "answer(False)", "Cancel"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, draft: PaymentDraft, summary: dict[str, Any]) -> None:
        super().__init__()
        self.draft = draft
        self.summary = summary

    def compose(self) -> ComposeResult:
        most, reason = allowance(self.summary)
        limits = self.summary["limits"]
        lines = [
            f"Pay [b]{format_fen(self.draft.amount)}[/b] to {self.draft.payee}",
            f"Memo: {self.draft.memo}" if self.draft.memo else "No memo",
            "",
            f"Balance {format_fen(self.summary['available'])}; "
            f"single payment up to {format_fen(limits['single'])}",
            f"Left today {format_fen(limits['daily']['left'])} (resets "
            f"{reset_time(limits['daily']['resets_at'])}), "
            f"this year {format_fen(limits['yearly']['left'])}",
            f"You can pay up to {format_fen(max(0, most))} now ({reason}).",
        ]
        if self.draft.amount > most:
            lines.append("[b]This payment is over that: the bank will refuse it.[/b]")
        with Vertical(id="confirm"):
            yield Static("\n".join(lines), id="confirm-text")
            with Horizontal(id="confirm-buttons"):
                yield Button("Send (y)", id="yes", variant="primary")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
