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

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from router.sla.calendar import US_PER_SECOND, Calendar, from_us
from router.sla.policy import MetricTerms
from schemas.sla import SlaMetric

WARNING = "warning"
MET = "met"
_BREACHED_PREFIX = "breached:"


def breach_marker(level: int) -> str:
    return _MARKERS[level] if level < len(_MARKERS) else f"{_BREACHED_PREFIX}{level}"


def marker_level(marker: str) -> int:
    """0 for warning and met, n for `breached:n`."""
    level = _LEVELS.get(marker)
    if level is None:
        level = int(marker.removeprefix(_BREACHED_PREFIX)) if marker != WARNING else 0
    return level


_MARKERS = tuple(f"{_BREACHED_PREFIX}{n}" for n in range(17))  # interned: no f-string per call
BREACHED_1 = _MARKERS[1]
_LEVELS = {WARNING: 0, MET: 0, **{_MARKERS[n]: n for n in range(1, 17)}}


class ClockStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(slots=True, kw_only=True)
class MetricClock:
    """State of one clock cycle. Mutated only on copies owned by lifecycle.

    A plain slotted dataclass with instants as int microseconds since the epoch (`*_us`): the
    tick path compares and sets them without datetime objects. The datetime properties are
    for readers. `state.encode_state` serialises it.
    """

    metric: SlaMetric
    cycle: int = 0
    status: ClockStatus = ClockStatus.RUNNING
    banked: float = 0.0  # business seconds of finished running segments
    segment_start_us: int | None = None  # start of the running segment
    target: float = 0.0  # business seconds for the current priority and policy
    deadline_us: int | None = None  # when rung 1 is due, while running
    # Business seconds at which rung 1 was due, fixed when it fires so that a later priority
    # change does not pull the remaining rungs forward.
    breach_anchor: float | None = None
    # A tuple: shared by copies until a firing replaces it, and (holding only strings) left
    # out of the cyclic GC's work, which the states a worker holds would otherwise load.
    fired: tuple[str, ...] = ()
    next_marker: str | None = None
    next_at_us: int | None = None

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
        # Slot by slot on a bare instance: 4x cheaper than the keyword `__init__` on the tick
        # path. A unit test checks that every field is carried over.
        new = _new_clock(MetricClock)
        new.metric = self.metric
        new.cycle = self.cycle
        new.status = self.status
        new.banked = self.banked
        new.segment_start_us = self.segment_start_us
        new.target = self.target
        new.deadline_us = self.deadline_us
        new.breach_anchor = self.breach_anchor
        new.fired = self.fired
        new.next_marker = self.next_marker
        new.next_at_us = self.next_at_us
        return new


_new_clock = object.__new__


def _datetime(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def start_clock(metric: SlaMetric, at_us: int, cycle: int = 0) -> MetricClock:
    return MetricClock(metric=metric, cycle=cycle, segment_start_us=at_us)


def elapsed(clock: MetricClock, at_us: int, calendar: Calendar) -> float:
    """Business seconds accrued by `at_us` (banked plus the running segment)."""
    start = clock.segment_start_us
    if clock.status is not ClockStatus.RUNNING or start is None:
        return clock.banked
    running = calendar.between_us(start, at_us) / US_PER_SECOND
    return clock.banked + (0.0 if running < 0.0 else running)  # max(running, 0.0)


def bank(clock: MetricClock, at_us: int, calendar: Calendar) -> None:
    """Fold the running segment into `banked` (before the calendar that measures it changes)."""
    start = clock.segment_start_us
    if clock.status is ClockStatus.RUNNING and start is not None:
        clock.banked = elapsed(clock, at_us, calendar)
        clock.segment_start_us = start if start > at_us else at_us  # max(at_us, start)


def pause(clock: MetricClock, at_us: int, calendar: Calendar) -> None:
    if clock.status is ClockStatus.RUNNING:
        bank(clock, at_us, calendar)
        clock.status = ClockStatus.PAUSED
        clock.segment_start_us = None


def stop(clock: MetricClock, at_us: int, calendar: Calendar) -> None:
    bank(clock, at_us, calendar)
    clock.status = ClockStatus.STOPPED
    clock.segment_start_us = None


def resume(clock: MetricClock, at_us: int) -> None:
    if clock.status is not ClockStatus.RUNNING:
        clock.status = ClockStatus.RUNNING
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
        if clock.status is ClockStatus.RUNNING and start is not None:
            fired = clock.fired
            banked = clock.banked
            # Rounded as Calendar.add_business_seconds does: the datetime API's instants.
            left = target - banked
            to_deadline = round((0.0 if left < 0.0 else left) * US_PER_SECOND)
            if WARNING in fired or BREACHED_1 in fired:
                clock.deadline_us = calendar.add_us(start, to_deadline)
                schedule_next(clock, terms, calendar)
            else:
                warning = target * terms.warning_fraction
                left = warning - banked
                to_warning = round((0.0 if left < 0.0 else left) * US_PER_SECOND)
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
    if terms is None or clock.status is not ClockStatus.RUNNING or clock.segment_start_us is None:
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
    return calendar.add_us(clock.segment_start_us, round(remaining * US_PER_SECOND))


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
