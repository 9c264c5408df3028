"""The wallet's key at rest: scrypt, then AES-256-GCM bound to the profile name."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cbdc.signing import SigningKey
from wallet_tui.keystore import Keystore, KeystoreError

pytestmark = pytest.mark.tui

PASS = "correct horse battery"
BANK = "http://127.0.0.1:9"


def test_a_created_profile_unlocks_with_its_passphrase(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    created = store.create("alice", PASS, bank_url=BANK, address="BANKA-000000001234-96")
    unlocked = store.unlock("alice", PASS)
    assert unlocked.key.public.to_der() == created.key.public.to_der()
    assert (unlocked.address, unlocked.bank_url, unlocked.last_sequence) == (
        "BANKA-000000001234-96", BANK, 0)
    assert store.profiles() == ["alice"]
    assert (tmp_path / "alice.json").stat().st_mode & 0o777 == 0o600


def test_the_file_holds_no_key_bytes_in_clear(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    profile = store.create("alice", PASS, bank_url=BANK)
    text = (tmp_path / "alice.json").read_text()
    assert "PRIVATE KEY" not in text
    assert PASS not in text
    data = json.loads(text)
    assert data["kdf"] == {"name": "scrypt", "salt": data["kdf"]["salt"], "n": 2**15,
                           "r": 8, "p": 1}
    assert data["cipher"]["name"] == "aes-256-gcm"
    assert "key" not in repr(profile).lower().replace("unlockedprofile", "")


def test_a_wrong_passphrase_is_refused_clearly(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.create("alice", PASS, bank_url=BANK)
    with pytest.raises(KeystoreError, match="passphrase is wrong or the file was changed"):
        store.unlock("alice", "not the passphrase")


@pytest.mark.parametrize("part", [("kdf", "salt"), ("cipher", "nonce"),
                                  ("cipher", "ciphertext")])
def test_a_flipped_byte_is_refused(tmp_path: Path, part: tuple[str, str]) -> None:
    store = Keystore(tmp_path)
    store.create("alice", PASS, bank_url=BANK)
    path = tmp_path / "alice.json"
    data = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(data[part[0]][part[1]]))
    raw[len(raw) // 2] ^= 0x01
    data[part[0]][part[1]] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="passphrase is wrong or the file was changed"):
        store.unlock("alice", PASS)


@pytest.mark.parametrize("part", [("kdf", "salt"), ("cipher", "ciphertext")])
def test_a_changed_character_that_decodes_to_the_same_bytes_is_refused(
        tmp_path: Path, part: tuple[str, str]) -> None:
    """Base64's last character before the padding carries bits a decoder drops; one
    changed there decodes to the same bytes, and the file must still not open."""
    store = Keystore(tmp_path)
    store.create("alice", PASS, bank_url=BANK)
    path = tmp_path / "alice.json"
    data = json.loads(path.read_text())
    holder = data[part[0]]
    text = holder[part[1]]
    assert text.endswith("=")
    last = len(text.rstrip("=")) - 1
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    changed = text[:last] + alphabet[alphabet.index(text[last]) ^ 1] + text[last + 1:]
    assert base64.b64decode(changed) == base64.b64decode(text)  # the same bytes
    holder[part[1]] = changed
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="the profile file is damaged"):
        store.unlock("alice", PASS)


def test_a_file_copied_to_another_profile_does_not_open(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.create("alice", PASS, bank_url=BANK)
    data = json.loads((tmp_path / "alice.json").read_text())
    data["profile"] = "mallory"
    (tmp_path / "mallory.json").write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="passphrase is wrong or the file was changed"):
        store.unlock("mallory", PASS)


def test_a_file_edited_to_another_wallet_does_not_open(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.create("alice", PASS, bank_url=BANK, address="BANKA-000000001234-96")
    path = tmp_path / "alice.json"
    data = json.loads(path.read_text())
    data["address"] = "BANKA-000000004321-38"
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="passphrase is wrong or the file was changed"):
        store.unlock("alice", PASS)


def test_damaged_or_missing_files_say_so(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    with pytest.raises(KeystoreError, match="no profile 'bob'"):
        store.unlock("bob", PASS)
    (tmp_path / "bob.json").write_text("{not json")
    with pytest.raises(KeystoreError, match="cannot be read"):
        store.unlock("bob", PASS)
    with pytest.raises(KeystoreError, match="cannot be a profile name"):
        store.unlock("../etc", PASS)


def test_import_keeps_the_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    key = SigningKey.generate()
    store.import_key("alice", PASS, key.to_pem(), bank_url=BANK)
    assert store.unlock("alice", PASS).key.to_pem() == key.to_pem()
    with pytest.raises(KeystoreError, match="already exists"):
        store.create("alice", PASS, bank_url=BANK)
    with pytest.raises(KeystoreError, match="not an unencrypted P-256"):
        store.import_key("carol", PASS, b"nonsense", bank_url=BANK)
    with pytest.raises(KeystoreError, match="at least 8"):
        store.create("dave", "short", bank_url=BANK)


def test_the_last_sequence_is_kept_across_unlocks(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    profile = store.create("alice", PASS, bank_url=BANK)
    profile.last_sequence = 7
    store.update(profile)
    assert store.unlock("alice", PASS).last_sequence == 7
