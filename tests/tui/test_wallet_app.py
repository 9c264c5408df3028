"""The terminal wallet driven key by key against a real network of banks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from tests.integration.bank_harness import Network
from wallet_tui.app import WalletApp
from wallet_tui.keystore import Keystore
from wallet_tui.screens.home import HomeScreen
from wallet_tui.screens.send import SendScreen

pytestmark = pytest.mark.tui

PASS = "correct horse battery"
SIZE = (80, 24)


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str,
                seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def text_of(app: WalletApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    pilot.app.screen.query_one(selector, Input).focus()
    await pilot.pause()
    await pilot.press(*text)


async def unlock(pilot: Pilot[None], app: WalletApp) -> None:
    await type_into(pilot, "#passphrase", PASS)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, HomeScreen)
                and text_of(app, "#balance").startswith("Balance"), "the home screen")


async def test_onboarding_creates_a_class_4_wallet(network: Network, tmp_path: Path) -> None:
    app = WalletApp(network.banks["BANKA"].url, keystore_dir=tmp_path / "keys")
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "#profile", "alice")
        await type_into(pilot, "#phone", "13800138000")
        await unlock(pilot, app)
        assert text_of(app, "#balance") == "Balance  ¥0.00"
        assert text_of(app, "#wallet-class").startswith("Class 4 wallet (active)")
        assert "No payments yet." in text_of(app, "#recent")
        address = app.require_session().address
    assert address.startswith("BANKA-")
    assert Keystore(tmp_path / "keys").unlock("alice", PASS).address == address


async def test_a_wrong_passphrase_is_told(network: Network, tmp_path: Path) -> None:
    wallet = await network.wallet("BANKA")
    Keystore(tmp_path).import_key("alice", PASS, wallet.key.to_pem(),
                                  bank_url=network.banks["BANKA"].url, address=wallet.address)
    app = WalletApp(network.banks["BANKA"].url, keystore_dir=tmp_path, profile="alice")
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "#passphrase", "wrong passphrase")
        await pilot.press("enter")
        await until(pilot, lambda: "passphrase is wrong" in text_of(app, "#unlock-status"),
                    "the unlock error")


async def test_a_payment_to_another_bank_shows_on_home_and_in_history(
        network: Network, tmp_path: Path) -> None:
    payer = await network.wallet("BANKA", balance=50_000)
    payee = await network.wallet("BANKB", phone="13900139000")
    Keystore(tmp_path).import_key("alice", PASS, payer.key.to_pem(),
                                  bank_url=network.banks["BANKA"].url, address=payer.address)
    app = WalletApp(network.banks["BANKA"].url, keystore_dir=tmp_path, profile="alice")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        assert text_of(app, "#balance") == "Balance  ¥500.00"
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SendScreen), "the send screen")
        await type_into(pilot, "#payee", payee.address.lower())
        assert text_of(app, "#payee-error") == ""
        await type_into(pilot, "#amount", "123.45")
        await type_into(pilot, "#memo", "Tea")
        await pilot.press("enter")
        await until(pilot, lambda: "You can pay up to ¥500.00" in str(
            app.screen.query_one("#confirm-text", Static).render())
            if app.screen.query("#confirm-text") else False, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: text_of(app, "#send-result").startswith("Sent ¥123.45"),
                    "the payment result")
        await pilot.press("escape")
        await until(pilot, lambda: text_of(app, "#balance") == "Balance  ¥376.55",
                    "the new balance")
        assert f"-¥123.45  payment to {payee.address}" in text_of(app, "#recent")
        await pilot.press("h")
        await until(pilot, lambda: bool(app.screen.query(DataTable))
                    and app.screen.query_one(DataTable).row_count == 2, "the history")
        rows = [app.screen.query_one(DataTable).get_row_at(i) for i in range(2)]
        assert rows[0][1:] == ["-¥123.45", "payment", payee.address, "Tea", "settled"]
        assert rows[1][1:3] == ["+¥500.00", "top up"]
    assert (await payee.summary())["balance"] == 12_345
    assert Keystore(tmp_path).unlock("alice", PASS).last_sequence == 1


async def test_a_limit_error_shows_the_banks_sentence(network: Network, tmp_path: Path
                                                      ) -> None:
    payer = await network.wallet("BANKA", balance=100_000)
    payee = await network.wallet("BANKA", phone="13900139000")
    Keystore(tmp_path).import_key("alice", PASS, payer.key.to_pem(),
                                  bank_url=network.banks["BANKA"].url, address=payer.address)
    app = WalletApp(network.banks["BANKA"].url, keystore_dir=tmp_path, profile="alice")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SendScreen), "the send screen")
        await type_into(pilot, "#payee", payee.address)
        await type_into(pilot, "#amount", "600")
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.screen.query("#confirm-text")), "the confirmation")
        assert "the bank will refuse it" in str(
            app.screen.query_one("#confirm-text", Static).render())
        await pilot.press("y")
        await until(pilot, lambda: text_of(app, "#send-result").startswith("Not sent"),
                    "the refusal")
        assert text_of(app, "#send-result") == (
            "Not sent: Over the single-payment limit of ¥500.00 for a class 4 wallet.")


async def test_a_mistyped_address_is_flagged_as_it_is_typed(tmp_path: Path) -> None:
    app = WalletApp("http://127.0.0.1:9", keystore_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(SendScreen("BANKA-000000001234-96"))
        await type_into(pilot, "#payee", "BANKB-00000000")
        assert text_of(app, "#payee-error") == ""
        await type_into(pilot, "#payee", "0001-00")
        assert "check digits do not match" in text_of(app, "#payee-error")
        await type_into(pilot, "#amount", "1.234")
        assert "at most two decimals" in text_of(app, "#amount-error")
