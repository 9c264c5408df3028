"""Small text helpers the screens share."""

from __future__ import annotations

import re

_RFC3339 = re.compile(r"\b(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}):\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")


def reset_time(moment: str) -> str:
    """When a limit resets, from the bank's RFC 3339 time in its own zone:
    '2026-01-02T00:00:00+08:00' -> '01-02 00:00'."""
    return f"{moment[5:10]} {moment[11:16]}"


def humane_times(text: str) -> str:
    """RFC 3339 times in a bank's message, as a person reads them:
    'resets at 2026-01-02T00:00:00+08:00' -> 'resets at 2026-01-02 00:00'."""
    return _RFC3339.sub(r"\1 \2", text)


def bank_url_problem(text: str) -> str | None:
    """Why `text` cannot be a bank's URL, as a sentence; None if it can."""
    if not text.startswith(("http://", "https://")) or len(text) < 10 or " " in text:
        return "The bank URL starts with http:// or https://, like http://127.0.0.1:8201."
    return None
