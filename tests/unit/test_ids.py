"""cbdc.ids: unsigned 128-bit ids, never zero, time-ordered when made here."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbdc import ids
from cbdc.ids import id_from_bytes, id_sequence, id_to_bytes, is_valid_id, new_id, parse_id

U128 = 1 << 128
ID = st.integers(1, U128 - 1)


def test_new_id_is_valid_and_carries_its_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new id is a valid id whose top 48 bits are the creation time in ms."""
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_741_572_000_123_456_789)
    made = new_id()
    assert is_valid_id(made)
    assert made >> 80 == 1_741_572_000_123


def test_new_ids_sort_by_time_and_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids made in a later millisecond are larger; ids of the same one still differ."""
    clock = iter([1_000_000_000_000_000, 1_000_000_000_000_000, 1_000_000_001_000_000])
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    first, second, later = new_id(), new_id(), new_id()
    assert first != second
    assert later > max(first, second)


def test_a_senders_ids_start_at_its_time_and_count_up(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """A sequence starts with an id of its start's millisecond and goes up by one; a
    sequence started a millisecond later sorts after it."""
    clock = iter([1_741_572_000_123_000_000, 1_741_572_000_124_000_000])
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    first, later = id_sequence(), id_sequence()
    made = [next(first) for _ in range(1000)]
    assert made[0] >> 80 == 1_741_572_000_123
    assert made == list(range(made[0], made[0] + 1000))
    assert all(is_valid_id(i) for i in made)
    assert next(later) > made[-1]


@pytest.mark.parametrize(("value", "valid"), [
    (1, True), (U128 - 1, True), (0, False), (-1, False), (U128, False), (True, False),
    (1.0, False), ("1", False), (None, False),
])
def test_is_valid_id(value: object, valid: bool) -> None:
    """Ids are ints from 1 to 2**128-1; bools, floats and strings are not ids."""
    assert is_valid_id(value) is valid


@given(ID, ID)
def test_id_bytes_keep_numeric_order(a: int, b: int) -> None:
    """16 big-endian bytes: byte order is numeric order, and they read back."""
    assert len(id_to_bytes(a)) == 16
    assert id_from_bytes(id_to_bytes(a)) == a
    assert (a < b) == (id_to_bytes(a) < id_to_bytes(b))


@pytest.mark.parametrize(("text", "value"), [
    ("12345", 12345), ("0x1F", 31), ("0X1f", 31), ("  42 ", 42), ("1", 1),
    (str(U128 - 1), U128 - 1), ("0x" + "f" * 32, U128 - 1),
])
def test_parse_id(text: str, value: int) -> None:
    """Decimal or 0x-hex text from 1 to 2**128-1 is an id."""
    assert parse_id(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.5", "0x", "0xg", "1e5"])
def test_parse_id_refuses_non_numbers(text: str) -> None:
    """Text that is not a number says so."""
    with pytest.raises(ValueError, match="not a decimal or 0x-hex integer"):
        parse_id(text)


@pytest.mark.parametrize("text", ["0", "0x0", "-1", str(U128), "0x1" + "0" * 32])
def test_parse_id_refuses_out_of_range(text: str) -> None:
    """0, negatives and 2**128 and above are refused with the range named."""
    with pytest.raises(ValueError, match="between 1 and 2\\*\\*128-1"):
        parse_id(text)


@pytest.mark.parametrize("text", ["1_000", "+5", "৪"])
def test_parse_id_accepts_plain_digits_only(text: str) -> None:
    """An id is written with ASCII digits only (or 0x and hex digits)."""
    with pytest.raises(ValueError, match="not a decimal or 0x-hex integer"):
        parse_id(text)


@given(st.integers(0, U128 - 1), st.sampled_from(["lower", "upper", "braces", "hex", "urn"]))
def test_wire_ids_parse_as_uuid_does_in_every_spelling(value: int, spelling: str) -> None:
    """cbdc.wire.id_from_text reads the canonical spelling itself and leaves the rest to
    uuid.UUID: both give the same number, and zero is refused unless allowed."""
    import uuid

    from cbdc.wire import id_from_text

    text = str(uuid.UUID(int=value))
    text = {"lower": text, "upper": text.upper(), "braces": "{" + text + "}",
            "hex": text.replace("-", ""), "urn": "urn:uuid:" + text}[spelling]
    assert id_from_text(text, allow_zero=True) == value
    if value == 0:
        with pytest.raises(ValueError, match="zero"):
            id_from_text(text)
    else:
        assert id_from_text(text) == value


@pytest.mark.parametrize(
    "text", ["", "not-a-uuid", "0" * 31, "00000000-0000-0000-0000-000000000001\n"])
def test_wire_ids_refuse_what_uuid_refuses(text: str) -> None:
    import uuid

    from cbdc.wire import id_from_text

    with pytest.raises(ValueError):
        uuid.UUID(text)
    with pytest.raises(ValueError):
        id_from_text(text)
