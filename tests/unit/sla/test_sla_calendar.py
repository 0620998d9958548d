"""Business-time arithmetic with hand-worked expectations (every expected value is a literal).

Offsets used: Berlin CET +01:00 / CEST +02:00 (2025 changes: 30 Mar, 26 Oct); New York EST -05:00
/ EDT -04:00 (2025 changes: 9 Mar, 2 Nov); Sydney AEDT +11:00 until 6 Apr 2025.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from router.sla.calendar import AlwaysOpen, BusinessHours, FollowTheSun
from router.sla.instants import CalendarError

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
H = 3600
NINE_TO_FIVE = [(9 * H, 17 * H)]
WEEKDAYS_9_17 = [NINE_TO_FIVE] * 5 + [[], []]


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture(scope="module")
def berlin() -> BusinessHours:
    return BusinessHours("berlin", "Europe/Berlin", WEEKDAYS_9_17)


@pytest.fixture(scope="module")
def berlin_holidays() -> BusinessHours:
    return BusinessHours(
        "berlin-holidays",
        "Europe/Berlin",
        WEEKDAYS_9_17,
        holiday_country="DE",
        holiday_subdivision="BE",
        closed_dates=[date(2025, 12, 24), date(2025, 12, 31)],
    )


@pytest.fixture(scope="module")
def new_york() -> BusinessHours:
    return BusinessHours(
        "new-york",
        "America/New_York",
        WEEKDAYS_9_17,
        holiday_country="US",
        holiday_subdivision="NY",
    )


@pytest.fixture(scope="module")
def follow_the_sun() -> FollowTheSun:
    members = [
        BusinessHours("sydney", "Australia/Sydney", WEEKDAYS_9_17),
        BusinessHours("berlin", "Europe/Berlin", WEEKDAYS_9_17),
        BusinessHours("new-york", "America/New_York", WEEKDAYS_9_17),
    ]
    return FollowTheSun("sun", members)


@pytest.fixture(scope="module")
def night_shift() -> BusinessHours:
    return BusinessHours("night", "Europe/Berlin", [[(0, 6 * H)]] * 7)


@pytest.fixture(scope="module")
def split() -> BusinessHours:
    shifts = [(9 * H, 12 * H + 1800), (13 * H + 1800, 18 * H)]  # lunch 12:30-13:30
    return BusinessHours("split", "Europe/Berlin", [shifts] * 5 + [[], []])


class TestDaylightSavingWeekends:
    def test_berlin_spring_forward_weekend(self, berlin: BusinessHours) -> None:
        friday_4pm = datetime(2025, 3, 28, 16, 0, tzinfo=BERLIN)  # 15:00 UTC
        # 1 h on Friday, then Monday 09:00-10:00 CEST (07:00-08:00 UTC)
        assert berlin.add_business_seconds(friday_4pm, 2 * H) == utc(2025, 3, 31, 8, 0)

    def test_berlin_spring_forward_between(self, berlin: BusinessHours) -> None:
        friday_9am = datetime(2025, 3, 28, 9, 0, tzinfo=BERLIN)
        monday_5pm = datetime(2025, 3, 31, 17, 0, tzinfo=BERLIN)
        assert berlin.business_seconds_between(friday_9am, monday_5pm) == 16 * H

    def test_berlin_fall_back_weekend(self, berlin: BusinessHours) -> None:
        friday_4pm = datetime(2025, 10, 24, 16, 0, tzinfo=BERLIN)  # CEST
        assert berlin.add_business_seconds(friday_4pm, 2 * H) == utc(2025, 10, 27, 9, 0)

    def test_new_york_spring_forward_weekend(self, new_york: BusinessHours) -> None:
        friday_4pm = utc(2025, 3, 7, 21, 0)  # 16:00 EST
        assert new_york.add_business_seconds(friday_4pm, 2 * H) == utc(2025, 3, 10, 14, 0)

    def test_new_york_fall_back_weekend(self, new_york: BusinessHours) -> None:
        friday_4pm = utc(2025, 10, 31, 20, 0)  # 16:00 EDT
        assert new_york.add_business_seconds(friday_4pm, 2 * H) == utc(2025, 11, 3, 15, 0)

    def test_always_open_counts_the_short_day(self) -> None:
        saturday_noon = datetime(2025, 3, 29, 12, 0, tzinfo=BERLIN)  # 11:00 UTC
        sunday_noon = datetime(2025, 3, 30, 12, 0, tzinfo=BERLIN)  # 10:00 UTC
        always = AlwaysOpen()
        assert always.business_seconds_between(saturday_noon, sunday_noon) == 23 * H
        assert always.add_business_seconds(saturday_noon, 24 * H) == utc(2025, 3, 30, 11, 0)


class TestShiftsAcrossTheChange:
    def test_shift_loses_an_hour_in_spring(self, night_shift: BusinessHours) -> None:
        # Sunday 00:00 CET (Sat 23:00 UTC) to 06:00 CEST (04:00 UTC)
        got = night_shift.business_seconds_between(utc(2025, 3, 29, 12, 0), utc(2025, 3, 30, 12, 0))
        assert got == 5 * H

    def test_shift_gains_an_hour_in_autumn(self, night_shift: BusinessHours) -> None:
        # Sunday 00:00 CEST (Sat 22:00 UTC) to 06:00 CET (05:00 UTC)
        got = night_shift.business_seconds_between(
            utc(2025, 10, 25, 12, 0), utc(2025, 10, 26, 12, 0)
        )
        assert got == 7 * H
        start = datetime(2025, 10, 26, 0, 0, tzinfo=BERLIN)
        assert night_shift.add_business_seconds(start, 6.5 * H) == utc(2025, 10, 26, 4, 30)

    def test_boundary_inside_the_gap_reads_the_old_offset(self) -> None:
        # 02:30 does not exist on 30 Mar: fold=0 reads it as 02:30 CET = 01:30 UTC (03:30 CEST)
        early = BusinessHours("early", "Europe/Berlin", [[(2 * H + 1800, 5 * H)]] * 7)
        got = early.business_seconds_between(utc(2025, 3, 30, 0, 0), utc(2025, 3, 30, 12, 0))
        assert got == 1.5 * H


class TestHolidaysAndClosedDates:
    def test_easter_in_berlin(self, berlin_holidays: BusinessHours) -> None:
        thursday_4pm = datetime(2025, 4, 17, 16, 0, tzinfo=BERLIN)
        # Good Friday 18 Apr and Easter Monday 21 Apr are closed
        assert berlin_holidays.add_business_seconds(thursday_4pm, 2 * H) == utc(2025, 4, 22, 8, 0)

    def test_christmas_with_custom_closed_date(self, berlin_holidays: BusinessHours) -> None:
        tuesday_4pm = datetime(2025, 12, 23, 16, 0, tzinfo=BERLIN)
        # 24 Dec custom, 25-26 Dec holidays, then the weekend
        assert berlin_holidays.add_business_seconds(tuesday_4pm, 2 * H) == utc(2025, 12, 29, 9, 0)

    def test_year_boundary(self, berlin_holidays: BusinessHours) -> None:
        tuesday_4pm = datetime(2025, 12, 30, 16, 0, tzinfo=BERLIN)
        # 31 Dec custom, 1 Jan holiday
        assert berlin_holidays.add_business_seconds(tuesday_4pm, 2 * H) == utc(2026, 1, 2, 9, 0)

    def test_thanksgiving_in_new_york(self, new_york: BusinessHours) -> None:
        wednesday_4pm = utc(2025, 11, 26, 21, 0)  # 16:00 EST
        assert new_york.add_business_seconds(wednesday_4pm, 2 * H) == utc(2025, 11, 28, 15, 0)

    def test_holiday_counts_nothing(self, berlin_holidays: BusinessHours) -> None:
        good_friday = (utc(2025, 4, 18, 0, 0), utc(2025, 4, 19, 0, 0))
        assert berlin_holidays.business_seconds_between(*good_friday) == 0


class TestSplitShifts:
    def test_lunch_break_is_skipped(self, split: BusinessHours) -> None:
        noon = datetime(2025, 1, 6, 12, 0, tzinfo=BERLIN)
        assert split.add_business_seconds(noon, H) == utc(2025, 1, 6, 13, 0)  # 14:00 CET
        assert split.business_seconds_between(noon, datetime(2025, 1, 6, 14, 0, tzinfo=BERLIN)) == H

    def test_start_inside_the_break(self, split: BusinessHours) -> None:
        break_time = datetime(2025, 1, 6, 12, 45, tzinfo=BERLIN)
        assert split.add_business_seconds(break_time, 0) == break_time
        assert split.add_business_seconds(break_time, 1800) == utc(2025, 1, 6, 13, 0)

    def test_landing_on_a_shift_end_stays_there(self, split: BusinessHours) -> None:
        nine = datetime(2025, 1, 6, 9, 0, tzinfo=BERLIN)
        assert split.add_business_seconds(nine, 3.5 * H) == utc(2025, 1, 6, 11, 30)  # 12:30 CET

    def test_is_open(self, split: BusinessHours) -> None:
        assert split.is_open(datetime(2025, 1, 6, 10, 0, tzinfo=BERLIN))
        assert not split.is_open(datetime(2025, 1, 6, 13, 0, tzinfo=BERLIN))
        assert not split.is_open(datetime(2025, 1, 11, 10, 0, tzinfo=BERLIN))  # Saturday


class TestFollowTheSun:
    # January: Sydney 22:00-06:00 UTC (day before), Berlin 08:00-16:00, New York 14:00-22:00 UTC

    def test_gap_between_sydney_and_berlin(self, follow_the_sun: FollowTheSun) -> None:
        # 30 min to Sydney's close at 06:00 UTC, closed until Berlin opens at 08:00 UTC
        got = follow_the_sun.add_business_seconds(utc(2025, 1, 13, 5, 30), H)
        assert got == utc(2025, 1, 13, 8, 30)

    def test_overlap_is_counted_once(self, follow_the_sun: FollowTheSun) -> None:
        got = follow_the_sun.business_seconds_between(
            utc(2025, 1, 13, 8, 0), utc(2025, 1, 13, 22, 0)
        )
        assert got == 14 * H

    def test_weekend_handover(self, follow_the_sun: FollowTheSun) -> None:
        # New York Friday 21:00-22:00 UTC, then Sydney's Monday opens Sunday 22:00 UTC
        got = follow_the_sun.business_seconds_between(
            utc(2025, 1, 17, 21, 0), utc(2025, 1, 20, 0, 0)
        )
        assert got == 3 * H

    def test_zones_that_change_on_different_dates(self, follow_the_sun: FollowTheSun) -> None:
        # 17 Mar: New York on EDT (13:00-21:00 UTC), Berlin still CET (08:00-16:00 UTC)
        got = follow_the_sun.business_seconds_between(
            utc(2025, 3, 17, 6, 0), utc(2025, 3, 17, 22, 0)
        )
        assert got == 13 * H


class TestLongSpans:
    def test_ten_thousand_hours_jump_whole_weeks(self) -> None:
        calendar = BusinessHours("berlin-fresh", "Europe/Berlin", WEEKDAYS_9_17)
        start = datetime(2025, 1, 6, 9, 0, tzinfo=BERLIN)
        # 10,000 h = 250 weeks of 40 h: ends on the Friday before Monday 22 Oct 2029, at 17:00 CEST
        end = calendar.add_business_seconds(start, 10_000 * H)
        assert end == utc(2029, 10, 19, 15, 0)
        assert calendar.business_seconds_between(start, end) == 10_000 * H
        # only weeks holding an offset change are walked day by day (2 a year, 7 days each)
        assert len(calendar._day_cache) < 100  # the span covers 1,747 days

    def test_between_is_antisymmetric(self, berlin: BusinessHours) -> None:
        a, b = utc(2025, 1, 6, 8, 0), utc(2025, 1, 7, 8, 0)
        assert berlin.business_seconds_between(b, a) == -8 * H


class TestRejectedInput:
    def test_naive_datetime(self, berlin: BusinessHours) -> None:
        with pytest.raises(CalendarError, match="naive"):
            berlin.add_business_seconds(datetime(2025, 1, 6, 9, 0), H)

    def test_negative_duration(self, berlin: BusinessHours) -> None:
        with pytest.raises(CalendarError, match="negative"):
            berlin.add_business_seconds(utc(2025, 1, 6, 9, 0), -1)

    @pytest.mark.parametrize(
        ("weekly", "message"),
        [
            ([[]] * 7, "no open time"),
            ([NINE_TO_FIVE] * 6, "7 days"),
            ([[(9 * H, 12 * H), (11 * H, 13 * H)]] + [[]] * 6, "overlap"),
            ([[(17 * H, 9 * H)]] + [[]] * 6, "not in a day"),
        ],
    )
    def test_bad_weekly_schedule(self, weekly: list[list[tuple[int, int]]], message: str) -> None:
        with pytest.raises(CalendarError, match=message):
            BusinessHours("bad", "Europe/Berlin", weekly)

    def test_unknown_zone_and_country(self) -> None:
        with pytest.raises(CalendarError, match="time zone"):
            BusinessHours("bad", "Mars/Olympus", WEEKDAYS_9_17)
        with pytest.raises(CalendarError, match="XX"):
            BusinessHours("bad", "UTC", WEEKDAYS_9_17, holiday_country="XX")

    def test_calendar_that_never_opens_fails_instead_of_looping(self) -> None:
        one_day = BusinessHours(
            "once",
            "UTC",
            [NINE_TO_FIVE] + [[]] * 6,
            closed_dates=[date(2025, 1, 6) + timedelta(weeks=w) for w in range(600)],
        )
        with pytest.raises(CalendarError, match="never open"):
            one_day.add_business_seconds(utc(2025, 1, 6, 0, 0), H)
