"""What a wallet signs to log in to its bank (shared by the bank and the wallet app)."""

from __future__ import annotations

from typing import Final

import rfc8785

LOGIN_DOMAIN: Final = "cbdc/login/v1"


def login_message(bank: str, address: str, challenge: str) -> bytes:
    """The bytes a wallet signs to log in: canonical JSON (RFC 8785) of the login fields."""
    return rfc8785.dumps(
        {"domain": LOGIN_DOMAIN, "bank": bank, "address": address, "challenge": challenge}
    )
