"""cbdc.kyc: resident identity card numbers, mainland mobile numbers and names."""

from __future__ import annotations

import datetime

import pytest
from stdnum.cn import ric

from cbdc.kyc import KycError, validate_name, validate_phone, validate_resident_id


def make_ric(region: str, birth: str, order: str) -> str:
    """A made-up number with a correct check character (no real person's number)."""
    body = region + birth + order
    return body + ric.calc_check_digit(body + "?")


def with_x_check(region: str, birth: str) -> str:
    """A made-up number whose check character is X."""
    for order in range(1000):
        number = make_ric(region, birth, f"{order:03d}")
        if number.endswith("X"):
            return number
    raise AssertionError("no order code gives X")


BEIJING = "110101"
SHENZHEN = "440304"


@pytest.mark.parametrize(
    "number",
    [
        make_ric(BEIJING, "19900307", "001"),
        make_ric(SHENZHEN, "20000229", "123"),  # a leap day
        with_x_check(BEIJING, "19851231"),
    ],
)
def test_valid_resident_ids(number: str) -> None:
    assert validate_resident_id(number) == number
    assert validate_resident_id(f"  {number.lower()} ") == number
    spaced = f"{number[:6]} {number[6:14]} {number[14:]}"
    assert validate_resident_id(spaced) == number


VALID = make_ric(BEIJING, "19900307", "001")


def mistype_check(number: str) -> str:
    wrong = "0" if number[-1] != "0" else "1"
    return number[:-1] + wrong


@pytest.mark.parametrize(
    ("number", "says"),
    [
        (VALID[:-1], "has 18 characters; this one has 17"),
        (VALID + "1", "has 18 characters; this one has 19"),
        ("", "this one has 0"),
        ("X" + VALID[1:], "17 digits and then a digit or X"),
        (VALID[:-1] + "Y", "17 digits and then a digit or X"),
        ("１" + VALID[1:], "17 digits and then a digit or X"),  # a full-width digit
        (mistype_check(VALID), "a digit is probably mistyped"),
        (VALID[:15] + str((int(VALID[15]) + 1) % 10) + VALID[16:], "probably mistyped"),
        (VALID[:15] + VALID[16] + VALID[15] + VALID[17:], "probably mistyped"),  # swapped
        (make_ric(BEIJING, "19900230", "001"), "not a real birth date"),
        (make_ric(BEIJING, "19901301", "001"), "not a real birth date"),
        (make_ric("999999", "19900307", "001"), "not a known region code"),
    ],
)
def test_invalid_resident_ids(number: str, says: str) -> None:
    with pytest.raises(KycError) as caught:
        validate_resident_id(number)
    assert says in str(caught.value)
    assert caught.value.field == "resident_id"
    # The message never repeats the number (it is safe to log).
    if len(number) > 6:
        assert number[:14] not in str(caught.value)


def test_birth_date_in_the_future_is_refused_when_today_is_given() -> None:
    number = make_ric(BEIJING, "20300101", "001")
    assert validate_resident_id(number) == number
    assert validate_resident_id(number, today=datetime.date(2030, 1, 1)) == number
    with pytest.raises(KycError, match="in the future"):
        validate_resident_id(number, today=datetime.date(2029, 12, 31))


@pytest.mark.parametrize(
    "text",
    ["13800138000", "+8613800138000", "+86 138 0013 8000", "0086-138-0013-8000",
     " 138-0013-8000 ", "+86 13800138000"],
)
def test_valid_phones(text: str) -> None:
    assert validate_phone(text) == "13800138000"


@pytest.mark.parametrize("prefix", ["13", "14", "15", "16", "17", "18", "19"])
def test_every_mobile_prefix(prefix: str) -> None:
    assert validate_phone(prefix + "912345678") == prefix + "912345678"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1380013800", "11 digits; this one has 10"),
        ("138001380001", "11 digits; this one has 12"),
        ("12800138000", "starts with 13 to 19"),
        ("23800138000", "starts with 13 to 19"),
        ("010-12345678", "starts with 13 to 19"),
        ("+1 13800138000", "only digits"),
        ("138OO138000", "only digits"),
        ("１３８００１３８０００", "only digits"),  # full-width digits
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_invalid_phones(text: str, says: str) -> None:
    with pytest.raises(KycError) as caught:
        validate_phone(text)
    assert says in str(caught.value)
    assert caught.value.field == "phone"


@pytest.mark.parametrize(
    ("text", "name"),
    [("张三", "张三"), ("  李四 ", "李四"), ("阿卜杜拉·艾买提", "阿卜杜拉·艾买提"),
     ("Zhang San", "Zhang San"), ("x" * 64, "x" * 64), ("e\u0301", "\u00e9")],
)
def test_valid_names(text: str, name: str) -> None:
    assert validate_name(text) == name


@pytest.mark.parametrize(
    ("text", "says"),
    [("", "empty"), ("   ", "empty"), ("\t\n", "empty"), ("x" * 65, "at most 64"),
     ("张\x00三", "control"), ("Zhang\u202eSan", "control"), ("a\nb", "control")],
)
def test_invalid_names(text: str, says: str) -> None:
    with pytest.raises(KycError, match=says) as caught:
        validate_name(text)
    assert caught.value.field == "name"
