"""settlement.core.calendar: the local day and year that daily and yearly limits count in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.core.calendar import DEFAULT_TIMEZONE, LimitCalendar

NS = 1_000_000_000
SHANGHAI = timezone(timedelta(hours=8))  # UTC+8 all year since 1991: an independent oracle


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       tz: timezone | ZoneInfo = SHANGHAI) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()) * NS


def shanghai_day_and_year(ts_ns: int) -> tuple[int, int]:
    local = date(1970, 1, 1) + timedelta(days=(ts_ns // NS + 8 * 3600) // 86400)
    return local.toordinal(), local.year


def test_default_zone_is_shanghai() -> None:
    """Limits count in China Standard Time unless configured otherwise."""
    assert DEFAULT_TIMEZONE == "Asia/Shanghai"
    assert str(LimitCalendar().zone) == "Asia/Shanghai"


def test_day_turns_at_local_midnight() -> None:
    """23:59:59.999999999 is still today; 00:00:00 is the next day (16:00 UTC)."""
    calendar = LimitCalendar()
    midnight = at(2025, 3, 11)
    assert midnight == at(2025, 3, 10, 16, tz=UTC)
    assert calendar.day_and_year(midnight - 1) == (date(2025, 3, 10).toordinal(), 2025)
    assert calendar.day_and_year(midnight) == (date(2025, 3, 11).toordinal(), 2025)
    assert calendar.day_and_year(midnight - 1) == (date(2025, 3, 10).toordinal(), 2025)


def test_year_turns_at_local_new_year() -> None:
    """31 December 23:59:59.999999999 is this year; 1 January 00:00 is the next, one day on."""
    calendar = LimitCalendar()
    new_year = at(2026, 1, 1)
    assert calendar.day_and_year(new_year - 1) == (date(2025, 12, 31).toordinal(), 2025)
    assert calendar.day_and_year(new_year) == (date(2026, 1, 1).toordinal(), 2026)


def test_utc_midnight_is_not_a_new_day_in_shanghai() -> None:
    """08:00 in Shanghai (UTC midnight) is the same local day as 07:59."""
    calendar = LimitCalendar()
    utc_midnight = at(2025, 3, 11, tz=UTC)
    assert calendar.day_and_year(utc_midnight - 1) == calendar.day_and_year(utc_midnight)


def test_leap_day() -> None:
    """29 February exists in a leap year and days stay consecutive around it."""
    calendar = LimitCalendar()
    assert calendar.day_and_year(at(2024, 2, 29, 12))[0] == date(2024, 2, 29).toordinal()
    assert calendar.day_and_year(at(2024, 3, 1))[0] - calendar.day_and_year(
        at(2024, 2, 28))[0] == 2


@pytest.mark.parametrize(("zone", "day", "next_midnight_utc"), [
    # New York springs forward on 9 March 2025: a 23-hour day.
    ("America/New_York", date(2025, 3, 9), datetime(2025, 3, 10, 4, tzinfo=UTC)),
    # ... and falls back on 2 November 2025: a 25-hour day.
    ("America/New_York", date(2025, 11, 2), datetime(2025, 11, 3, 5, tzinfo=UTC)),
    # Santiago skips midnight on 8 September 2024 (00:00 does not exist, the day starts
    # at 01:00) and repeats 23:00-24:00 on 6 April 2024.
    ("America/Santiago", date(2024, 9, 7), datetime(2024, 9, 8, 4, tzinfo=UTC)),
    ("America/Santiago", date(2024, 4, 6), datetime(2024, 4, 7, 4, tzinfo=UTC)),
])
def test_other_zones_turn_at_their_own_midnight(zone: str, day: date,
                                                next_midnight_utc: datetime) -> None:
    """A configured zone's days end at its local midnight, daylight saving included."""
    calendar = LimitCalendar(zone)
    boundary = int(next_midnight_utc.timestamp()) * NS
    noon = int(datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(zone)).timestamp())
    assert calendar.day_and_year(noon * NS) == (day.toordinal(), day.year)
    assert calendar.day_and_year(boundary - 1) == (day.toordinal(), day.year)
    assert calendar.day_and_year(boundary) == (day.toordinal() + 1, day.year)
    assert calendar.day_and_year(boundary - 1) == (day.toordinal(), day.year)


MIDNIGHTS = st.integers(8000, 47000).map(lambda days: (days * 86400 - 8 * 3600) * NS)
NEAR_MIDNIGHT = st.tuples(MIDNIGHTS, st.integers(-3, 3)).map(sum)
ANY_TIME = st.integers(at(1992, 1, 1), at(2100, 1, 1))


@given(st.lists(st.one_of(NEAR_MIDNIGHT, ANY_TIME, NEAR_MIDNIGHT.map(lambda t: t - 1000)),
                min_size=1, max_size=30))
def test_any_sequence_of_times_maps_to_the_right_day(times: list[int]) -> None:
    """One calendar asked about times in any order (it caches the current day) always
    answers the local date, to the nanosecond around midnight."""
    calendar = LimitCalendar()
    for ts in times:
        assert calendar.day_and_year(ts) == shanghai_day_and_year(ts), ts
