"""Business-time calendars: 24/7, business hours in an IANA zone, and follow-the-sun unions.

Arithmetic runs on integer microseconds since the epoch, so `add_business_seconds` followed by
`business_seconds_between` round-trips exactly. Shift boundaries are local wall times resolved
with PEP 495 `fold=0`: a boundary inside a DST gap is read with the offset before the change
(so it lands as far after the gap start as it was written after it), an ambiguous one takes its
first occurrence. A week with no closed day and no offset change is skipped in one step.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from router.sla.instants import (
    DAY_US,
    US_PER_SECOND,
    CalendarError,
    day_date,
    from_us,
    round_even,
    to_us,
)

_ONE_WEEK: Final = timedelta(days=7)
_DAY_SECONDS: Final = 86_400
# A calendar that stays closed this long is misconfigured; fail instead of scanning forever.
MAX_SCAN_DAYS: Final = 3_660
_FAR_FUTURE_US: Final = 2**62
_CACHE_LIMIT: Final = 20_000
_HOUR_US: Final = 3_600 * US_PER_SECOND
# Cache sentinels: offsets and week totals are far below these.
_UNKNOWN: Final = 1 << 62
_MIXED: Final = (1 << 62) + 1

Interval = tuple[int, int]  # [start_us, end_us)
Shift = tuple[int, int]  # [start, end) in local seconds of the day; end may be 86400


def _seconds_to_us(seconds: float) -> int:
    if seconds < 0:
        raise CalendarError(f"cannot add negative business time ({seconds} s)")
    return round_even(seconds * US_PER_SECOND)


class Calendar(ABC):
    """Open time as a sorted stream of intervals; the arithmetic below works for any calendar."""

    name: str

    @abstractmethod
    def intervals_from(self, start_us: int) -> Iterator[Interval]:
        """Open intervals ending after `start_us`, ascending and disjoint (may touch)."""

    def add_us(self, start_us: int, amount_us: int) -> int:
        if amount_us == 0:
            return start_us
        remaining = amount_us
        for open_us, close_us in self.intervals_from(start_us):
            begin = max(open_us, start_us)
            span = close_us - begin
            if remaining <= span:
                return begin + remaining
            remaining -= span
        raise CalendarError(f"calendar {self.name!r} is never open after {from_us(start_us)}")

    def add_two_us(self, start_us: int, first_us: int, second_us: int) -> tuple[int, int]:
        """`add_us(start, first)` and `add_us(start, second)`: the second walk resumes where the
        first ended (open time adds up, and both answers are the earliest such instant)."""
        at = self.add_us(start_us, first_us)
        if second_us < first_us:
            return at, self.add_us(start_us, second_us)
        return at, self.add_us(at, second_us - first_us)

    def between_us(self, a_us: int, b_us: int) -> int:
        if b_us < a_us:
            return -self.between_us(b_us, a_us)
        total = 0
        for open_us, close_us in self.intervals_from(a_us):
            if open_us >= b_us:
                break
            total += min(close_us, b_us) - max(open_us, a_us)
        return total

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The moment `seconds` of open time after `start` (UTC). Zero returns `start`."""
        return from_us(self.add_us(to_us(start), _seconds_to_us(seconds)))

    def business_seconds_between(self, a: datetime, b: datetime) -> float:
        """Open seconds in [a, b); negative when b is before a."""
        return self.between_us(to_us(a), to_us(b)) / US_PER_SECOND

    def is_open(self, at: datetime) -> bool:
        at_us = to_us(at)
        for open_us, _close_us in self.intervals_from(at_us):
            return open_us <= at_us
        return False


class AlwaysOpen(Calendar):
    """24/7: business time is wall time."""

    def __init__(self, name: str = "always") -> None:
        self.name = name

    def intervals_from(self, start_us: int) -> Iterator[Interval]:
        yield (start_us, _FAR_FUTURE_US)

    def add_us(self, start_us: int, amount_us: int) -> int:
        return start_us + amount_us

    def between_us(self, a_us: int, b_us: int) -> int:
        return b_us - a_us


