"""The demo wallet `cbdc up` opens at a terminal: alice's demo key, sealed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cbdc.keyfiles import load_or_create_key
from wallet_tui.demo_profile import demo_wallet
from wallet_tui.keystore import Keystore

pytestmark = pytest.mark.tui

BANK = "http://127.0.0.1:8201"
ALICE = "BANKA-000000100001-23"


def test_the_demo_key_is_sealed_once_and_opens_with_the_printed_passphrase(
        tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "keys" / "wallet-alice.pem")
    central = load_or_create_key(tmp_path / "keys" / "central-bank-ledger.pem")
    (tmp_path / "demo-wallets.json").write_text(json.dumps({"alice": ALICE}))
    demo = demo_wallet(tmp_path, BANK)
    assert (demo.keystore_dir, demo.profile) == (tmp_path / "wallet", "alice")
    assert demo.passphrase is not None
    assert (tmp_path / "wallet-passphrase").stat().st_mode & 0o777 == 0o600
    profile = Keystore(demo.keystore_dir).unlock("alice", demo.passphrase)
    assert (profile.address, profile.bank_url) == (ALICE, BANK)
    assert profile.key.to_pem() == key.to_pem()
    assert profile.ledger_keys == {"central_bank": central.public.to_pem().decode()}
    # A second `cbdc up` keeps the profile (and the sequence of its last order).
    profile.last_sequence = 3
    Keystore(demo.keystore_dir).update(profile)
    again = demo_wallet(tmp_path, BANK)
    assert again.passphrase == demo.passphrase
    assert Keystore(again.keystore_dir).unlock("alice", demo.passphrase).last_sequence == 3


def test_without_the_demo_the_wallet_opens_on_onboarding(tmp_path: Path) -> None:
    demo = demo_wallet(tmp_path, BANK)
    assert (demo.profile, demo.passphrase) == (None, None)
    assert not (tmp_path / "wallet-passphrase").exists()
