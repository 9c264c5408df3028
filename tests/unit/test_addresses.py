"""cbdc.addresses: wallet addresses whose check digits catch every single typo and swap."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.iso7064 import mod_97_10

from cbdc.addresses import (
    EXAMPLE,
    AddressError,
    WalletAddress,
    address_for,
    check_partial,
    parse_address,
)

# A space in the middle, where no dash belongs, is a typo too.
TYPED = string.ascii_uppercase + string.digits + "- ."
SAMPLES = [
    ("BANKA", 1234),
    ("BANKB", 0),
    ("ICBC", 999_999_999_999),
    ("B1", 111),  # IBAN-style mixed widths would read "B1" and "1B" both as "111"
    ("1B", 111),
    ("Z9Z9Z9Z9Z9Z9", 123_456_789_012),
    ("00", 42),
]


def substitutions(text: str) -> list[str]:
    """Every text with one character replaced by another one (that reads differently)."""
    variants = []
    for position, original in enumerate(text):
        for typed in TYPED:
            same = typed == original or {typed, original} == {"-", " "}
            if not same:
                variants.append(text[:position] + typed + text[position + 1 :])
    return variants


def transpositions(text: str) -> list[str]:
    return [
        text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        for i in range(len(text) - 1)
        if text[i] != text[i + 1]
    ]


def test_format_and_check_digits() -> None:
    address = WalletAddress("BANKA", 1234)
    assert str(address) == "BANKA-000000001234-96" == EXAMPLE
    assert address_for("BANKA", 1234) == EXAMPLE
    # MOD 97-10 after a leading 1, two digits per character, letters as IBAN (A=10).
    checked = "1" + "1110232010" + "".join(f"{int(d):02d}" for d in "000000001234")
    assert address.check_digits == mod_97_10.calc_check_digits(checked) == "96"
    assert mod_97_10.is_valid(checked + "96")


def test_leading_zeros_count() -> None:
    # Without the leading 1, "00" and "000" would share check digits, and a space typed
    # over the first "0" (then trimmed) would go unnoticed.
    assert WalletAddress("00", 5).check_digits != WalletAddress("000", 5).check_digits
    with pytest.raises(AddressError):
        parse_address(" " + address_for("000", 5)[1:])


@pytest.mark.parametrize(("bank", "number"), SAMPLES)
def test_round_trip(bank: str, number: int) -> None:
    text = address_for(bank, number)
    assert parse_address(text) == WalletAddress(bank, number)
    assert check_partial(text) is None


@pytest.mark.parametrize(
    "spelling",
    ["  BANKA-000000001234-96 ", "banka-000000001234-96", "BANKA 000000001234 96",
     "Banka 000000001234-96", "\tbanka-000000001234 96\n"],
)
def test_lenient_spellings(spelling: str) -> None:
    assert parse_address(spelling) == WalletAddress("BANKA", 1234)


@pytest.mark.parametrize(("bank", "number"), SAMPLES)
def test_every_single_substitution_is_caught(bank: str, number: int) -> None:
    text = address_for(bank, number)
    variants = substitutions(text)
    assert len(variants) == len(text) * (len(TYPED) - 1) - 2  # a space for a dash is fine
    for variant in variants:
        with pytest.raises(AddressError):
            parse_address(variant)
        assert check_partial(variant) is not None, variant


@pytest.mark.parametrize(("bank", "number"), SAMPLES)
def test_every_adjacent_transposition_is_caught(bank: str, number: int) -> None:
    text = address_for(bank, number)
    for variant in transpositions(text):
        with pytest.raises(AddressError):
            parse_address(variant)
        assert check_partial(variant) is not None, variant


@settings(max_examples=150, deadline=None)
@given(
    bank=st.text(alphabet=string.ascii_uppercase + string.digits, min_size=2, max_size=12),
    number=st.integers(min_value=0, max_value=10**12 - 1),
)
def test_typos_are_caught_for_any_address(bank: str, number: int) -> None:
    text = address_for(bank, number)
    assert parse_address(text) == WalletAddress(bank, number)
    for variant in substitutions(text) + transpositions(text):
        with pytest.raises(AddressError):
            parse_address(variant)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "three parts separated by dashes"),
        ("hello", "three parts separated by dashes"),
        ("BANKA-000000001234", "check digits are missing"),
        ("BANKA-1234-63", "has 4 digits; it needs exactly 12"),
        ("BANKA--63", "wallet number is missing"),
        ("-000000001234-96", "bank code is missing"),
        ("B-000000001234-96", "too short"),
        ("BANKABANKABANKA-000000001234-96", "longer than 12"),
        ("BANK_A-000000001234-96", "cannot be in a bank code"),
        ("BANKß-000000001234-96", "cannot be in a bank code"),
        ("BANKA-00000000123X-63", "should be a digit of the wallet number"),
        ("BANKA-000000001234-6", "2 check digits"),
        ("BANKA-000000001234-963", "more than 2 check digits"),
        ("BANKA-000000001234-96-", "third dash"),
        ("BANKA-000000001234-97", "the check digits do not match: a character is probably "
                                  "mistyped"),
    ],
)
def test_errors_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(AddressError, match="is not a wallet address") as caught:
        parse_address(text)
    assert says in str(caught.value)
    assert caught.value.text == text


def test_known_banks() -> None:
    assert parse_address(EXAMPLE, known_banks={"BANKA"}).bank == "BANKA"
    with pytest.raises(AddressError, match="no bank with code BANKA is known"):
        parse_address(EXAMPLE, known_banks={"BANKB"})


@pytest.mark.parametrize(
    ("bank", "number"), [("B", 1), ("bank", 1), ("BANKA", -1), ("BANKA", 10**12),
                         ("BANKA", True), ("BANKABANKABANKA", 1)],
)
def test_building_refuses_what_has_no_address(bank: str, number: int) -> None:
    with pytest.raises(AddressError):
        WalletAddress(bank, number)


def test_check_partial_while_typing() -> None:
    # Every prefix of a valid address is plausible, in any accepted spelling.
    for spelling in (EXAMPLE, "banka 000000001234 96"):
        for end in range(len(spelling) + 1):
            assert check_partial(spelling[:end]) is None, spelling[:end]
    assert check_partial("BANKA-000000001234-97") == (
        "the check digits do not match: a character is probably mistyped"
    )
    assert check_partial("BANKA-0000x") == (
        "character 11 ('X') should be a digit of the wallet number"
    )
    assert "too short" in (check_partial("B-") or "")
    assert "longer than 12 digits" in (check_partial("BANKA-0000000012345") or "")


def test_why_digits_take_two_places() -> None:
    # IBAN's mapping (letters two digits, digits one) cannot tell B1 from 1B: both read 111,
    # so that swap would pass unnoticed. Here every character takes two places.
    assert mod_97_10.calc_check_digits("B1" + "000000000111") == mod_97_10.calc_check_digits(
        "1B" + "000000000111"
    )
    assert WalletAddress("B1", 111).check_digits != WalletAddress("1B", 111).check_digits


def test_the_second_valid_check_digit_pair_reads_as_the_same_wallet() -> None:
    """MOD 97-10 takes 97, 98 and 99 where 00, 01 and 02 are right; such a spelling
    is read (the cached canonical path passes it on) and printed canonically."""
    address = next(WalletAddress("BANKA", n) for n in range(10_000)
                   if int(WalletAddress("BANKA", n).check_digits) <= 2)
    other = f"{str(address)[:-2]}{int(address.check_digits) + 97}"
    assert parse_address(other) == address
    assert str(parse_address(other)) == str(address)


def test_reading_long_text_keeps_nothing() -> None:
    """Readings are cached, but only of texts short enough to be an address."""
    from cbdc.addresses import _canonical_reading

    before = _canonical_reading.cache_info().currsize
    with pytest.raises(AddressError):
        parse_address("BANKA-" + "0" * 10_000 + "-00")
    assert _canonical_reading.cache_info().currsize == before
