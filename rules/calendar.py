"""Inline weekly calendars for `within_hours`: an IANA time zone plus opening hours per day.

    calendars:
      eu_support:
        timezone: Europe/Berlin          # or "vendor": the vendor profile's time zone
        fallback_timezone: UTC           # used when "vendor" has no (valid) zone
        hours:
          weekdays: ["08:00-18:00"]      # mon..fri; also weekend, daily, mon, tue, ...
          sat: "10:00-14:00"

A range may wrap past midnight ("22:00-06:00" runs into the next day); "24:00" ends a day.
Deliberately small: full business calendars with holidays live in the SLA layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

VENDOR_TZ = "vendor"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_GROUPS: dict[str, tuple[int, ...]] = {
    **{d: (i,) for i, d in enumerate(DAYS)},
    "weekdays": (0, 1, 2, 3, 4),
    "weekend": (5, 6),
    "daily": (0, 1, 2, 3, 4, 5, 6),
}
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Intervals = tuple[tuple[int, int], ...]  # [start, end) in minutes since midnight


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """A ZoneInfo for an IANA name, or None when the name is unknown or malformed."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class WeeklyCalendar:
    name: str
    timezone: str  # an IANA name, or VENDOR_TZ
    fallback: ZoneInfo
    week: tuple[Intervals, ...]  # 7 entries, Monday first

    def contains(self, when: datetime, vendor_tz: str | None) -> bool:
        tz: ZoneInfo | None
        if self.timezone == VENDOR_TZ:
            tz = zone(vendor_tz) if vendor_tz else None
        else:
            tz = zone(self.timezone)
        local = when.astimezone(tz or self.fallback)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.week[local.weekday()])


def parse_range(text: str) -> tuple[int, int] | str:
    """'09:00-17:30' -> (540, 1050); an error message when malformed."""
    m = _RANGE.match(text)
    if m is None:
        return f"bad hours range {text!r}; expected 'HH:MM-HH:MM'"
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        return f"bad time in hours range {text!r}"
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        return f"empty hours range {text!r}"
    return start, end


def build_calendar(
    name: str, timezone: str, fallback_timezone: str, hours: dict[str, list[str]]
) -> WeeklyCalendar | list[tuple[str, str]]:
    """A calendar, or a list of (key, message) problems (key: 'timezone', 'hours.<day>')."""
    problems: list[tuple[str, str]] = []
    if timezone != VENDOR_TZ and zone(timezone) is None:
        problems.append(("timezone", f"unknown time zone {timezone!r} (IANA name or 'vendor')"))
    fallback = zone(fallback_timezone)
    if fallback is None:
        problems.append(("fallback_timezone", f"unknown time zone {fallback_timezone!r}"))
    days: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    for key, ranges in hours.items():
        group = DAY_GROUPS.get(key)
        if group is None:
            problems.append((f"hours.{key}", f"unknown day {key!r}; use {', '.join(DAY_GROUPS)}"))
            continue
        for text in ranges:
            parsed = parse_range(text)
            if isinstance(parsed, str):
                problems.append((f"hours.{key}", parsed))
                continue
            start, end = parsed
            for day in group:
                if start < end:
                    days[day].append((start, end))
                else:  # wraps past midnight into the next day
                    days[day].append((start, 24 * 60))
                    if end:
                        days[(day + 1) % 7].append((0, end))
    if problems or fallback is None:
        return problems
    week = tuple(tuple(sorted(d)) for d in days)
    return WeeklyCalendar(name=name, timezone=timezone, fallback=fallback, week=week)
