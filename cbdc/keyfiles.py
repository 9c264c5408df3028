"""Signing keys kept as PEM files in the data folder (created on first use, mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from cbdc.signing import SigningKey


def load_or_create_key(path: Path) -> SigningKey:
    """The P-256 key at `path`, generated (and written owner-only) if it does not exist."""
    if path.exists():
        return SigningKey.from_pem(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.to_pem())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)  # atomic: two starters never see half a key
    return key
