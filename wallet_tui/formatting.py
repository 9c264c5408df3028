"""Small text helpers the screens share."""

from __future__ import annotations


def reset_time(moment: str) -> str:
    """When a limit resets, from the bank's RFC 3339 time in its own zone:
    '2026-01-02T00:00:00+08:00' -> '01-02 00:00'."""
    return f"{moment[5:10]} {moment[11:16]}"
