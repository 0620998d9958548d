"""One SLA clock per (ticket, metric): business time banked across pauses, and what fires next.

A clock accrues business time only while running. Every pause, calendar switch or stop folds
the current running segment into `banked`, measured in the calendar that applied during that
segment, so time is never recounted under a later policy and paused time is never counted.
Deadlines are derived: `calendar.add(segment_start, threshold - banked)`. Instants are int
microseconds since the epoch (`*_us`), business durations float seconds. On the firing path
`max(a, b)` is written `b if b > a else a` (the same value, -0.0 included, without a call).

What fires is recorded in `fired` as markers (`warning`, `breached:<level>`, `met`); a marker
is written in the same state update as the event it produced, which makes firing idempotent.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from router.native import slot_copier
from router.sla.calendar import Calendar
from router.sla.instants import US_PER_SECOND, from_us, round_even
from router.sla.terms import MetricTerms
from router.sla.values import FieldValues
from schemas.sla import SlaMetric

WARNING: Final = "warning"
MET: Final = "met"
_BREACHED_PREFIX: Final = "breached:"


def breach_marker(level: int) -> str:
    return _MARKERS[level] if level < len(_MARKERS) else f"{_BREACHED_PREFIX}{level}"


def marker_level(marker: str) -> int:
    """0 for warning and met, n for `breached:n`."""
    level = _LEVELS.get(marker)
    if level is None:
        level = int(marker.removeprefix(_BREACHED_PREFIX)) if marker != WARNING else 0
    return level


# interned: no f-string per call
_MARKERS: Final = tuple(f"{_BREACHED_PREFIX}{n}" for n in range(17))
BREACHED_1: Final = _MARKERS[1]
_LEVELS: Final = {WARNING: 0, MET: 0, **{_MARKERS[n]: n for n in range(1, 17)}}


class ClockStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


# Enum members read per call, as Final constants: compiled, `SlaMetric.RESOLUTION` is an
# attribute lookup on the enum class each time (~140 ns); a Final constant is a C static.
_PAUSED: Final = ClockStatus.PAUSED
_RUNNING: Final = ClockStatus.RUNNING
_STOPPED: Final = ClockStatus.STOPPED


CLOCK_FIELDS: Final = (
    "metric", "cycle", "status", "banked", "segment_start_us", "target", "deadline_us",
    "breach_anchor", "fired", "next_marker", "next_at_us",
)


class MetricClock(FieldValues):
    """State of one clock cycle. Mutated only on copies owned by lifecycle.

    A plain class with instants as int microseconds since the epoch (`*_us`): the tick path
    compares and sets them without datetime objects; the datetime properties are for readers.
    `state.encode_state` serialises it. Written out by hand rather than as a dataclass: under
    the native build (`router.native`) it is a C struct with a compiled `__init__`, which a
    dataclass's generated `__init__` would not be.
    """

    __slots__ = CLOCK_FIELDS
    FIELDS = CLOCK_FIELDS

    def __init__(
        self,
        *,
        metric: SlaMetric,
        cycle: int = 0,
        status: ClockStatus = _RUNNING,
        banked: float = 0.0,
        segment_start_us: int | None = None,
        target: float = 0.0,
        deadline_us: int | None = None,
        breach_anchor: float | None = None,
        fired: tuple[str, ...] = (),
        next_marker: str | None = None,
        next_at_us: int | None = None,
    ) -> None:
        self.metric = metric
        self.cycle = cycle
        self.status = status
        self.banked = banked  # business seconds of finished running segments
        self.segment_start_us = segment_start_us  # start of the running segment
        self.target = target  # business seconds for the current priority and policy
        self.deadline_us = deadline_us  # when rung 1 is due, while running
        # Business seconds at which rung 1 was due, fixed when it fires so that a later
        # priority change does not pull the remaining rungs forward.
        self.breach_anchor = breach_anchor
        # A tuple: shared by copies until a firing replaces it, and (holding only strings)
        # left out of the cyclic GC's work, which the states a worker holds would otherwise load.
        self.fired = fired
        self.next_marker = next_marker
        self.next_at_us = next_at_us

    @property
    def segment_start(self) -> datetime | None:
        return _datetime(self.segment_start_us)

    @property
    def deadline(self) -> datetime | None:
        return _datetime(self.deadline_us)

    @property
    def next_at(self) -> datetime | None:
        return _datetime(self.next_at_us)

    def copy_for_update(self) -> MetricClock:
        # A unit test checks that every field is carried over.
        return MetricClock(
            metric=self.metric,
            cycle=self.cycle,
            status=self.status,
            banked=self.banked,
            segment_start_us=self.segment_start_us,
            target=self.target,
            deadline_us=self.deadline_us,
            breach_anchor=self.breach_anchor,
            fired=self.fired,
            next_marker=self.next_marker,
            next_at_us=self.next_at_us,
        )


if __file__.endswith(".py"):  # interpreted: see router.native.slot_copier
    MetricClock.copy_for_update = slot_copier(  # type: ignore[method-assign]  # same contract
        MetricClock, CLOCK_FIELDS
    )


def _datetime(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def start_clock(metric: SlaMetric, at_us: int, cycle: int = 0) -> MetricClock:
    return MetricClock(metric=metric, cycle=cycle, segment_start_us=at_us)


def elapsed(clock: MetricClock, at_us: int, calendar: Calendar) -> float:
    """Business seconds accrued by `at_us` (banked plus the running segment)."""
    start = clock.segment_start_us
    if clock.status is not _RUNNING or start is None:
        return clock.banked
    running = calendar.between_us(start, at_us) / US_PER_SECOND
    return clock.banked + (0.0 if running < 0.0 else running)  # max(running, 0.0)


def bank(clock: MetricClock, at_us: int, calendar: Calendar) -> None:
    """Fold the running segment into `banked` (before the calendar that measures it changes)."""
    start = clock.segment_start_us
    if clock.status is _RUNNING and start is not None:
        clock.banked = elapsed(clock, at_us, calendar)
        clock.segment_start_us = start if start > at_us else at_us  # max(at_us, start)


def pause(clock: MetricClock, at_us: int, calendar: Calendar) -> None:
    if clock.status is _RUNNING:
        bank(clock, at_us, calendar)
        clock.status = _PAUSED
        clock.segment_start_us = None


def stop(clock: MetricClock, at_us: int, calendar: Calendar) -> None:
    bank(clock, at_us, calendar)
    clock.status = _STOPPED
    clock.segment_start_us = None


def resume(clock: MetricClock, at_us: int) -> None:
    if clock.status is not _RUNNING:
        clock.status = _RUNNING
        clock.segment_start_us = at_us


def is_breached(clock: MetricClock) -> bool:
    return BREACHED_1 in clock.fired


def reschedule(clock: MetricClock, terms: MetricTerms | None, calendar: Calendar) -> None:
    """Recompute the target, the rung-1 deadline and the next marker to fire.

    A clock that has not warned yet gets its warning and its deadline from one calendar walk.
    """
    start = clock.segment_start_us
    if terms is not None:
        clock.target = target = terms.target_seconds
        if clock.status is _RUNNING and start is not None:
            fired = clock.fired
            banked = clock.banked
            # Rounded as Calendar.add_business_seconds does: the datetime API's instants.
            left = target - banked
            to_deadline = round_even((0.0 if left < 0.0 else left) * US_PER_SECOND)
            if WARNING in fired or BREACHED_1 in fired:
                clock.deadline_us = calendar.add_us(start, to_deadline)
                schedule_next(clock, terms, calendar)
            else:
                warning = target * terms.warning_fraction
                left = warning - banked
                to_warning = round_even((0.0 if left < 0.0 else left) * US_PER_SECOND)
                clock.next_marker = WARNING
                clock.next_at_us, clock.deadline_us = calendar.add_two_us(
                    start, to_warning, to_deadline
                )
            return
    clock.deadline_us = None
    clock.next_marker = None  # not running, or the current policy does not track it
    clock.next_at_us = None


def schedule_next(clock: MetricClock, terms: MetricTerms | None, calendar: Calendar) -> None:
    """Recompute only the next marker (enough after a firing: the deadline did not move)."""
    if terms is None or clock.status is not _RUNNING or clock.segment_start_us is None:
        clock.next_marker = None  # not running, or the current policy does not track it
        clock.next_at_us = None
        return
    fired = clock.fired
    if WARNING not in fired and BREACHED_1 not in fired:
        clock.next_marker = WARNING
        clock.next_at_us = _when(clock, clock.target * terms.warning_fraction, calendar)
        return
    if BREACHED_1 not in fired and clock.breach_anchor is None and clock.deadline_us is not None:
        # Rung 1 is due at the deadline `reschedule` worked out from the same clock fields
        # (a clock changed since is rescheduled before anything reads this).
        clock.next_marker = BREACHED_1
        clock.next_at_us = clock.deadline_us
        return
    for level in range(1, len(terms.ladder) + 1):
        marker = breach_marker(level)
        if marker not in fired:
            clock.next_marker = marker
            clock.next_at_us = _when(clock, threshold(clock, marker, terms), calendar)
            return
    clock.next_marker = None
    clock.next_at_us = None


def threshold(clock: MetricClock, marker: str, terms: MetricTerms) -> float:
    """Business seconds of elapsed time at which `marker` is due."""
    if marker == WARNING:
        return clock.target * terms.warning_fraction
    anchor = clock.breach_anchor if clock.breach_anchor is not None else clock.target
    return terms.rung_threshold(marker_level(marker), anchor)


def _when(clock: MetricClock, threshold: float, calendar: Calendar) -> int:
    """The instant (us) the running clock reaches `threshold` business seconds."""
    assert clock.segment_start_us is not None
    left = threshold - clock.banked
    remaining = 0.0 if left < 0.0 else left
    # Rounded as Calendar.add_business_seconds does: same instants as the datetime API.
    return calendar.add_us(clock.segment_start_us, round_even(remaining * US_PER_SECOND))


def record_firing(clock: MetricClock, marker: str, elapsed_at_firing: float) -> None:
    """Mark `marker` fired; rung 1 also fixes the ladder's anchor and retires the warning.

    The anchor is the business time elapsed when rung 1 took effect: normally the target, more
    when a priority raise made an old clock due at once, so rung 2 still waits its `after`.
    """
    clock.fired += (marker,)
    if marker == BREACHED_1:
        target = clock.target
        clock.breach_anchor = elapsed_at_firing if elapsed_at_firing > target else target
        if WARNING not in clock.fired:
            clock.fired += (WARNING,)
