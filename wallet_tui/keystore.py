"""The wallet's P-256 key, encrypted at rest: one JSON file per profile.

    {"version": 1, "profile": "<name>", "address": "<wallet address>" | "",
     "bank_url": "<url>", "last_sequence": <n>,
     "ledger_keys": {"<bank code or 'central_bank'>": "<public key PEM>", ...},
     "kdf": {"name": "scrypt", "salt": "<b64>", "n": 32768, "r": 8, "p": 1},
     "cipher": {"name": "aes-256-gcm", "nonce": "<b64>", "ciphertext": "<b64>"},
     "metadata_mac": "<b64>"}

The passphrase goes through scrypt (n=2**15, r=8, p=1) to a 256-bit key; AES-256-GCM seals
the private key (PKCS#8 DER) with the wallet id (its address) and the profile name as
associated data, so a file renamed to another profile, an address edited to another
wallet's, a wrong passphrase or any flipped byte of salt, nonce or ciphertext fails to
open. The address is therefore fixed when the profile is made. The sequence number of
the last signed payment order is kept beside the key (not secret), so the wallet never
signs two orders with one sequence. So are the ledger keys the wallet first saw (trust
on first use): receipts are checked against these pinned keys from then on.

The fields beside the key (profile, address, bank URL, last sequence, pinned ledger keys)
are not secret but must not be changed behind the wallet's back (another bank URL, an
older sequence, a forger's ledger key): an HMAC-SHA-256 over them, keyed by HKDF of the
private key, is checked at unlock, so a flipped byte anywhere in the file fails cleanly.
`update` can reseal them without the passphrase because the unlocked profile holds the key.

Nothing here logs or puts key bytes or the passphrase into an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from cbdc.errors import CbdcError
from cbdc.signing import SigningKey

VERSION: Final = 1
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_BYTES: Final = 16
NONCE_BYTES: Final = 12
MIN_PASSPHRASE: Final = 8
# Kept in clear beside the sealed key, and covered by the profile's HMAC.
CLEAR_FIELDS: Final = ("profile", "address", "bank_url", "last_sequence", "ledger_keys")
PROFILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}", re.ASCII)
DEFAULT_FOLDER: Final = Path("~/.cbdc-wallet")


class KeystoreError(CbdcError):
    """A profile cannot be created, found, read or unlocked; one sentence for a person."""


@dataclass
class UnlockedProfile:
    """A profile whose key is in memory. `repr` leaves the key out."""

    name: str
    key: SigningKey
    address: str
    bank_url: str
    last_sequence: int
    ledger_keys: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"UnlockedProfile(name={self.name!r}, address={self.address!r})"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeystoreError(f"the profile file is damaged: {what} is missing")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeystoreError(f"the profile file is damaged: {what} is not base64") from None
    # The last character before the padding carries bits the decoder drops: a changed
    # one would decode to the same bytes, so only the form this keystore writes passes.
    if _b64(raw) != text:
        raise KeystoreError(f"the profile file is damaged: {what} was changed")
    return raw


def _associated_data(name: str, address: str) -> bytes:
    return f"cbdc-wallet/v{VERSION}/wallet:{address}/profile:{name}".encode()


def _private_der(key: SigningKey) -> bytes:
    return key.private.private_bytes(serialization.Encoding.DER,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def _metadata_mac(key: SigningKey, data: dict[str, Any]) -> str:
    """HMAC of the fields kept in clear beside the sealed key."""
    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=f"cbdc-wallet/v{VERSION}/metadata-key".encode()).derive(_private_der(key))
    fields = [data.get(name) for name in CLEAR_FIELDS]
    message = json.dumps(fields, ensure_ascii=True, sort_keys=True,
                         separators=(",", ":")).encode()
    return _b64(hmac.new(mac_key, message, hashlib.sha256).digest())


def _derive(passphrase: str, salt: bytes) -> bytes:
    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


def read_private_pem(pem: bytes) -> SigningKey:
    """A wallet key from an unencrypted P-256 private key in PEM."""
    try:
        return SigningKey.from_pem(pem)
    except (ValueError, TypeError):
        raise KeystoreError("that is not an unencrypted P-256 private key in PEM") from None


class Keystore:
    """Profiles under `folder` (default ``~/.cbdc-wallet``), one ``<name>.json`` each."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder if folder is not None else DEFAULT_FOLDER).expanduser()

    # ------------------------------------------------------------------ files
    def path(self, name: str) -> Path:
        if not PROFILE_NAME.fullmatch(name):
            raise KeystoreError(
                f"{name!r} cannot be a profile name: use 1 to 32 letters, digits, . _ or -")
        return self.folder / f"{name}.json"

    def profiles(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json")
                      if PROFILE_NAME.fullmatch(p.stem))

    def bank_url(self, name: str) -> str:
        """The bank a profile last used ("" if it names none); no passphrase needed."""
        return str(self._read(name).get("bank_url") or "")

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def _read(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeystoreError(f"there is no profile {name!r} in {self.folder}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise KeystoreError(f"the profile file {path} cannot be read: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise KeystoreError(f"the profile file {path} is damaged or of another version")
        return data

    def _write(self, name: str, data: dict[str, Any]) -> None:
        path = self.path(name)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(data, file, indent=2)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    # -------------------------------------------------------------- profiles
    def create(self, name: str, passphrase: str, *, bank_url: str, address: str = "",
               key: SigningKey | None = None) -> UnlockedProfile:
        """A new profile holding `key` (a fresh one if None); refuses to overwrite one."""
        if self.exists(name):
            raise KeystoreError(f"profile {name!r} already exists; unlock it instead")
        if len(passphrase) < MIN_PASSPHRASE:
            raise KeystoreError(f"the passphrase needs at least {MIN_PASSPHRASE} characters")
        key = key if key is not None else SigningKey.generate()
        salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
        sealed = AESGCM(_derive(passphrase, salt)).encrypt(nonce, _private_der(key),
                                                            _associated_data(name, address))
        data: dict[str, Any] = {
            "version": VERSION, "profile": name, "address": address, "bank_url": bank_url,
            "last_sequence": 0,
            "kdf": {"name": "scrypt", "salt": _b64(salt), "n": SCRYPT_N, "r": SCRYPT_R,
                    "p": SCRYPT_P},
            "cipher": {"name": "aes-256-gcm", "nonce": _b64(nonce),
                       "ciphertext": _b64(sealed)},
        }
        data["metadata_mac"] = _metadata_mac(key, data)
        self._write(name, data)
        return UnlockedProfile(name, key, address, bank_url, 0)

    def import_key(self, name: str, passphrase: str, pem: bytes, *, bank_url: str,
                   address: str = "") -> UnlockedProfile:
        """A new profile for an existing P-256 key (unencrypted PKCS#8 PEM)."""
        return self.create(name, passphrase, bank_url=bank_url, address=address,
                           key=read_private_pem(pem))

    def unlock(self, name: str, passphrase: str) -> UnlockedProfile:
        data = self._read(name)
        kdf, cipher = data.get("kdf"), data.get("cipher")
        if not isinstance(kdf, dict) or not isinstance(cipher, dict) \
                or (kdf.get("name"), kdf.get("n"), kdf.get("r"), kdf.get("p")) \
                != ("scrypt", SCRYPT_N, SCRYPT_R, SCRYPT_P) \
                or cipher.get("name") != "aes-256-gcm" or data.get("profile") != name:
            raise KeystoreError(f"the profile file for {name!r} is damaged")
        salt = _unb64(kdf.get("salt"), "the salt")
        nonce = _unb64(cipher.get("nonce"), "the nonce")
        sealed = _unb64(cipher.get("ciphertext"), "the ciphertext")
        if len(nonce) != NONCE_BYTES or not salt:
            raise KeystoreError(f"the profile file for {name!r} is damaged")
        address = data.get("address", "")
        if not isinstance(address, str):
            raise KeystoreError(f"the profile file for {name!r} is damaged")
        try:
            secret = AESGCM(_derive(passphrase, salt)).decrypt(nonce, sealed,
                                                               _associated_data(name, address))
        except InvalidTag:
            raise KeystoreError(
                f"cannot unlock {name!r}: the passphrase is wrong or the file was changed"
            ) from None
        private = serialization.load_der_private_key(secret, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise KeystoreError(f"the profile {name!r} does not hold a P-256 key")
        key = SigningKey(private)
        mac = data.get("metadata_mac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _metadata_mac(key, data)):
            raise KeystoreError(f"cannot unlock {name!r}: the file was changed (its address, "
                                "bank, sequence number or ledger keys no longer match the key)")
        sequence = data.get("last_sequence", 0)
        if type(sequence) is not int or sequence < 0:
            raise KeystoreError(f"the profile file for {name!r} has a bad sequence number")
        pinned = data.get("ledger_keys", {})
        if not isinstance(pinned, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in pinned.items()):
            raise KeystoreError(f"the profile file for {name!r} has damaged ledger keys")
        return UnlockedProfile(name, key, address, str(data.get("bank_url", "")), sequence,
                               dict(pinned))

    def update(self, profile: UnlockedProfile) -> None:
        """Store the profile's bank and last sequence (the sealed key and the address it
        is bound to stay)."""
        data = self._read(profile.name)
        if data.get("address") != profile.address:
            raise KeystoreError(f"the profile {profile.name!r} belongs to another wallet")
        data.update(bank_url=profile.bank_url, last_sequence=profile.last_sequence,
                    ledger_keys=profile.ledger_keys)
        data["metadata_mac"] = _metadata_mac(profile.key, data)
        self._write(profile.name, data)
