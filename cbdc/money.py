"""Money is an integer number of fen (0.01 CNY). Never a float, anywhere."""

from __future__ import annotations

import re
from typing import NewType

Fen = NewType("Fen", int)

_CNY = re.compile(r"^(?P<sign>-?)(?P<yuan>[0-9]{1,16})(?:\.(?P<fen>[0-9]{1,2}))?$")


def parse_cny(text: str) -> Fen:
    """'12.34' -> 1234 fen; refuses more than two decimals, exponents and separators."""
    match = _CNY.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not an amount in CNY with at most two decimals (like 12.34)"
        )
    fen = int(match["yuan"]) * 100 + int((match["fen"] or "0").ljust(2, "0"))
    return Fen(-fen if match["sign"] else fen)


def format_fen(amount: int) -> str:
    """1234 -> '¥12.34'; -5 -> '-¥0.05'."""
    sign = "-" if amount < 0 else ""
    yuan, fen = divmod(abs(amount), 100)
    return f"{sign}¥{yuan:,}.{fen:02d}"
