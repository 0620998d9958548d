"""Predicates the generated rule code calls for tests that are not one-liners: calendars
and type-checked comparisons on open attributes. (Phrases and regexes: `rules.textmatch`.)

`rules.operators.holds` is the reference these must agree with.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rules.calendar import WeeklyCalendar
from rules.facts import Facts

FactTest = Callable[[Facts], bool]
Getter = Callable[[Facts], Any]


def hours_test(get: Getter, calendar: WeeklyCalendar) -> FactTest:
    def test(f: Facts) -> bool:
        v = get(f)
        tz = f.vendor.timezone if f.vendor is not None else None
        return isinstance(v, datetime) and calendar.contains(v, tz)

    return test


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def number_test(op: str, lit: Any) -> Callable[[Any], bool]:
    """A comparison on an open attribute: false unless the value is a real number."""
    cmp = _COMPARE[op]

    def test(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, int | float) and bool(cmp(v, lit))

    return test
