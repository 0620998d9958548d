"""Properties of business-time arithmetic over random instants, 2024-2027."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from router.sla.calendar import (
    AlwaysOpen,
    BusinessHours,
    Calendar,
    DayIndexedCalendar,
    FollowTheSun,
)
from router.sla.instants import US_PER_SECOND, to_us

H = 3600
WEEKDAYS = 5
SPLIT = [(9 * H, 12 * H + 1800), (13 * H + 1800, 18 * H)]

BERLIN = BusinessHours(
    "berlin",
    "Europe/Berlin",
    [SPLIT] * WEEKDAYS + [[], []],
    holiday_country="DE",
    holiday_subdivision="BE",
    closed_dates=[date(2025, 12, 24)],
)
NEW_YORK = BusinessHours(
    "new-york",
    "America/New_York",
    [[(9 * H, 17 * H)]] * WEEKDAYS + [[(10 * H, 14 * H)], []],
    holiday_country="US",
)
NIGHTS = BusinessHours("nights", "Europe/Berlin", [[(0, 3 * H), (22 * H, 24 * H)]] * 7)
SUN = FollowTheSun(
    "sun",
    [
        BERLIN,
        NEW_YORK,
        BusinessHours("sydney", "Australia/Sydney", [[(9 * H, 17 * H)]] * 5 + [[], []]),
    ],
)
CALENDARS: list[Calendar] = [BERLIN, NEW_YORK, NIGHTS, SUN, AlwaysOpen()]
DAY_INDEXED: list[DayIndexedCalendar] = [BERLIN, NEW_YORK, NIGHTS, SUN]

START = to_us(datetime(2024, 1, 1, tzinfo=UTC))
END = START + 4 * 365 * 86_400 * US_PER_SECOND

instants = st.integers(min_value=START, max_value=END)
# Whole milliseconds, so a float number of seconds converts to microseconds exactly.
durations_ms = st.integers(min_value=0, max_value=400 * H * 1000)
calendars = st.sampled_from(CALENDARS)
# No deadline: the first query of a year builds its holiday table.
calendar_settings = settings(deadline=None, max_examples=150)


@calendar_settings
@given(calendars, instants, durations_ms)
def test_add_then_between_round_trips(calendar: Calendar, start: int, ms: int) -> None:
    end = calendar.add_us(start, ms * 1000)
    assert calendar.between_us(start, end) == ms * 1000


@calendar_settings
@given(calendars, instants, durations_ms, durations_ms)
def test_add_is_monotonic(calendar: Calendar, start: int, ms_a: int, ms_b: int) -> None:
    low, high = sorted((ms_a, ms_b))
    assert calendar.add_us(start, low * 1000) <= calendar.add_us(start, high * 1000)


@calendar_settings
@given(calendars, st.lists(instants, min_size=3, max_size=3))
def test_between_is_additive_and_bounded_by_wall_time(
    calendar: Calendar, points: list[int]
) -> None:
    a, b, c = sorted(points)
    assert calendar.between_us(a, b) + calendar.between_us(b, c) == calendar.between_us(a, c)
    assert 0 <= calendar.between_us(a, c) <= c - a


@calendar_settings
@given(st.sampled_from(DAY_INDEXED), instants, st.integers(0, 2000 * H * 1000))
def test_week_jumps_agree_with_the_plain_interval_walk(
    calendar: DayIndexedCalendar, start: int, ms: int
) -> None:
    # Calendar.add_us / between_us walk every interval; day-indexed calendars skip weeks.
    end = calendar.add_us(start, ms * 1000)
    assert end == Calendar.add_us(calendar, start, ms * 1000)
    assert calendar.between_us(start, end) == Calendar.between_us(calendar, start, end)


@calendar_settings
@given(instants, instants)
def test_union_covers_each_member_and_no_more_than_all(a: int, b: int) -> None:
    a, b = sorted((a, b))
    members = [m.between_us(a, b) for m in SUN.members]
    assert max(members) <= SUN.between_us(a, b) <= sum(members)


@calendar_settings
@given(calendars, instants, durations_ms, durations_ms)
def test_adding_two_amounts_in_one_walk_agrees_with_two_walks(
    calendar: Calendar, start: int, ms_a: int, ms_b: int
) -> None:
    # A clock's warning and deadline: the deadline walk resumes where the warning's ended.
    # Also on the hour with whole half hours: warnings that land exactly on shift boundaries.
    half_hour, hour = 1800 * US_PER_SECOND, 3600 * US_PER_SECOND
    on_boundaries = (
        start // hour * hour,
        ms_a // 1000 // 1800 * half_hour,
        ms_b // 1000 // 1800 * half_hour,
    )
    for at, a, b in ((start, ms_a * 1000, ms_b * 1000), on_boundaries):
        expected = (calendar.add_us(at, a), calendar.add_us(at, b))
        assert calendar.add_two_us(at, a, b) == expected
        assert Calendar.add_us(calendar, at, b) == expected[1]  # the plain interval walk