class DayIndexedCalendar(Calendar):
    """Open intervals cached per numbered day; arithmetic walks day totals and skips weeks.

    Days are ints (0 is 1970-01-01 as the subclass counts days): int keys hash and step far
    cheaper than `date` objects on the firing path. Subclasses say which day an instant falls
    on, what is open on a day, and the open time of the 7 days from a day when it can be had
    without building them (else None).
    """

    # Below this much remaining time a week jump cannot apply; skip the week lookup.
    _week_jump_floor_us: int = 0

    def __init__(self) -> None:
        # day -> (open intervals, their total length)
        self._day_cache: dict[int, tuple[tuple[Interval, ...], int]] = {}
        self._week_cache: dict[int, int | None] = {}

    @abstractmethod
    def day_of(self, us: int) -> int:
        """The number of the day (as this calendar counts days) holding the instant."""

    @abstractmethod
    def _compute_day(self, day: int) -> tuple[Interval, ...]:
        """Open intervals (UTC microseconds) of one day, ascending and disjoint."""

    @abstractmethod
    def _compute_week(self, first_day: int) -> int | None:
        """Open time of the 7 days from `first_day`, or None to walk them day by day."""

    def _day(self, day: int) -> tuple[tuple[Interval, ...], int]:
        cached = self._day_cache.get(day)
        if cached is None:
            intervals = self._compute_day(day)
            cached = (intervals, sum(e - s for s, e in intervals))
            if len(self._day_cache) >= _CACHE_LIMIT:
                self._day_cache.clear()
            self._day_cache[day] = cached
        return cached

    def day_intervals(self, day: int) -> tuple[Interval, ...]:
        return self._day(day)[0]

    def _week_us(self, first_day: int) -> int | None:
        week = self._week_cache.get(first_day, _UNKNOWN)
        if week == _UNKNOWN:
            week = self._compute_week(first_day)
            if len(self._week_cache) >= _CACHE_LIMIT:
                self._week_cache.clear()
            self._week_cache[first_day] = week
        return week

    def intervals_from(self, start_us: int) -> Iterator[Interval]:
        day = self.day_of(start_us)
        for _ in range(MAX_SCAN_DAYS):
            for interval in self.day_intervals(day):
                if interval[1] > start_us:
                    yield interval
            day += 1

    def add_us(self, start_us: int, amount_us: int) -> int:
        if amount_us == 0:
            return start_us
        remaining = amount_us
        day = self.day_of(start_us)
        for open_us, close_us in self._day(day)[0]:
            if close_us > start_us:
                begin = open_us if open_us > start_us else start_us
                span = close_us - begin
                if remaining <= span:
                    return begin + remaining
                remaining -= span
        # Later days lie wholly after `start_us`: whole weeks and days go by their totals.
        floor = self._week_jump_floor_us
        last = day + MAX_SCAN_DAYS
        day += 1
        while day < last:
            if remaining > floor:
                week_us = self._week_us(day)
                if week_us is not None and remaining > week_us:
                    remaining -= week_us
                    day += 7
                    continue
            intervals, total = self._day(day)
            if remaining <= total:
                for open_us, close_us in intervals:
                    span = close_us - open_us
                    if remaining <= span:
                        return open_us + remaining
                    remaining -= span
            remaining -= total
            day += 1
        raise CalendarError(f"calendar {self.name!r} is never open after {from_us(start_us)}")

    def between_us(self, a_us: int, b_us: int) -> int:
        if b_us < a_us:
            return -self.between_us(b_us, a_us)
        day, last_day = self.day_of(a_us), self.day_of(b_us)
        total = self._overlap(day, a_us, b_us)
        if day == last_day:
            return total
        day += 1
        while day < last_day:  # days wholly inside [a, b)
            if last_day - day >= 7:
                week_us = self._week_us(day)
                if week_us is not None:
                    total += week_us
                    day += 7
                    continue
            total += self._day(day)[1]
            day += 1
        return total + self._overlap(last_day, a_us, b_us)

    def _overlap(self, day: int, a_us: int, b_us: int) -> int:
        total = 0
        for open_us, close_us in self._day(day)[0]:
            overlap = min(close_us, b_us) - max(open_us, a_us)
            if overlap > 0:
                total += overlap
        return total


