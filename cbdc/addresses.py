"""Wallet addresses: bank, wallet number, two check digits, e.g. ``BANKA-000000001234-96``.

    <bank code>-<wallet number>-<check digits>
    2-12 of A-Z0-9  12 digits     2 digits, ISO 7064 MOD 97-10

The check digits come from `stdnum.iso7064.mod_97_10` over the bank code and the wallet
number, letters mapped as IBAN does (A=10 ... Z=35). Unlike IBAN, digits are mapped to two
digits as well (0 -> "00" ... 9 -> "09"), so every character of the address is one digit
in base 100, after a leading 1 that keeps leading zeros significant. That is what makes
the guarantee hold for every bank code: a single substituted character changes the number
by c*100**k with 0 < |c| <= 35, and a swap of two adjacent characters by c*99*100**k; 97
is prime and divides neither, so the remainder changes. (With IBAN's mixed widths, bank
codes ``B1`` and ``1B`` both read ``111``.) A typo in the check digits themselves is caught
because only one pair is right, and a dash moved or mistyped breaks the shape.

Readers are lenient where it is safe: surrounding spaces, lower case, and a space instead
of either dash. Errors are `AddressError`, one sentence a person can act on.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Collection
from dataclasses import dataclass, field

from stdnum.iso7064 import mod_97_10

from cbdc.errors import CbdcError

BANK_CODE_MIN = 2
BANK_CODE_MAX = 12
NUMBER_DIGITS = 12
CHECK_DIGITS = 2
NUMBER_LIMIT = 10**NUMBER_DIGITS
EXAMPLE = "BANKA-000000001234-96"

_BANK_CODE = re.compile(r"[A-Z0-9]{2,12}")
_BANK_CHARS = frozenset(string.ascii_uppercase + string.digits)
_DIGITS = frozenset(string.digits)
_SEPARATORS = frozenset("- ")
_PART_NAMES = ("bank code", "wallet number", "check digits")


class AddressError(CbdcError):
    """Text is not a wallet address, or its check digits do not match.

    `text` is what was read (None when the error came from building an address).
    """

    def __init__(self, message: str, *, text: str | None = None) -> None:
        super().__init__(message)
        self.text = text


def _base100(bank: str, number: int) -> str:
    """"1", then each character as two decimal digits: '0'-'9' -> 00-09, 'A'-'Z' -> 10-35.

    The leading 1 makes leading zeros count, so bank "00" is not bank "000" (a space typed
    over the first character reads as that character deleted, the space being trimmed).
    """
    body = "".join(f"{int(char, 36):02d}" for char in f"{bank}{number:0{NUMBER_DIGITS}d}")
    return "1" + body


@functools.lru_cache(maxsize=1 << 16)
def check_digits(bank: str, number: int) -> str:
    """The two ISO 7064 MOD 97-10 check digits of a bank code and wallet number.

    Cached: every payment prints and parses its wallets' addresses several times, and
    the digit arithmetic was about a tenth of a bank's CPU per payment."""
    return str(mod_97_10.calc_check_digits(_base100(bank, number)))


@dataclass(frozen=True, slots=True)
class WalletAddress:
    """A wallet at a bank. `str()` gives the address with its check digits."""

    bank: str
    number: int
    # str(self), once made: a payment prints its two addresses several times.
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.bank, str) or not _BANK_CODE.fullmatch(self.bank):
            raise AddressError(
                f"bank code {self.bank!r} must be {BANK_CODE_MIN} to {BANK_CODE_MAX} "
                "capital letters or digits, like BANKA"
            )
        if type(self.number) is not int or not 0 <= self.number < NUMBER_LIMIT:
            raise AddressError(
                f"wallet number {self.number!r} must be a whole number from 0 to "
                f"{NUMBER_LIMIT - 1} ({NUMBER_DIGITS} digits)"
            )

    @property
    def check_digits(self) -> str:
        return check_digits(self.bank, self.number)

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = f"{self.bank}-{self.number:0{NUMBER_DIGITS}d}-{self.check_digits}"
            object.__setattr__(self, "_text", text)
        return text


def address_for(bank: str, number: int) -> str:
    """The address text of wallet `number` at `bank`: ``address_for("BANKA", 1234)``."""
    return str(WalletAddress(bank, number))


def _scan(text: str) -> tuple[str | None, list[str]]:
    """Read normalised text left to right.

    Returns the first problem found (None if every character so far is plausible) and the
    parts read so far: one string each for the bank code, wallet number and check digits.
    """
    parts = [""]
    for position, char in enumerate(text, start=1):
        part = len(parts) - 1
        if char in _SEPARATORS:
            if part == 2:
                return "there is a third dash or space after the check digits", parts
            problem = _complete_part_problem(part, parts[part])
            if problem is not None:
                return problem, parts
            parts.append("")
            continue
        if part == 0:
            if char not in _BANK_CHARS:
                return (
                    f"character {position} ({char!r}) cannot be in a bank code, "
                    "which has only letters A-Z and digits",
                    parts,
                )
            if len(parts[0]) == BANK_CODE_MAX:
                return (
                    f"the bank code is longer than {BANK_CODE_MAX} characters: "
                    "a dash should follow it",
                    parts,
                )
        else:
            if char not in _DIGITS:
                return (
                    f"character {position} ({char!r}) should be a digit of the "
                    f"{_PART_NAMES[part]}",
                    parts,
                )
            if part == 1 and len(parts[1]) == NUMBER_DIGITS:
                return (
                    f"the wallet number is longer than {NUMBER_DIGITS} digits: "
                    "a dash should follow it",
                    parts,
                )
            if part == 2 and len(parts[2]) == CHECK_DIGITS:
                return f"there are more than {CHECK_DIGITS} check digits at the end", parts
        parts[part] += char
    return None, parts


