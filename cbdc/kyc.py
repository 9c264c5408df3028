"""Know-your-customer fields, checked before a bank stores them: resident identity card
number, mainland mobile number and name.

Each validator returns the value in the one form the bank stores (compact, upper case,
no separators) or raises `KycError`, whose sentence says what to fix. The messages never
repeat the number itself, so they are safe to log.
"""

from __future__ import annotations

import datetime
import re
import unicodedata

from stdnum import exceptions as stdnum_errors
from stdnum.cn import ric

from cbdc.errors import CbdcError

RIC_LENGTH = 18
NAME_MAX = 64

_SEPARATORS = re.compile(r"[\s-]+")
_MOBILE = re.compile(r"1[3-9][0-9]{9}", re.ASCII)
_RIC_BODY = re.compile(r"[0-9]{17}[0-9X]", re.ASCII)
# Control characters, and the bidirectional overrides that can make a name display as
# another one. Other format characters (ZWNJ, ZWJ) are kept: some scripts need them.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


class KycError(CbdcError):
    """A KYC field is malformed. `field` is "resident_id", "phone" or "name"."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def validate_resident_id(text: str, *, today: datetime.date | None = None) -> str:
    """The 18-character resident identity card number in compact form (final X upper case).

    Checks the length, the check character (ISO 7064 MOD 11-2), the birth date and the
    region code, using `stdnum.cn.ric`. Spaces and dashes between digits are allowed.
    With `today`, a birth date after it is refused too.
    """
    compact = _SEPARATORS.sub("", text).upper()
    if len(compact) != RIC_LENGTH:
        raise KycError(
            f"a resident identity card number has {RIC_LENGTH} characters; "
            f"this one has {len(compact)}",
            field="resident_id",
        )
    if not _RIC_BODY.fullmatch(compact):
        raise KycError(
            "a resident identity card number is 17 digits and then a digit or X",
            field="resident_id",
        )
    if compact[-1] != ric.calc_check_digit(compact):
        raise KycError(
            "the last character of the resident identity card number does not match "
            "the others: a digit is probably mistyped",
            field="resident_id",
        )
    try:
        birth = ric.get_birth_date(compact)
    except stdnum_errors.ValidationError:
        raise KycError(
            "characters 7 to 14 of the resident identity card number are not a real "
            "birth date (YYYYMMDD)",
            field="resident_id",
        ) from None
    if today is not None and birth > today:
        raise KycError(
            "the birth date in the resident identity card number is in the future",
            field="resident_id",
        )
    try:
        return str(ric.validate(compact))
    except stdnum_errors.ValidationError:
        # Everything else was checked above: what is left is the region.
        raise KycError(
            "the first 6 digits of the resident identity card number are not a known "
            "region code",
            field="resident_id",
        ) from None


def validate_phone(text: str) -> str:
    """A mainland China mobile number as its 11 digits, e.g. '13800138000'.

    Accepts an optional +86 (or 0086) country code and spaces or dashes between digits.
    """
    compact = _SEPARATORS.sub("", text)
    for prefix in ("+86", "0086"):
        if compact.startswith(prefix):
            compact = compact.removeprefix(prefix)
            break
    if not compact:
        raise KycError("the mobile number is empty", field="phone")
    if not compact.isascii() or not compact.isdigit():
        raise KycError(
            "a mobile number has only digits, optionally after +86", field="phone"
        )
    if len(compact) != 11:
        raise KycError(
            f"a mainland mobile number has 11 digits; this one has {len(compact)}",
            field="phone",
        )
    if not _MOBILE.fullmatch(compact):
        raise KycError(
            "a mainland mobile number starts with 13 to 19", field="phone"
        )
    return compact


def validate_name(text: str) -> str:
    """A person's name: surrounding spaces removed, NFC-normalised, 1 to 64 characters."""
    name = unicodedata.normalize("NFC", text.strip())
    if not name:
        raise KycError("the name is empty", field="name")
    if len(name) > NAME_MAX:
        raise KycError(
            f"the name has {len(name)} characters; at most {NAME_MAX} fit", field="name"
        )
    if any(
        unicodedata.category(char) in _UNSAFE_CATEGORIES or char in _BIDI_CONTROLS
        for char in name
    ):
        raise KycError(
            "the name contains a control or invisible formatting character", field="name"
        )
    return name
