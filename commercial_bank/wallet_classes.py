"""Wallet classes by KYC strength, and their limits as data (fen).

Class 1 is the strongest identity check and has the highest limits; class 4 needs only a
phone number. Two presets of limits, in CNY as published (the table holds fen):

    class  KYC                          balance cap   single   daily   yearly
    1      in person, ID + bank card        500,000   50,000  100,000  500,000
    2      remote, ID + bank card            10,000    5,000   10,000  300,000
    3      remote, ID                         2,000    2,000    2,000   50,000
    4      phone number only                  1,000      500    1,000   10,000   ("2020")
    4      phone number only                 10,000    2,000    5,000   10,000   ("later")

"2020" is one operator agreement published that year; "later" changes only class 4, as a
later public statement gave it (balance cap, single payment and daily; the yearly limit
was not restated, so it stays 10,000).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType

from cbdc.errors import ConfigError

FEN_PER_CNY = 100

PHONE = "phone"
RESIDENT_ID = "resident_id"
BANK_CARD = "bank_card"
IN_PERSON = "in_person"
EVIDENCE = frozenset({PHONE, RESIDENT_ID, BANK_CARD, IN_PERSON})


class WalletClass(IntEnum):
    """1 is the strongest KYC and the highest limits, 4 the weakest."""

    CLASS_1 = 1
    CLASS_2 = 2
    CLASS_3 = 3
    CLASS_4 = 4

    @property
    def kyc(self) -> frozenset[str]:
        """The evidence a customer must give to open a wallet of this class."""
        return _REQUIRED_KYC[self]

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_REQUIRED_KYC: Mapping[WalletClass, frozenset[str]] = MappingProxyType({
    WalletClass.CLASS_1: frozenset({PHONE, RESIDENT_ID, BANK_CARD, IN_PERSON}),
    WalletClass.CLASS_2: frozenset({PHONE, RESIDENT_ID, BANK_CARD}),
    WalletClass.CLASS_3: frozenset({PHONE, RESIDENT_ID}),
    WalletClass.CLASS_4: frozenset({PHONE}),
})
_DESCRIPTIONS: Mapping[WalletClass, str] = MappingProxyType({
    WalletClass.CLASS_1: "class 1: identity card and bank card checked in person",
    WalletClass.CLASS_2: "class 2: identity card and bank card checked remotely",
    WalletClass.CLASS_3: "class 3: identity card checked remotely",
    WalletClass.CLASS_4: "class 4: phone number only (anonymous)",
})


def required_kyc(wallet_class: WalletClass | int) -> frozenset[str]:
    """Evidence names ("phone", "resident_id", "bank_card", "in_person") a class needs."""
    return WalletClass(wallet_class).kyc


def strongest_class(evidence: Collection[str]) -> WalletClass | None:
    """The class with the highest limits that `evidence` allows, or None (no phone)."""
    unknown = set(evidence) - EVIDENCE
    if unknown:
        raise ValueError(f"unknown KYC evidence {sorted(unknown)}; known: {sorted(EVIDENCE)}")
    for wallet_class in sorted(WalletClass):
        if _REQUIRED_KYC[wallet_class] <= set(evidence):
            return wallet_class
    return None


@dataclass(frozen=True, slots=True)
class ClassLimits:
    """Limits of one wallet class, each in fen: the most a wallet may hold, the largest
    single payment, and the most it may pay in a day and in a year."""

    balance_cap: int
    single: int
    daily: int
    yearly: int

    def __post_init__(self) -> None:
        for name in ("balance_cap", "single", "daily", "yearly"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive whole number of fen, not {value!r}")
        if not self.single <= self.daily <= self.yearly:
            raise ValueError("limits must grow: single payment <= daily <= yearly")

    @classmethod
    def from_cny(cls, balance_cap: int, single: int, daily: int, yearly: int) -> ClassLimits:
        """Limits given in whole CNY, as published."""
        return cls(
            balance_cap * FEN_PER_CNY, single * FEN_PER_CNY, daily * FEN_PER_CNY,
            yearly * FEN_PER_CNY,
        )


@dataclass(frozen=True, slots=True)
class LimitPreset:
    """A named table of limits, one `ClassLimits` per wallet class."""

    name: str
    source: str
    table: Mapping[WalletClass, ClassLimits] = field(hash=False)

    def __post_init__(self) -> None:
        missing = set(WalletClass) - set(self.table)
        if missing:
            raise ValueError(f"preset {self.name!r} has no limits for {sorted(missing)}")
        object.__setattr__(self, "table", MappingProxyType(dict(self.table)))


_CLASSES_1_TO_3 = {
    WalletClass.CLASS_1: ClassLimits.from_cny(500_000, 50_000, 100_000, 500_000),
    WalletClass.CLASS_2: ClassLimits.from_cny(10_000, 5_000, 10_000, 300_000),
    WalletClass.CLASS_3: ClassLimits.from_cny(2_000, 2_000, 2_000, 50_000),
}

PRESET_2020 = LimitPreset(
    name="2020",
    source="an operator agreement published in 2020",
    table={
        **_CLASSES_1_TO_3,
        WalletClass.CLASS_4: ClassLimits.from_cny(1_000, 500, 1_000, 10_000),
    },
)
PRESET_LATER = LimitPreset(
    name="later",
    source="the 2020 agreement with class 4 as a later public statement gave it",
    table={
        **_CLASSES_1_TO_3,
        WalletClass.CLASS_4: ClassLimits.from_cny(10_000, 2_000, 5_000, 10_000),
    },
)
PRESETS: Mapping[str, LimitPreset] = MappingProxyType(
    {preset.name: preset for preset in (PRESET_2020, PRESET_LATER)}
)
DEFAULT_PRESET = PRESET_2020


def preset_by_name(name: str) -> LimitPreset:
    """"2020" or "later" (case and surrounding spaces ignored)."""
    preset = PRESETS.get(name.strip().lower())
    if preset is None:
        raise ConfigError(
            f"wallet limit preset {name!r} is not one of {', '.join(map(repr, PRESETS))}"
        )
    return preset


def limits(preset: LimitPreset | str, wallet_class: WalletClass | int) -> ClassLimits:
    """The limits of `wallet_class` under `preset` (a preset or its name)."""
    if isinstance(preset, str):
        preset = preset_by_name(preset)
    return preset.table[WalletClass(wallet_class)]
