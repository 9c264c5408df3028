"""SVG snapshots of the screens that need no bank: deterministic by construction.

Regenerate after a deliberate change with
`pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from wallet_tui.app import WalletApp
from wallet_tui.screens.receive import ReceiveScreen
from wallet_tui.screens.send import SendScreen

pytestmark = pytest.mark.tui

ADDRESS = "BANKA-000000001234-96"
SIZE = (80, 24)
NO_BANK = "http://127.0.0.1:9"


def test_onboarding_screen(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(WalletApp(NO_BANK, keystore_dir=tmp_path), terminal_size=SIZE)


def test_send_form_with_a_mistyped_address(snap_compare: Any, tmp_path: Path) -> None:
    async def fill(pilot: Pilot[None]) -> None:
        await pilot.app.push_screen(SendScreen(ADDRESS))
        screen = pilot.app.screen
        screen.query_one("#payee", Input).value = "BANKB-000000000001-00"
        screen.query_one("#amount", Input).value = "12.345"
        screen.query_one("#memo", Input).value = "Tea"
        await pilot.pause()

    assert snap_compare(WalletApp(NO_BANK, keystore_dir=tmp_path), terminal_size=SIZE,
                        run_before=fill)


def test_receive_screen(snap_compare: Any, tmp_path: Path) -> None:
    async def show(pilot: Pilot[None]) -> None:
        await pilot.app.push_screen(ReceiveScreen(ADDRESS))
        await pilot.pause()

    assert snap_compare(WalletApp(NO_BANK, keystore_dir=tmp_path), terminal_size=SIZE,
                        run_before=show)
