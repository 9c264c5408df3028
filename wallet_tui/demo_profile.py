"""The demo wallet `cbdc up` opens: alice's key (made by the retail demo) sealed in a
keystore in the data folder, with a passphrase generated once and kept beside it.

    <data>/wallet/alice.json        the profile (scrypt + AES-256-GCM, like any other)
    <data>/wallet-passphrase        its passphrase (owner-only), printed by `cbdc up`

The central bank's ledger key (also in the data folder) is pinned in the profile, so the
wallet checks central bank receipts against the key itself, not the copy a bank passes on.
The key already lives unencrypted in `<data>/keys/wallet-alice.pem` (the demo signs with
it), so this adds no exposure; it lets a tester unlock the wallet like a real one.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cbdc.signing import SigningKey
from wallet_tui.keystore import Keystore

PROFILE = "alice"


@dataclass(frozen=True, slots=True)
class DemoWallet:
    keystore_dir: Path
    profile: str | None  # None: no demo wallet yet, the app opens on onboarding
    passphrase: str | None


def _passphrase(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    words = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(words + "\n")
    return words


def demo_wallet(data_dir: Path, bank_url: str) -> DemoWallet:
    """Seal alice's demo key into the data folder's keystore (once) and say how to open
    it; without the demo's key or address, just where the keystore is."""
    keystore = Keystore(data_dir / "wallet")
    book, key_file = data_dir / "demo-wallets.json", data_dir / "keys" / "wallet-alice.pem"
    if not keystore.exists(PROFILE):
        if not (book.exists() and key_file.exists()):
            return DemoWallet(keystore.folder, None, None)
        address = json.loads(book.read_text(encoding="utf-8")).get(PROFILE)
        if not address:
            return DemoWallet(keystore.folder, None, None)
        profile = keystore.import_key(PROFILE, _passphrase(data_dir / "wallet-passphrase"),
                                      key_file.read_bytes(), bank_url=bank_url,
                                      address=address)
        central = data_dir / "keys" / "central-bank-ledger.pem"
        if central.exists():  # the central bank's own key: the strongest pin there is
            profile.ledger_keys["central_bank"] = SigningKey.from_pem(
                central.read_bytes()).public.to_pem().decode("ascii")
            keystore.update(profile)
    return DemoWallet(keystore.folder, PROFILE, _passphrase(data_dir / "wallet-passphrase"))
