"""The terminal wallet driven key by key against a real network of banks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from cbdc.signing import SigningKey
from tests.integration.bank_harness import Network
from tests.tui.pilot_helpers import (
    PASS,
    SIZE,
    app_for,
    cuttable_link,
    text_of,
    type_into,
    unlock,
    until,
)
from wallet_tui.app import WalletApp
from wallet_tui.client import BankClient, WalletSession
from wallet_tui.keystore import Keystore
from wallet_tui.screens.detail import DetailScreen
from wallet_tui.screens.history import HistoryScreen
from wallet_tui.screens.home import HomeScreen
from wallet_tui.screens.money import MoneyScreen
from wallet_tui.screens.receive import ReceiveScreen
from wallet_tui.screens.send import SendScreen
from wallet_tui.screens.settings import SettingsScreen
from wallet_tui.screens.upgrade import UpgradeScreen

pytestmark = pytest.mark.tui


async def open_send(pilot: Pilot[None], app: WalletApp) -> None:
    """Home -> the send screen, ready for typing (its first focus in the payee field)."""
    await pilot.press("s")
    await until(pilot, lambda: isinstance(app.screen, SendScreen)
                and app.focused is app.screen.query_one("#payee"), "the send screen")


async def send(pilot: Pilot[None], app: WalletApp, payee: str, amount: str, memo: str = ""
               ) -> None:
    """Home -> send -> confirm -> the result with its receipt."""
    await open_send(pilot, app)
    await type_into(pilot, "#payee", payee)
    assert text_of(app, "#payee-error") == ""
    await type_into(pilot, "#amount", amount)
    if memo:
        await type_into(pilot, "#memo", memo)
    await pilot.press("enter")
    await until(pilot, lambda: bool(text_of(app, "#confirm-text")), "the confirmation")
    await pilot.press("y")
    await until(pilot, lambda: isinstance(app.screen, DetailScreen), "the payment result")


async def history_rows(pilot: Pilot[None], app: WalletApp, count: int) -> list[list[str]]:
    await pilot.press("h")
    await until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                and app.screen.query_one(DataTable).row_count == count, "the history")
    table = app.screen.query_one(DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(count)]


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
    app = app_for(network, await network.wallet("BANKA"), tmp_path, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "#passphrase", "wrong passphrase")
        await pilot.press("enter")
        await until(pilot, lambda: "passphrase is wrong" in text_of(app, "#unlock-status"),
                    "the unlock error")


async def test_two_wallets_at_two_banks_pay_each_other(network: Network, tmp_path: Path
                                                       ) -> None:
    alice = await network.wallet("BANKA", balance=50_000)
    bob = await network.wallet("BANKB", phone="13900139000")
    alice_app = app_for(network, alice, tmp_path / "alice", "alice")
    bob_app = app_for(network, bob, tmp_path / "bob", "bob")
    async with alice_app.run_test(size=SIZE) as a, bob_app.run_test(size=SIZE) as b:
        await unlock(a, alice_app)
        await unlock(b, bob_app)
        assert text_of(alice_app, "#balance") == "Balance  ¥500.00"
        assert text_of(bob_app, "#balance") == "Balance  ¥0.00"

        await send(a, alice_app, bob.address.lower(), "123.45", "Tea")
        await until(a, lambda: "Central bank (published key): verified" in text_of(
            alice_app, "#detail-receipt"), "the verified receipt")
        assert text_of(alice_app, "#detail-receipt").startswith("BANKA ledger: verified")
        # Bob's wallet shows it at once, without a key pressed (live events).
        await until(b, lambda: text_of(bob_app, "#balance") == "Balance  ¥123.45",
                    "the payment arriving at bob's wallet")
        assert f"+¥123.45  payment from {alice.address}" in text_of(bob_app, "#recent")

        await send(b, bob_app, alice.address, "23.45", "Change")
        await b.press("escape", "escape")
        await until(b, lambda: text_of(bob_app, "#balance") == "Balance  ¥100.00",
                    "bob's new balance")
        await a.press("escape", "escape")
        await until(a, lambda: isinstance(alice_app.screen, HomeScreen)
                    and text_of(alice_app, "#balance") == "Balance  ¥400.00",
                    "alice's new balance, after bob paid back")

        bob_rows = await history_rows(b, bob_app, 2)
        assert [row[1:6] for row in bob_rows] == [
            ["-¥23.45", "payment", alice.address, "Change", "settled"],
            ["+¥123.45", "payment", alice.address, "Tea", "settled"]]
        alice_rows = await history_rows(a, alice_app, 3)
        assert [row[1:5] for row in alice_rows] == [
            ["+¥23.45", "payment", bob.address, "Change"],
            ["-¥123.45", "payment", bob.address, "Tea"],
            ["+¥500.00", "top up", "", ""]]
        # The detail of a history row checks its receipts again.
        await a.press("enter")
        await until(a, lambda: "Central bank (published key): verified" in text_of(
            alice_app, "#detail-receipt"), "the receipt of bob's payment to alice")
    assert (await alice.summary())["balance"] == 40_000
    assert (await bob.summary())["balance"] == 10_000
    assert Keystore(tmp_path / "alice").unlock("alice", PASS).last_sequence == 1


async def test_a_limit_error_shows_the_banks_sentence(network: Network, tmp_path: Path
                                                      ) -> None:
    payer = await network.wallet("BANKA", balance=100_000)
    payee = await network.wallet("BANKA", phone="13900139000")
    app = app_for(network, payer, tmp_path, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await open_send(pilot, app)
        await type_into(pilot, "#payee", payee.address)
        await type_into(pilot, "#amount", "600")
        await pilot.press("enter")
        await until(pilot, lambda: bool(text_of(app, "#confirm-text")), "the confirmation")
        confirm = text_of(app, "#confirm-text")
        assert "You can pay up to ¥500.00 now (the single-payment limit)." in confirm
        assert "the bank will refuse it" in confirm
        await pilot.press("y")
        await until(pilot, lambda: text_of(app, "#send-result").startswith("Not sent"),
                    "the refusal")
        assert text_of(app, "#send-result") == (
            "Not sent: Over the single-payment limit of ¥500.00 for a class 4 wallet. Pay "
            "less at once, or upgrade the wallet's class (c on the home screen) for a higher "
            "limit.")
        # Spend today's limit (paid back each time), then the bank names the daily limit
        # and when it resets.
        for number in (101, 102):  # the app signed with 1 and 2; another device, higher
            assert (await payer.pay(payee.address, 50_000, sequence=number)).status == 201
            assert (await payee.pay(payer.address, 50_000)).status == 201
        app.screen.query_one("#amount", Input).value = "1"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: bool(text_of(app, "#confirm-text")), "the confirmation")
        assert "You can pay up to ¥0.00 now (today's limit, which resets " in text_of(
            app, "#confirm-text")
        await pilot.press("y")
        await until(pilot, lambda: "daily" in text_of(app, "#send-result"), "the refusal")
        assert re.fullmatch(
            r"Not sent: Over the daily limit of ¥1,000\.00: ¥0\.00 left, resets at "
            r"\d{4}-\d\d-\d\d 00:00\. Pay at most what is left today, or upgrade the "
            r"class \(c\)\.", text_of(app, "#send-result"))
    assert (await payer.summary())["balance"] == 100_000


async def test_same_bank_payment_receipt_is_verified_with_the_banks_key(
        network: Network, tmp_path: Path) -> None:
    payer = await network.wallet("BANKA", balance=10_000)
    payee = await network.wallet("BANKA", phone="13900139000")
    app = app_for(network, payer, tmp_path, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await send(pilot, app, payee.address, "1.50")
        await until(pilot, lambda: "verified" in text_of(app, "#detail-receipt"),
                    "the receipt")
        bank_line, central_line = text_of(app, "#detail-receipt").splitlines()
        assert re.fullmatch(r"BANKA ledger: verified: block \d+, leaf \d+ of \d+", bank_line)
        assert central_line == ("Central bank: a payment within this bank, not settled at "
                                "the central bank.")


async def test_top_up_and_redeem_against_the_deposit_account(network: Network,
                                                             tmp_path: Path) -> None:
    wallet = await network.wallet("BANKA", balance=20_000)  # links a deposit account
    await network.banks["BANKA"].teller(
        "POST", f"/v1/teller/deposits/{wallet.deposit_number}/cash-in",
        {"id": "0b7f1e7e-0000-4000-8000-000000000001", "amount": 30_000})
    app = app_for(network, wallet, tmp_path, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.press("t")
        await until(pilot, lambda: "Deposit account" in text_of(app, "#money-balances"),
                    "the deposit account")
        assert isinstance(app.screen, MoneyScreen)
        assert text_of(app, "#money-balances").splitlines()[1].endswith(": ¥300.00")
        await type_into(pilot, "#money-amount", "100")
        await pilot.press("ctrl+t")
        await until(pilot, lambda: text_of(app, "#money-status") == "Topped up ¥100.00.",
                    "the top-up")
        assert text_of(app, "#money-balances").startswith("Wallet ¥300.00")
        await type_into(pilot, "#money-amount", "2000")
        await pilot.press("ctrl+t")
        await until(pilot, lambda: text_of(app, "#money-status").startswith("Not done"),
                    "the refusal")
        assert text_of(app, "#money-status") == (
            "Not done: The deposit account does not hold enough. Move less: the lines above "
            "say what each side holds.")
        app.screen.query_one("#money-amount", Input).value = "50.5"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: text_of(app, "#money-status") == "Redeemed ¥50.50.",
                    "the redemption")
        assert text_of(app, "#money-balances").splitlines() == [
            "Wallet ¥249.50 (holds at most ¥1,000.00)",
            f"Deposit account {wallet.deposit_number}: ¥250.50"]
    summary = await wallet.summary()
    assert (summary["balance"], summary["deposit_account"]["balance"]) == (24_950, 25_050)


async def test_upgrade_to_class_3_raises_the_limits(network: Network, tmp_path: Path
                                                     ) -> None:
    app = app_for(network, await network.wallet("BANKA"), tmp_path, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, UpgradeScreen)
                    and text_of(app, "#upgrade-current").startswith("Now class 4"),
                    "the upgrade screen")
        await type_into(pilot, "#kyc-name", "Zhang San")
        await type_into(pilot, "#kyc-id", "123")
        await pilot.press("enter")
        await until(pilot, lambda: text_of(app, "#upgrade-status").startswith("Not upgraded"),
                    "the refusal")
        assert "resident" in text_of(app, "#upgrade-status").lower()
        app.screen.query_one("#kyc-id", Input).value = "11010519491231002X"
        await pilot.press("enter")
        await until(pilot, lambda: text_of(app, "#upgrade-status") == "Upgraded to class 3.",
                    "the upgrade")
        await pilot.press("escape")
        await until(pilot, lambda: text_of(app, "#wallet-class").startswith(
            "Class 3 wallet (active), cap ¥2,000.00"), "the new class on home")


async def test_import_a_key_and_switch_profiles(network: Network, tmp_path: Path) -> None:
    alice = await network.wallet("BANKA", balance=1_000)
    carol = await network.wallet("BANKB", balance=0)
    key_file = tmp_path / "carol.pem"
    key_file.write_bytes(carol.key.to_pem())
    app = app_for(network, alice, tmp_path / "keys", "alice")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, SettingsScreen), "settings")
        app.screen.query_one("#bank-url", Input).value = "bank-a"
        await pilot.press("ctrl+s")
        assert text_of(app, "#settings-status") == (
            "The bank URL starts with http:// or https://, like http://127.0.0.1:8201.")
        await pilot.press("ctrl+l")  # lock
        await until(pilot, lambda: bool(app.screen.query("#unlock-status")), "unlock screen")
        await pilot.press("f2")
        await until(pilot, lambda: bool(app.screen.query("#import-file")), "import screen")
        # A key that does not hold the address is refused, and nothing is stored.
        app.screen.query_one("#import-file", Input).value = str(key_file)
        app.screen.query_one("#import-address", Input).value = alice.address
        app.screen.query_one("#import-profile", Input).value = "carol"
        await type_into(pilot, "#import-passphrase", PASS)
        await pilot.press("enter")
        await until(pilot, lambda: text_of(app, "#import-status").startswith("Not imported"),
                    "the refusal")
        assert not Keystore(tmp_path / "keys").exists("carol")
        app.screen.query_one("#import-bank", Input).value = network.banks["BANKB"].url
        app.screen.query_one("#import-address", Input).value = carol.address
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen)
                    and text_of(app, "#balance") == "Balance  ¥0.00", "carol's home")
        assert app.require_session().address == carol.address
        # Switch back to alice: her own bank is used again.
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, SettingsScreen), "settings")
        await pilot.press("enter")  # the first profile: alice
        await until(pilot, lambda: bool(app.screen.query("#unlock-status")), "unlock screen")
        assert app.screen.query_one("#profile", Input).value == "alice"
        await unlock(pilot, app)
        assert text_of(app, "#balance") == "Balance  ¥10.00"
        assert app.client.base_url == network.banks["BANKA"].url
    assert Keystore(tmp_path / "keys").profiles() == ["alice", "carol"]


async def test_a_payment_request_is_paid_from_its_uri(network: Network, tmp_path: Path
                                                      ) -> None:
    merchant = await network.wallet("BANKB")
    payer = await network.wallet("BANKA", balance=10_000, phone="13900139000")
    shop = app_for(network, merchant, tmp_path / "shop", "shop")
    customer = app_for(network, payer, tmp_path / "customer", "customer")
    async with shop.run_test(size=SIZE) as s, customer.run_test(size=SIZE) as c:
        await unlock(s, shop)
        await s.press("r")
        await until(s, lambda: isinstance(shop.screen, ReceiveScreen), "receive screen")
        await type_into(s, "#request-amount", "12.30")
        await type_into(s, "#request-memo", "Noodles")
        await s.press("enter")
        await until(s, lambda: text_of(shop, "#receive-uri").startswith(
            f"cbdc:{merchant.address}?amount=1230&memo=Noodles"), "the request")
        uri = text_of(shop, "#receive-uri")

        await unlock(c, customer)
        await open_send(c, customer)
        customer.screen.query_one("#payee", Input).value = uri
        await c.pause()
        assert customer.screen.query_one("#payee", Input).value == merchant.address
        assert customer.screen.query_one("#amount", Input).value == "12.30"
        assert customer.screen.query_one("#memo", Input).value.endswith(" Noodles")
        await c.press("ctrl+s")
        await until(c, lambda: bool(text_of(customer, "#confirm-text")), "confirmation")
        await c.press("y")
        await until(c, lambda: isinstance(customer.screen, DetailScreen), "the result")
        await until(s, lambda: text_of(shop, "#request-status") == f"Paid by {payer.address}.",
                    "the request marked paid on the merchant's screen")
    assert (await merchant.summary())["balance"] == 1_230


async def test_a_lost_connection_is_told_and_recovers(network: Network, tmp_path: Path
                                                      ) -> None:
    bank = network.banks["BANKA"]
    wallet = await network.wallet("BANKA", balance=5_000)
    payer = await network.wallet("BANKA", balance=5_000, phone="13900139000")
    async with cuttable_link(int(bank.url.rsplit(":", 1)[1])) as link:
        Keystore(tmp_path).import_key("alice", PASS, wallet.key.to_pem(), bank_url=link.url,
                                      address=wallet.address)
        app = WalletApp(link.url, keystore_dir=tmp_path, profile="alice")
        async with app.run_test(size=SIZE) as pilot:
            await unlock(pilot, app)
            assert app.sub_title.endswith("online")
            await link.cut()
            await until(pilot, lambda: "OFFLINE" in app.sub_title, "the header saying so")
            await pilot.press("u")
            await until(pilot, lambda: text_of(app, "#home-status").startswith(
                "Cannot reach the bank"), "the error of a reload")
            reply = await payer.pay(wallet.address, 700)  # paid while the link is down
            assert reply.status == 201, reply.body
            await link.restore()
            await until(pilot, lambda: app.sub_title.endswith("online"), "the link back")
            await until(pilot, lambda: text_of(app, "#balance") == "Balance  ¥57.00",
                        "the payment made meanwhile, reloaded")
            assert text_of(app, "#home-status") == ""


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



async def test_ledger_keys_are_pinned_on_first_use(network: Network, tmp_path: Path) -> None:
    wallet = await network.wallet("BANKA")
    url = network.banks["BANKA"].url
    store = Keystore(tmp_path)
    store.import_key("alice", PASS, wallet.key.to_pem(), bank_url=url, address=wallet.address)
    client = BankClient(url)
    try:
        session = await WalletSession.unlock(store, client, name="alice", passphrase=PASS)
        keys, warnings = await session.ledger_keys()
        assert warnings == []
        pinned = store.unlock("alice", PASS).ledger_keys
        assert pinned == {"BANKA": keys["bank_key_pem"],
                          "central_bank": keys["central_bank_key_pem"]}
        # A bank that later passes on another central bank key is not believed.
        session.profile.ledger_keys["central_bank"] = SigningKey.generate().public.to_pem(
        ).decode()
        keys, warnings = await session.ledger_keys()
        assert keys["central_bank_key_pem"] == session.profile.ledger_keys["central_bank"]
        assert warnings == ["The ledger key of the central bank differs from the one this "
                            "wallet pinned; receipts are checked with the pinned key."]
    finally:
        await client.close()


class CountingClient(BankClient):
    """A bank client that counts its requests."""

    calls = 0

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await super().request(*args, **kwargs)


async def test_history_reads_on_from_the_pages_it_already_read(network: Network) -> None:
    payer = await network.wallet("BANKA", balance=10_000)
    payee = await network.wallet("BANKA", phone="13900139000")
    for cents in (101, 102, 103, 104):
        assert (await payer.pay(payee.address, cents)).status == 201
    client = CountingClient(network.banks["BANKA"].url, history_page=2)
    try:
        await client.login(payer.address, payer.key)
        client.calls = 0
        newest = await client.history(payer.address, limit=3)
        assert [e["amount"] for e in newest] == [102, 103, 104]
        assert client.calls == 3  # five entries, two a page
        assert (await payer.pay(payee.address, 105)).status == 201
        client.calls = 0
        newest = await client.history(payer.address, limit=3)
        assert [e["amount"] for e in newest] == [103, 104, 105]
        assert client.calls == 2  # on from the fourth entry: one full page, one empty
        assert [e["amount"] for e in await client.history(payer.address, limit=9)] == [
            10_000, 101, 102, 103, 104, 105]
    finally:
        await client.close()
