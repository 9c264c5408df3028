"""SVG snapshots of every screen of the wallet.

Screens that need no bank are taken with `snap_compare`. The others are taken from a real
network on a fixed clock (`fixed_network`), a fresh database each (so wallet numbers,
payment ids and deposit numbers come out the same), in the current working folder (so the
keystore path shown is relative), and without live events.

Regenerate after a deliberate change with
`pytest tests/tui/test_snapshots.py --snapshot-update` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_textual_snapshot import SVGImageExtension
from syrupy import SnapshotAssertion
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from tests.integration.bank_harness import Network
from tests.tui.pilot_helpers import PASS, SIZE, text_of, type_into, unlock, until
from wallet_tui.app import WalletApp
from wallet_tui.keystore import Keystore
from wallet_tui.screens.confirm import ConfirmPayment
from wallet_tui.screens.detail import DetailScreen
from wallet_tui.screens.home import HomeScreen
from wallet_tui.screens.send import SendScreen

pytestmark = pytest.mark.tui

ADDRESS = "BANKA-000000001234-96"
NO_BANK = "http://127.0.0.1:9"


def test_onboarding_screen(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(WalletApp(NO_BANK, keystore_dir=tmp_path), terminal_size=SIZE)


def test_unlock_screen_lists_the_profiles(snap_compare: Any, tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.create("alice", PASS, bank_url=NO_BANK, address=ADDRESS)
    store.create("bob", PASS, bank_url=NO_BANK, address="BANKA-000000004321-38")

    async def wrong(pilot: Pilot[None]) -> None:
        await type_into(pilot, "#passphrase", "not it at all")
        await pilot.press("enter")
        await until(pilot, lambda: "passphrase is wrong" in str(
            pilot.app.screen.query_one("#unlock-status").render()), "the error")

    assert snap_compare(WalletApp(NO_BANK, keystore_dir=tmp_path), terminal_size=SIZE,
                        run_before=wrong)


def test_import_screen(snap_compare: Any, tmp_path: Path) -> None:
    async def show(pilot: Pilot[None]) -> None:
        await pilot.press("f2")
        await type_into(pilot, "#import-file", "missing.pem")
        await type_into(pilot, "#import-address", ADDRESS)
        await type_into(pilot, "#import-profile", "carol")
        await type_into(pilot, "#import-passphrase", PASS)
        await pilot.press("enter")

    assert snap_compare(WalletApp(NO_BANK, keystore_dir=tmp_path), terminal_size=SIZE,
                        run_before=show)


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


async def test_screens_of_an_unlocked_wallet(
        fixed_network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        snapshot: SnapshotAssertion) -> None:
    svg = snapshot.use_extension(SVGImageExtension)
    network = fixed_network
    alice = await network.wallet("BANKA", balance=50_000)
    bob = await network.wallet("BANKB", phone="13900139000")
    monkeypatch.chdir(tmp_path)
    url = network.banks["BANKA"].url
    Keystore("keys").import_key("alice", PASS, alice.key.to_pem(), bank_url=url,
                                address=alice.address)
    app = WalletApp(url, keystore_dir="keys", profile="alice", live=False)

    async def shot(pilot: Pilot[None], name: str) -> None:
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        assert svg(name=name) == app.export_screenshot()

    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.press("s")
        await type_into(pilot, "#payee", bob.address)
        await type_into(pilot, "#amount", "123.45")
        await type_into(pilot, "#memo", "Tea")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPayment), "the confirm")
        await shot(pilot, "confirm")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen)
                    and "verified" in text_of(app, "#detail-receipt"), "the receipt")
        await shot(pilot, "sent-with-receipt")
        await pilot.press("escape", "escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen)
                    and text_of(app, "#balance") == "Balance  ¥376.55", "home")
        await shot(pilot, "home")
        await pilot.press("h")
        await until(pilot, lambda: bool(app.screen.query(DataTable))
                    and app.screen.query_one(DataTable).row_count == 2, "the history")
        await shot(pilot, "history")
        await pilot.press("escape", "r")
        await until(pilot, lambda: bool(app.screen.query("#qr")), "receive")
        await shot(pilot, "receive")
        await pilot.press("escape", "t")
        await until(pilot, lambda: "Deposit account" in text_of(app, "#money-balances"),
                    "top-up")
        await shot(pilot, "top-up-and-redeem")
        await pilot.press("escape", "c")
        await until(pilot, lambda: text_of(app, "#upgrade-current").startswith("Now class"),
                    "upgrade")
        await shot(pilot, "upgrade-class")
        await pilot.press("escape", "p")
        await until(pilot, lambda: bool(app.screen.query("#bank-url")), "settings")
        app.screen.query_one("#bank-url", Input).value = "http://bank-b.example:8202"
        await shot(pilot, "settings")
