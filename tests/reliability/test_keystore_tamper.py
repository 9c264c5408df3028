"""The wallet's keystore under tampering (tests/tui/test_keystore.py has the basics):
a wrong passphrase, one flipped byte anywhere in the profile file, or sealed data
swapped between profiles fails with a KeystoreError a person can read, never another
exception and never a changed profile; and no key byte or passphrase reaches a log, an
error message or a repr.

Flipped bytes are drawn from a printed seed (CBDC_SEED replays); the long profile
(CBDC_RELIABILITY=long) flips every byte of the file.
"""

from __future__ import annotations

import base64
import json
import logging
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cbdc.signing import SigningKey
from tests.reliability.api_support import long_profile, seeded
from wallet_tui.keystore import Keystore, KeystoreError, UnlockedProfile

pytestmark = pytest.mark.reliability

PASS = "correct horse battery"
BANK = "http://127.0.0.1:8201"
ADDRESS = "BANKA-000000001234-96"
FLIPS = 100  # quick profile; the long one flips every byte


def secrets_of(key: SigningKey) -> list[str]:
    """Spellings of the private key and the passphrase that must never be shown."""
    der = key.private.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    scalar = key.private.private_numbers().private_value
    pem = key.to_pem().decode()
    pem_body = "".join(line for line in pem.splitlines() if "PRIVATE KEY" not in line)
    return [PASS, der.hex(), base64.b64encode(der).decode(), pem_body[:40],
            f"{scalar:x}", str(scalar), scalar.to_bytes(32, "big").hex()]


def made_profile(folder: Path) -> tuple[Keystore, UnlockedProfile, bytes]:
    store = Keystore(folder)
    profile = store.create("alice", PASS, bank_url=BANK, address=ADDRESS)
    profile.last_sequence = 41
    store.update(profile)
    return store, profile, (folder / "alice.json").read_bytes()


def test_a_wrong_passphrase_fails_cleanly(tmp_path: Path) -> None:
    store, _, _ = made_profile(tmp_path)
    for wrong in ("", "correct horse batterY", PASS + " ", PASS[:-1], "ｃorrect horse battery"):
        with pytest.raises(KeystoreError, match="passphrase is wrong or the file was changed"):
            store.unlock("alice", wrong)


def test_one_flipped_byte_anywhere_fails_cleanly(tmp_path: Path) -> None:
    """Flip one byte of the file (seeded positions and masks): the profile either opens
    unchanged (the flip only changed JSON whitespace) or fails with a KeystoreError."""
    store, profile, original = made_profile(tmp_path)
    path = tmp_path / "alice.json"
    rng = random.Random(seeded("keystore byte flips"))
    positions = range(len(original)) if long_profile() else rng.sample(range(len(original)),
                                                                       FLIPS)
    opened_unchanged = refused = 0
    for position in positions:
        damaged = bytearray(original)
        damaged[position] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(damaged))
        try:
            same = json.loads(bytes(damaged)) == json.loads(original)
        except ValueError:
            same = False
        try:
            unlocked = store.unlock("alice", PASS)
        except KeystoreError:
            refused += 1
            assert not same, f"byte {position}: an equivalent file was refused"
            continue
        assert same, f"byte {position}: a changed file opened"
        assert (unlocked.address, unlocked.bank_url, unlocked.last_sequence) == (
            ADDRESS, BANK, 41)
        opened_unchanged += 1
    print(f"byte flips: {refused} refused, {opened_unchanged} only changed whitespace")
    assert refused
    path.write_bytes(original)
    assert store.unlock("alice", PASS).key.to_pem() == profile.key.to_pem()


@pytest.mark.parametrize("field", ["address", "bank_url", "last_sequence"])
def test_the_fields_beside_the_key_cannot_be_changed_quietly(tmp_path: Path,
                                                              field: str) -> None:
    """Another bank URL, address or an older sequence number, written in by hand with
    valid JSON: refused, so the wallet never talks to a bank it was not set up with nor
    signs a sequence number twice."""
    store, _, _ = made_profile(tmp_path)
    path = tmp_path / "alice.json"
    data = json.loads(path.read_text())
    data[field] = {"address": "BANKA-000000009999-88", "bank_url": "http://evil.example",
                   "last_sequence": 3}[field]
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="the file was changed"):
        store.unlock("alice", PASS)


def test_swapped_associated_data_fails(tmp_path: Path) -> None:
    """The sealed key of one profile pasted into another's file (same passphrase), or a
    file renamed to another profile: the AES-GCM associated data (the profile name) no
    longer matches, and the file does not open."""
    store = Keystore(tmp_path)
    store.create("alice", PASS, bank_url=BANK)
    store.create("bob", PASS, bank_url=BANK)
    alice = json.loads((tmp_path / "alice.json").read_text())
    bob = json.loads((tmp_path / "bob.json").read_text())
    bob["cipher"], bob["kdf"] = alice["cipher"], alice["kdf"]
    (tmp_path / "bob.json").write_text(json.dumps(bob))
    with pytest.raises(KeystoreError, match="passphrase is wrong or the file was changed"):
        store.unlock("bob", PASS)
    alice["profile"] = "carol"
    (tmp_path / "carol.json").write_text(json.dumps(alice))
    with pytest.raises(KeystoreError, match="passphrase is wrong or the file was changed"):
        store.unlock("carol", PASS)


def test_no_key_bytes_in_any_log_error_or_repr(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Everything the keystore does, right and wrong, with every logger at DEBUG: no
    spelling of the private key nor the passphrase in the log, the errors or a repr."""
    caplog.set_level(logging.DEBUG)
    key = SigningKey.generate()
    store = Keystore(tmp_path)
    said: list[str] = []
    profile = store.import_key("alice", PASS, key.to_pem(), bank_url=BANK, address=ADDRESS)
    said.append(repr(profile))
    profile.last_sequence = 2
    store.update(profile)
    said.append(repr(store.unlock("alice", PASS)))
    for attempt in (lambda: store.unlock("alice", PASS + "x"),
                    lambda: store.create("alice", PASS, bank_url=BANK),
                    lambda: store.import_key("bob", PASS, key.to_pem()[:-30], bank_url=BANK),
                    lambda: store.create("carol", PASS[:5], bank_url=BANK)):
        with pytest.raises(KeystoreError) as caught:
            attempt()
        said.append(str(caught.value))
        said.append(repr(caught.value))
    path = tmp_path / "alice.json"
    path.write_text(path.read_text().replace(BANK, "http://evil.example"))
    with pytest.raises(KeystoreError) as caught:
        store.unlock("alice", PASS)
    said += [str(caught.value), repr(caught.value)]
    said += [record.getMessage() for record in caplog.records]
    said += [str(record.exc_info) for record in caplog.records if record.exc_info]
    said.append(capsys.readouterr().out)
    text = "\n".join(said)
    for secret in secrets_of(key):
        assert secret not in text
    assert "alice" in text  # the check looked at what was said