def _complete_part_problem(part: int, value: str) -> str | None:
    """What is wrong with a part that a dash (or the end of the text) closes."""
    if part == 0:
        if not value:
            return "the bank code is missing before the first dash"
        if len(value) < BANK_CODE_MIN:
            return (
                f"bank code {value!r} is too short to be one: bank codes have "
                f"{BANK_CODE_MIN} to {BANK_CODE_MAX} letters or digits"
            )
    elif part == 1 and not value:
        return "the wallet number is missing between the dashes"
    elif part == 1 and len(value) != NUMBER_DIGITS:
        return (
            f"the wallet number has {len(value)} digits; it needs exactly {NUMBER_DIGITS} "
            "(with leading zeros)"
        )
    elif part == 2 and len(value) != CHECK_DIGITS:
        return f"there should be {CHECK_DIGITS} check digits at the end, not {len(value)}"
    return None


def _normalise(text: str) -> str:
    # Upper-case ASCII letters only: str.upper() would turn 'ß' into 'SS'.
    return "".join(char.upper() if char.isascii() else char for char in text)


def _checksum_problem(bank: str, number: str, digits: str) -> str | None:
    if not mod_97_10.is_valid(_base100(bank, int(number)) + digits):
        return "the check digits do not match: a character is probably mistyped"
    return None


# The longest canonical address: bank code, dash, wallet number, dash, check digits.
CANONICAL_MAX = BANK_CODE_MAX + 1 + NUMBER_DIGITS + 1 + CHECK_DIGITS


def canonical_address(text: str) -> WalletAddress | None:
    """The address `text` spells when it is the canonical spelling of one (as `str()`
    prints it), else None.

    Services read the same few thousand addresses over and over (every payment order
    names two, every credit from the central bank one); reading one afresh (scanning it
    and summing its check digits) was about a twentieth of a bank's CPU per payment, so
    readings are cached. Only short texts are looked up, so the cache stays small
    whatever a client sends."""
    if len(text) > CANONICAL_MAX:
        return None
    return _canonical_reading(text)


@functools.lru_cache(maxsize=1 << 16)
def _canonical_reading(text: str) -> WalletAddress | None:
    try:
        address = _read_leniently(text)
    except AddressError:
        return None
    return address if str(address) == text else None


def parse_address(text: str, *, known_banks: Collection[str] | None = None) -> WalletAddress:
    """Read an address, leniently (spaces around, lower case, spaces for dashes).

    With `known_banks`, an address at any other bank is refused as well.
    """
    if not isinstance(text, str):
        raise AddressError(f"an address is text, not {type(text).__name__}")
    address = canonical_address(text) or _read_leniently(text)
    if known_banks is not None and address.bank not in known_banks:
        raise AddressError(
            f"{text.strip()!r} is not a wallet address here: no bank with code "
            f"{address.bank} is known",
            text=text,
        )
    return address


def _read_leniently(text: str) -> WalletAddress:
    normalised = _normalise(text.strip())
    problem, parts = _scan(normalised)
    if problem is None:
        last = len(parts) - 1
        problem = _complete_part_problem(last, parts[last])
        if len(parts) == 1:
            problem = f"an address has three parts separated by dashes, like {EXAMPLE}"
        elif problem is None and len(parts) == 2:
            problem = "the check digits are missing at the end"
        elif problem is None:
            problem = _checksum_problem(*parts)
    if problem is not None:
        raise AddressError(f"{text.strip()!r} is not a wallet address: {problem}", text=text)
    bank, number, _ = parts
    return WalletAddress(bank, int(number))


def _complete(parts: list[str]) -> bool:
    return len(parts) == 3 and len(parts[2]) == CHECK_DIGITS


def check_partial(text: str) -> str | None:
    """For checking as someone types: None while typing more could still make `text` an
    address (or it is a valid one), else the problem in one sentence.

    A trailing space may be the separator being typed, so it is kept, except after a
    complete address, where `parse_address` trims it.
    """
    normalised = _normalise(text.lstrip())
    problem, parts = _scan(normalised)
    trimmed = normalised.rstrip()
    if problem is not None and trimmed != normalised:
        trimmed_problem, trimmed_parts = _scan(trimmed)
        if trimmed_problem is None and _complete(trimmed_parts):
            problem, parts = None, trimmed_parts
    if problem is None and _complete(parts):
        problem = _checksum_problem(*parts)
    return problem
