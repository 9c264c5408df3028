"""cbdc.money: CNY text to integer fen and back, never through a float."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbdc.money import format_fen, parse_cny

LARGEST_TEXT = 10**18 - 1  # 9999999999999999.99 CNY: 16 digits of yuan


@pytest.mark.parametrize(("text", "fen"), [
    ("12.34", 1234),
    ("0.01", 1),
    ("0.1", 10),
    ("12.3", 1230),
    ("12", 1200),
    ("0", 0),
    ("0.00", 0),
    ("-0.05", -5),
    ("-12", -1200),
    (" 7.00 ", 700),
    ("007.50", 750),
    ("9999999999999999.99", LARGEST_TEXT),
])
def test_parse_cny(text: str, fen: int) -> None:
    """Amounts with up to two decimals become exact integer fen."""
    parsed = parse_cny(text)
    assert parsed == fen
    assert type(parsed) is int


@pytest.mark.parametrize("text", [
    "", " ", "-", ".", "1.234", "0.001", "1e3", "1E2", "1,000", "1 000", "¥1", "1¥", ".5",
    "5.", "+5", "--5", "- 5", "NaN", "inf", "0x10", "1.2.3", "12.34 CNY", "1_000",
    "10000000000000000", "12.3\n4",
])
def test_parse_cny_refuses(text: str) -> None:
    """More than two decimals, exponents, separators, signs other than '-', symbols and
    more than 16 digits of yuan are refused with a message that shows the text."""
    with pytest.raises(ValueError, match="at most two decimals"):
        parse_cny(text)


@pytest.mark.parametrize("text", ["１２.３４", "٣", "৪"])
def test_parse_cny_refuses_non_ascii_digits(text: str) -> None:
    """Only ASCII digits are digits in an amount."""
    with pytest.raises(ValueError, match="at most two decimals"):
        parse_cny(text)


@pytest.mark.parametrize(("fen", "text"), [
    (1234, "¥12.34"),
    (-5, "-¥0.05"),
    (0, "¥0.00"),
    (1, "¥0.01"),
    (100, "¥1.00"),
    (123_456_789, "¥1,234,567.89"),
    (2**63 - 1, "¥92,233,720,368,547,758.07"),
    (-(2**63), "-¥92,233,720,368,547,758.08"),
])
def test_format_fen(fen: int, text: str) -> None:
    """Fen are shown as yuan with two decimals and thousands separators, exactly."""
    assert format_fen(fen) == text


@given(st.integers(-LARGEST_TEXT, LARGEST_TEXT))
def test_format_then_parse_is_the_same_amount(fen: int) -> None:
    """What is shown, typed back without symbol and separators, is the same fen."""
    assert parse_cny(format_fen(fen).replace("¥", "").replace(",", "")) == fen