class BusinessHours(DayIndexedCalendar):
    """Weekly shifts in one IANA time zone, closed on holidays and on listed dates.

    Days are local dates. The UTC offset is cached per UTC hour: an hour whose two ends share
    an offset holds no change (zones change at most twice a year), so its local day is plain
    arithmetic; an hour holding a change is resolved through zoneinfo every time.
    """

    def __init__(
        self,
        name: str,
        timezone: str,
        weekly: Sequence[Sequence[Shift]],
        *,
        holiday_country: str | None = None,
        holiday_subdivision: str | None = None,
        closed_dates: Iterable[date] = (),
    ) -> None:
        super().__init__()
        self.name = name
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarError(f"calendar {name!r}: unknown time zone {timezone!r}") from exc
        self.weekly = _validated_week(name, weekly)
        self.nominal_week_us = sum(e - s for day in self.weekly for s, e in day) * US_PER_SECOND
        self._week_jump_floor_us = self.nominal_week_us
        self._holiday_region = (holiday_country, holiday_subdivision)
        if holiday_country is not None:
            self._holiday_dates(2000)  # fail now on an unknown country or subdivision
        self._custom_closed = frozenset(closed_dates)
        self._closed_by_year: dict[int, frozenset[date]] = {}
        self._hour_offsets: dict[int, int] = {}  # UTC hour -> offset in us, or _MIXED

    def _holiday_dates(self, year: int) -> frozenset[date]:
        country, subdivision = self._holiday_region
        if country is None:
            return frozenset()
        try:
            found = holidays.country_holidays(country, subdiv=subdivision, years=year)
        except NotImplementedError as exc:
            raise CalendarError(f"calendar {self.name!r}: {exc}") from exc
        return frozenset(found.keys())

    def is_closed_day(self, day: date) -> bool:
        closed = self._closed_by_year.get(day.year)
        if closed is None:
            closed = self._holiday_dates(day.year) | {
                d for d in self._custom_closed if d.year == day.year
            }
            self._closed_by_year[day.year] = closed
        return day in closed

    def day_of(self, us: int) -> int:
        hour = us // _HOUR_US
        offset = self._hour_offsets.get(hour, _UNKNOWN)
        if offset == _UNKNOWN:
            first = self._offset_us(hour * _HOUR_US)
            last = self._offset_us((hour + 1) * _HOUR_US - 1)
            offset = first if first == last else _MIXED
            if len(self._hour_offsets) >= _CACHE_LIMIT:
                self._hour_offsets.clear()
            self._hour_offsets[hour] = offset
        if offset == _MIXED:
            offset = self._offset_us(us)
        return (us + offset) // DAY_US

    def _offset_us(self, us: int) -> int:
        offset = from_us(us).astimezone(self.zone).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        return (offset.days * 86_400 + offset.seconds) * US_PER_SECOND + offset.microseconds

    def _compute_day(self, day: int) -> tuple[Interval, ...]:
        local = day_date(day)
        if self.is_closed_day(local):
            return ()
        midnight = datetime(local.year, local.month, local.day, tzinfo=self.zone)
        return tuple(
            (to_us(midnight + timedelta(seconds=s)), to_us(midnight + timedelta(seconds=e)))
            for s, e in self.weekly[local.weekday()]
        )

    def _compute_week(self, first_day: int) -> int | None:
        """The nominal week when no day is closed and the UTC offset is the same at both ends.

        A week holding two offset changes that cancel out would be missed; no zone has one.
        """
        first = day_date(first_day)
        if any(self.is_closed_day(first + timedelta(days=i)) for i in range(7)):
            return None
        start = datetime(first.year, first.month, first.day, tzinfo=self.zone)
        end_day = first + _ONE_WEEK
        end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=self.zone)
        if start.utcoffset() != end.utcoffset():
            return None
        return self.nominal_week_us


class FollowTheSun(DayIndexedCalendar):
    """Open whenever any member is open (teams in several zones covering for each other).

    Days are UTC days: each caches the members' merged intervals, clipped to the day.
    """

    def __init__(self, name: str, members: Sequence[BusinessHours | AlwaysOpen]) -> None:
        if not members:
            raise CalendarError(f"calendar {name!r}: follow-the-sun needs at least one member")
        super().__init__()
        self.name = name
        self.members = tuple(members)
        weeks = [m.nominal_week_us for m in self.members if isinstance(m, BusinessHours)]
        self._week_jump_floor_us = max(weeks, default=0)

    def day_of(self, us: int) -> int:
        return us // DAY_US

    def _compute_day(self, day: int) -> tuple[Interval, ...]:
        day_start = day * DAY_US
        day_end = day_start + DAY_US
        merged: list[Interval] = []
        streams = (member.intervals_from(day_start) for member in self.members)
        for open_us, close_us in heapq.merge(*streams):
            if open_us >= day_end:
                break
            open_us, close_us = max(open_us, day_start), min(close_us, day_end)
            if merged and open_us <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], close_us))
            else:
                merged.append((open_us, close_us))
        return tuple(merged)

    def _compute_week(self, first_day: int) -> int | None:
        return sum(self._day(first_day + i)[1] for i in range(7))


def _validated_week(name: str, weekly: Sequence[Sequence[Shift]]) -> tuple[tuple[Shift, ...], ...]:
    if len(weekly) != 7:
        raise CalendarError(f"calendar {name!r}: weekly schedule needs 7 days (Monday first)")
    week = tuple(tuple(sorted(day)) for day in weekly)
    for day in week:
        previous_end = 0
        for start, end in day:
            if not 0 <= start < end <= _DAY_SECONDS:
                raise CalendarError(f"calendar {name!r}: shift {start}-{end} s is not in a day")
            if start < previous_end:
                raise CalendarError(f"calendar {name!r}: shifts overlap at {start} s")
            previous_end = end
    if not any(week):
        raise CalendarError(f"calendar {name!r}: weekly schedule has no open time")
    return week
