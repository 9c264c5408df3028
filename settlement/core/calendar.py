"""Calendar days and years in the ledger's time zone, for daily and yearly debit limits."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"


class LimitCalendar:
    """Maps a nanosecond timestamp to (day ordinal, year) in one time zone.

    A day rolls over at local midnight; `day` is the proleptic Gregorian ordinal, so
    consecutive days differ by one.
    """

    __slots__ = ("_cached_day", "_cached_range", "zone")

    def __init__(self, timezone: str = DEFAULT_TIMEZONE) -> None:
        self.zone = ZoneInfo(timezone)
        self._cached_range = (0, -1)
        self._cached_day = (0, 0)

    def day_and_year(self, timestamp_ns: int) -> tuple[int, int]:
        low, high = self._cached_range
        if low <= timestamp_ns <= high:
            return self._cached_day
        local = datetime.fromtimestamp(timestamp_ns / 1e9, self.zone)
        # Recompute exactly at the boundaries rather than trust float seconds there.
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        start_ns = int(midnight.timestamp()) * 1_000_000_000
        next_midnight = datetime.fromordinal(midnight.date().toordinal() + 1).replace(
            tzinfo=self.zone
        )
        end_ns = int(next_midnight.timestamp()) * 1_000_000_000 - 1
        if not start_ns <= timestamp_ns <= end_ns:  # float rounding near midnight
            return self._uncached(timestamp_ns)
        self._cached_range = (start_ns, end_ns)
        self._cached_day = (midnight.date().toordinal(), midnight.year)
        return self._cached_day

    def _uncached(self, timestamp_ns: int) -> tuple[int, int]:
        seconds, _ = divmod(timestamp_ns, 1_000_000_000)
        local = datetime.fromtimestamp(seconds, self.zone)
        return local.date().toordinal(), local.year
