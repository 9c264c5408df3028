"""commercial_bank.wallet_classes: KYC per class and the limit presets, pinned in fen."""

from __future__ import annotations

import dataclasses

import pytest

from cbdc.errors import ConfigError
from commercial_bank.wallet_classes import (
    DEFAULT_PRESET,
    PRESET_2020,
    PRESET_LATER,
    PRESETS,
    ClassLimits,
    LimitPreset,
    WalletClass,
    limits,
    preset_by_name,
    required_kyc,
    strongest_class,
)

# (balance cap, single payment, daily, yearly) in fen: CNY * 100.
TABLE_2020_FEN = {
    1: (50_000_000, 5_000_000, 10_000_000, 50_000_000),
    2: (1_000_000, 500_000, 1_000_000, 30_000_000),
    3: (200_000, 200_000, 200_000, 5_000_000),
    4: (100_000, 50_000, 100_000, 1_000_000),
}
TABLE_LATER_FEN = {**TABLE_2020_FEN, 4: (1_000_000, 200_000, 500_000, 1_000_000)}


@pytest.mark.parametrize(
    ("preset", "table"), [(PRESET_2020, TABLE_2020_FEN), (PRESET_LATER, TABLE_LATER_FEN)]
)
def test_presets_in_fen(preset: LimitPreset, table: dict[int, tuple[int, ...]]) -> None:
    for number, expected in table.items():
        assert dataclasses.astuple(limits(preset, number)) == expected
        assert limits(preset.name, WalletClass(number)) == ClassLimits(*expected)


def test_pinned_examples() -> None:
    assert limits(PRESET_2020, WalletClass.CLASS_1).balance_cap == 50_000_000
    assert limits(PRESET_2020, 4).single == 50_000  # ¥500
    assert limits(PRESET_LATER, 4).balance_cap == 1_000_000  # ¥10,000
    assert limits(PRESET_LATER, 4).yearly == limits(PRESET_2020, 4).yearly == 1_000_000
    assert DEFAULT_PRESET is PRESET_2020


def test_presets_differ_only_in_class_4() -> None:
    differing = [c for c in WalletClass if limits(PRESET_2020, c) != limits(PRESET_LATER, c)]
    assert differing == [WalletClass.CLASS_4]


def test_preset_by_name() -> None:
    assert preset_by_name("2020") is PRESET_2020
    assert preset_by_name(" LATER ") is PRESET_LATER
    assert set(PRESETS) == {"2020", "later"}
    with pytest.raises(ConfigError, match="'2021' is not one of '2020', 'later'"):
        preset_by_name("2021")


def test_required_kyc() -> None:
    assert required_kyc(WalletClass.CLASS_4) == {"phone"}
    assert required_kyc(3) == {"phone", "resident_id"}
    assert required_kyc(2) == {"phone", "resident_id", "bank_card"}
    assert required_kyc(1) == {"phone", "resident_id", "bank_card", "in_person"}
    assert WalletClass.CLASS_1.kyc == required_kyc(1)
    # Each stronger class asks for everything a weaker one does.
    for weaker, stronger in zip([4, 3, 2], [3, 2, 1], strict=True):
        assert required_kyc(weaker) < required_kyc(stronger)
    with pytest.raises(ValueError, match="5"):
        required_kyc(5)


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        (set(), None),
        ({"resident_id", "bank_card"}, None),  # no phone: no wallet at all
        ({"phone"}, WalletClass.CLASS_4),
        ({"phone", "bank_card"}, WalletClass.CLASS_4),
        ({"phone", "resident_id"}, WalletClass.CLASS_3),
        ({"phone", "resident_id", "in_person"}, WalletClass.CLASS_3),
        ({"phone", "resident_id", "bank_card"}, WalletClass.CLASS_2),
        ({"phone", "resident_id", "bank_card", "in_person"}, WalletClass.CLASS_1),
    ],
)
def test_strongest_class(evidence: set[str], expected: WalletClass | None) -> None:
    assert strongest_class(evidence) == expected


def test_strongest_class_refuses_unknown_evidence() -> None:
    with pytest.raises(ValueError, match="passport"):
        strongest_class({"phone", "passport"})


def test_limits_are_checked_values() -> None:
    with pytest.raises(ValueError, match="positive whole number of fen"):
        ClassLimits(100, 10.5, 100, 1000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single payment <= daily <= yearly"):
        ClassLimits(100, 200, 100, 1000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits(PRESET_2020, 1).single = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        PRESET_2020.table[WalletClass.CLASS_1] = ClassLimits(1, 1, 1, 1)  # type: ignore[index]
    with pytest.raises(ValueError, match="no limits for"):
        LimitPreset("partial", "test", {WalletClass.CLASS_1: ClassLimits(1, 1, 1, 1)})
