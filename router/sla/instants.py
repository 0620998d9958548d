"""Instants as integer microseconds since the epoch, and back: what every SLA module stores.

`to_us` / `from_us` are exact (no float timestamps). `split_moment` / `join_moment` keep the
zone a moment was given in beside its instant, so a record shows the offset it came with.
The last conversion each way is memoised: a timer tick converts the same `now` for every
ticket it fires.
`round_even` turns float seconds into whole microseconds for every caller (clocks and
calendars round alike).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Final

US_PER_SECOND: Final = 1_000_000
DAY_US: Final = 86_400 * US_PER_SECOND
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


class CalendarError(ValueError):
    """A calendar cannot answer: never open, or given a naive datetime."""


class _LastConversion:
    """The last datetime `to_us` converted: a timer tick converts the same `now` for every
    ticket it fires, a transition the same `at` for every clock (datetimes are immutable, so
    the same object is the same instant)."""

    __slots__ = ("moment", "us")

    def __init__(self) -> None:
        self.moment: datetime | None = None
        self.us = 0


_LAST: Final = _LastConversion()


def to_us(moment: datetime) -> int:
    last = _LAST
    if moment is last.moment:
        return last.us
    if moment is _JOINED.moment:  # the callers of join_moment convert its result back
        return _JOINED.us
    try:
        since = moment - EPOCH  # exact integer arithmetic, twice as fast as `// _ONE_US`
    except TypeError:  # naive, or a tzinfo without an offset
        raise CalendarError(f"naive datetime {moment.isoformat()}: give a UTC offset") from None
    us = (since.days * 86_400 + since.seconds) * US_PER_SECOND + since.microseconds
    last.moment, last.us = moment, us
    return us


def from_us(us: int) -> datetime:
    # Exact integer arithmetic (a float timestamp would round); positional timedelta: no
    # keyword parsing. `//` and `%` compile to native int operations (divmod() boxes), and
    # small timedelta parts keep its constructor out of multi-digit int arithmetic.
    days = us // DAY_US
    seconds = us % DAY_US // US_PER_SECOND
    try:
        return EPOCH + timedelta(days, seconds, us % US_PER_SECOND)
    except OverflowError:  # what fromtimestamp raised: outside years 1-9999
        raise ValueError(f"epoch microseconds {us} out of the datetime range") from None


def round_even(x: float) -> int:
    """`round(x)` (ties to even): compiled, native float and int operations instead of a
    call to the builtin (which looks up `float.__round__`)."""
    n = int(x)  # towards zero; `x - n` is exact (below 2**52 both share the ulp, above x == n)
    frac = x - n
    if frac > 0.5 or (frac == 0.5 and n & 1):
        return n + 1
    if frac < -0.5 or (frac == -0.5 and n & 1):
        return n - 1
    return n


if __file__.endswith(".py"):  # interpreted, the builtin is the cheaper call
    round_even = round  # type: ignore[assignment]  # same results for a float


def split_moment(moment: datetime) -> tuple[int, tzinfo | None]:
    """(epoch us, the zone to show it in or None for UTC): `moment` without a datetime."""
    offset = moment.utcoffset()
    return to_us(moment), (None if offset is not None and not offset else moment.tzinfo)


class _LastJoin:
    """The last datetime `join_moment` built: the firings of a tick that are due at the same
    instant (rung deadlines shared by tickets opened together) act at the same `at`."""

    __slots__ = ("moment", "us", "zone")

    def __init__(self) -> None:
        self.moment: datetime | None = None
        self.us = 0
        self.zone: tzinfo | None = None


_JOINED: Final = _LastJoin()


def join_moment(us: int, zone: tzinfo | None) -> datetime:
    """The datetime `split_moment` took apart (same instant, same offset)."""
    last = _JOINED
    moment = last.moment
    if moment is None or us != last.us or zone is not last.zone:
        moment = from_us(us)
        if zone is not None:
            moment = moment.astimezone(zone)
        last.moment, last.us, last.zone = moment, us, zone
    return moment


def day_date(day: int) -> date:
    """The date of day number `day` (0 is 1970-01-01)."""
    return date.fromordinal(_EPOCH_ORDINAL + day)
